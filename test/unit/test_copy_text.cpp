// Unit tests for copy_text: COPY text escaping, NULLs, line layout (merchant_id, batch, place in the
// batch, then the columns in TableDef order).
#include "cpp_only.hpp"

#include <gtest/gtest.h>

#include <string>

#include "copy_text.hpp"
#include "tables.hpp"

using namespace squaresync;

TEST(CopyText, EscapesBackslashTabNewlineAndCarriageReturn) {
    std::string out;
    append_copy_value(out, "a\\b\tc\nd\re");
    EXPECT_EQ(out, "a\\\\b\\tc\\nd\\re");
    out.clear();
    append_copy_value(out, "\\\\\t");
    EXPECT_EQ(out, "\\\\\\\\\\t");
    out.clear();
    append_copy_value(out, "plain é \"quoted\" {\"json\": 1}");
    EXPECT_EQ(out, "plain é \"quoted\" {\"json\": 1}");
    out.clear();
    append_copy_value(out, "");
    EXPECT_EQ(out, "");
}

TEST(CopyText, OneLinePerRowWithMerchantBatchPlaceAndColumns) {
    const TableDef& t = table_def("vendors");
    RowBatch b(t);
    for (std::size_t r = 0; r < 2; ++r) {
        for (std::size_t c = 0; c < t.columns.size(); ++c) {
            if (t.columns[c].name == "id")
                b.columns[c].push_back(r == 0 ? "V1" : "V\t2");
            else if (t.columns[c].name == "name")
                b.columns[c].push_back(r == 0 ? std::optional<std::string>("Line\nbreak") : std::nullopt);
            else
                b.columns[c].push_back(std::nullopt);
        }
        ++b.rows;
    }
    const std::string text = copy_lines(b, "M\\1", 42);
    std::string expected;
    for (std::size_t r = 0; r < 2; ++r) {
        expected += "M\\\\1\t42\t" + std::to_string(r + 1);
        for (const auto& col : t.columns) {
            expected += '\t';
            if (col.name == "id")
                expected += r == 0 ? "V1" : "V\\t2";
            else if (col.name == "name" && r == 0)
                expected += "Line\\nbreak";
            else
                expected += "\\N";
        }
        expected += '\n';
    }
    EXPECT_EQ(text, expected);
}

TEST(CopyText, EmptyBatchIsEmptyText) {
    RowBatch b(table_def("locations"));
    EXPECT_EQ(copy_lines(b, "M", 1), "");
}
