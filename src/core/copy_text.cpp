// copy_text.cpp: COPY text format for staged rows (see copy_text.hpp).
#include "cpp_only.hpp"

#include "copy_text.hpp"

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

std::string copy_lines(const RowBatch& batch, const std::string& merchant_id, std::int64_t batch_no) {
    std::string prefix;
    append_copy_value(prefix, merchant_id);
    prefix += '\t' + std::to_string(batch_no) + '\t';
    const std::size_t ncols = batch.columns.size();
    std::size_t size = batch.rows * (prefix.size() + 12 + 3 * ncols);
    for (const auto& col : batch.columns)
        for (const auto& v : col) size += v ? v->size() : 0;
    std::string data;
    data.reserve(size + size / 16);  // escapes are rare: one allocation, not a doubling chain
    for (std::size_t r = 0; r < batch.rows; ++r) {
        data += prefix;
        data += std::to_string(r + 1);
        for (std::size_t c = 0; c < ncols; ++c) {
            data += '\t';
            const auto& v = batch.columns[c][r];
            if (v)
                append_copy_value(data, *v);
            else
                data += "\\N";
        }
        data += '\n';
    }
    return data;
}

}  // namespace squaresync
