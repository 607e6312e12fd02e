// unchanged.hpp: objects Square sends again unchanged. An incremental run re-reads some objects it
// already has (the orders overlap, a catalog object edited twice); those whose stored version is the
// one Square sent are dropped from the page, with their children (an order's line items...),
// before staging, so they are neither staged nor compared. The lookup of the stored versions is the
// caller's (src/pg); this file only picks the batches and drops the rows.
#pragma once

#include <cstddef>
#include <vector>

#include "mapping.hpp"

namespace squaresync {

// A page's batch of versioned top-level objects (a table with a "version" column: orders, catalog
// objects) and the batches of its children.
struct VersionedBatch {
    RowBatch* top = nullptr;
    std::vector<RowBatch*> children;
    std::size_t id_column = 0;       // index in top->table->columns
    std::size_t version_column = 0;
};

// The versioned batches of a page formatted for staging (parents come before their children).
std::vector<VersionedBatch> versioned_batches(std::vector<RowBatch>& page);

// Drops the rows of batch marked in drop (COPY lines and kept columns alike).
void drop_rows(RowBatch& batch, const std::vector<bool>& drop);

// Drops v.top's rows marked unchanged, and every child row of those parents.
void drop_unchanged(VersionedBatch& v, const std::vector<bool>& unchanged);

}  // namespace squaresync
