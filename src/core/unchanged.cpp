// unchanged.cpp: dropping objects sent again unchanged, with their children (see unchanged.hpp).
#include "cpp_only.hpp"

#include "unchanged.hpp"

#include <stdexcept>

namespace squaresync {

std::vector<VersionedBatch> versioned_batches(std::vector<RowBatch>& page) {
    std::vector<VersionedBatch> out;
    for (auto& b : page) {
        if (!b.table->array_path.empty()) {
            if (!out.empty() && out.back().top) out.back().children.push_back(&b);
            continue;
        }
        VersionedBatch v;
        const auto& cols = b.table->columns;
        bool id = false, version = false;
        for (std::size_t c = 0; c < cols.size(); ++c) {
            if (cols[c].name == "id") v.id_column = c, id = true;
            if (cols[c].name == "version") v.version_column = c, version = true;
        }
        if (id && version) v.top = &b;
        out.push_back(v);  // a top-level batch without a version keeps its place: its children are not ours
    }
    std::vector<VersionedBatch> versioned;
    for (auto& v : out)
        if (v.top) versioned.push_back(std::move(v));
    return versioned;
}

void drop_rows(RowBatch& b, const std::vector<bool>& drop) {
    if (drop.size() != b.rows) throw std::logic_error("drop_rows: one flag per row expected");
    if (b.line_ends.size() != b.rows) throw std::logic_error("drop_rows: the batch is not formatted for staging");
    std::string text;
    std::vector<std::size_t> ends, parents;
    std::vector<std::vector<std::optional<std::string>>> cols(b.columns.size());
    std::size_t start = 0, kept = 0;
    for (std::size_t r = 0; r < b.rows; ++r) {
        const std::size_t end = b.line_ends[r];
        if (!drop[r]) {
            text.append(b.copy_text, start, end - start);
            ends.push_back(text.size());
            if (!b.parent_row.empty()) parents.push_back(b.parent_row[r]);
            for (std::size_t c = 0; c < cols.size(); ++c)
                if (!b.columns[c].empty()) cols[c].push_back(std::move(b.columns[c][r]));
            ++kept;
        }
        start = end;
    }
    b.copy_text.swap(text);
    b.line_ends.swap(ends);
    b.parent_row.swap(parents);
    b.columns.swap(cols);
    b.rows = kept;
}

void drop_unchanged(VersionedBatch& v, const std::vector<bool>& unchanged) {
    // The parents' new places, for the children's parent_row.
    std::vector<std::size_t> new_index(unchanged.size());
    std::size_t next = 0;
    for (std::size_t i = 0; i < unchanged.size(); ++i) new_index[i] = unchanged[i] ? SIZE_MAX : next++;
    for (RowBatch* c : v.children) {
        std::vector<bool> drop(c->rows);
        for (std::size_t r = 0; r < c->rows; ++r) drop[r] = unchanged.at(c->parent_row.at(r));
        drop_rows(*c, drop);
        for (auto& p : c->parent_row) p = new_index[p];
    }
    drop_rows(*v.top, unchanged);
}

}  // namespace squaresync
