// spi.hpp: SPI and transactions for C++ callers. Every call goes through pg_call, so a PostgreSQL
// error arrives as a PgError; results are copied into C++ strings before SPI frees them.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace squaresync {
struct RowBatch;
}

namespace squaresync::pg {

using Value = std::optional<std::string>;
using Row = std::vector<Value>;

struct SpiResult {
    std::vector<Row> rows;
    std::uint64_t processed = 0;
    const Value& at(std::size_t row, std::size_t col) const { return rows.at(row).at(col); }
};

// Runs one statement with text parameters ($1, $2 ... typed text; cast in the SQL).
SpiResult spi_exec(const std::string& sql, const std::vector<Value>& params = {}, bool read_only = false);

// Runs one read-only statement with a snapshot taken for it, which sees every transaction committed
// before it starts, whatever the calling transaction's isolation level (as PostgreSQL's foreign key
// checks read under REPEATABLE READ): for a caller that waits for another process's commits.
SpiResult spi_read_latest(const std::string& sql, const std::vector<Value>& params = {});

// Stages a batch of rows, already formatted as COPY text (RowBatch::copy_text), with COPY FROM.
void spi_stage_batch(const RowBatch& batch);

void spi_connect();
void spi_finish();

// In a background worker: runs body in its own transaction (with SPI and a snapshot), committing
// at the end; if body throws, the transaction is aborted and the exception goes on.
template <typename F>
void in_transaction(F&& body);

void begin_transaction();
void commit_transaction();
void abort_transaction();

// For the sync and apply workers: from now on each transaction holds the squaresync extension
// against DROP EXTENSION until it ends, and one that finds it gone (dropped during the run) throws
// RunAbort as it begins (begin_transaction).
void require_extension();

template <typename F>
void in_transaction(F&& body) {
    try {
        begin_transaction();
        body();
        commit_transaction();
    } catch (...) {
        abort_transaction();
        throw;
    }
}

}  // namespace squaresync::pg
