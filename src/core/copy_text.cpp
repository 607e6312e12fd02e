// copy_text.cpp: COPY text format for staged rows (see copy_text.hpp).
#include "cpp_only.hpp"

#include "copy_text.hpp"

#include <algorithm>

namespace squaresync {

void append_copy_value(std::string& out, std::string_view v) {
    const char* p = v.data();
    const char* end = p + v.size();
    while (p < end) {
        const char* q = p;
        while (q < end && *q != '\\' && *q != '\t' && *q != '\n' && *q != '\r') ++q;
        out.append(p, q);  // the runs between special characters in one append
        if (q == end) break;
        switch (*q) {
            case '\\': out += "\\\\"; break;
            case '\t': out += "\\t"; break;
            case '\n': out += "\\n"; break;
            default: out += "\\r"; break;
        }
        p = q + 1;
    }
}

void format_for_staging(RowBatch& batch, const std::string& merchant_id, std::int64_t batch_no) {
    std::string prefix;
    append_copy_value(prefix, merchant_id);
    prefix += '\t' + std::to_string(batch_no) + '\t';
    const auto& cols = batch.table->columns;
    std::size_t size = batch.rows * (prefix.size() + 12 + 3 * cols.size());
    for (const auto& col : batch.columns)
        for (const auto& v : col) size += v ? v->size() : 0;
    std::string data;
    data.reserve(size + size / 16);  // escapes are rare: one allocation, not a doubling chain
    std::vector<std::size_t> ends;
    ends.reserve(batch.rows);
    for (std::size_t r = 0; r < batch.rows; ++r) {
        data += prefix;
        data += std::to_string(r + 1);
        for (std::size_t c = 0; c < cols.size(); ++c) {
            data += '\t';
            const auto& v = batch.columns[c][r];
            if (v)
                append_copy_value(data, *v);
            else
                data += "\\N";
        }
        data += '\n';
        ends.push_back(data.size());
    }
    batch.copy_text.swap(data);
    batch.line_ends.swap(ends);
    // What identifies a row stays (to skip objects stored unchanged, unchanged.hpp); the rest is
    // in the text.
    for (std::size_t c = 0; c < cols.size(); ++c) {
        const auto& key = batch.table->key;
        const bool keep = cols[c].name == "version" || std::find(key.begin(), key.end(), cols[c].name) != key.end();
        if (!keep) std::vector<std::optional<std::string>>().swap(batch.columns[c]);
    }
}

}  // namespace squaresync
