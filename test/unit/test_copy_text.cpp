// Unit tests for copy_text and unchanged: COPY text escaping, NULLs, line layout (merchant_id,
// batch, place in the batch, then the columns in TableDef order), the columns kept after formatting,
// and dropping objects sent again unchanged with their children.
#include "cpp_only.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "copy_text.hpp"
#include "tables.hpp"
#include "unchanged.hpp"

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
    format_for_staging(b, "M\\1", 42);
    std::string expected;
    std::vector<std::size_t> ends;
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
        ends.push_back(expected.size());
    }
    EXPECT_EQ(b.copy_text, expected);
    EXPECT_EQ(b.line_ends, ends);
    // The key (and version) columns stay, the rest is only in the text.
    for (std::size_t c = 0; c < t.columns.size(); ++c) {
        const bool keep = t.columns[c].name == "id" || t.columns[c].name == "version";
        EXPECT_EQ(b.columns[c].size(), keep ? 2u : 0u) << t.columns[c].name;
    }
    EXPECT_EQ(b.rows, 2u);
}

TEST(CopyText, EmptyBatchIsEmptyText) {
    RowBatch b(table_def("locations"));
    format_for_staging(b, "M", 1);
    EXPECT_EQ(b.copy_text, "");
    EXPECT_TRUE(b.line_ends.empty());
}

namespace {

// A formatted page of orders: order i has i+1 line items and no other parts.
std::vector<RowBatch> orders_page(int n) {
    std::vector<RowBatch> page;
    for (const char* t : {"orders", "order_line_items", "order_fulfillments", "order_refunds", "order_returns", "tenders"})
        page.emplace_back(table_def(t));
    auto set = [](RowBatch& b, const std::string& col, std::optional<std::string> v) {
        for (std::size_t c = 0; c < b.table->columns.size(); ++c)
            if (b.table->columns[c].name == col) b.columns[c].back() = std::move(v);
    };
    for (int i = 0; i < n; ++i) {
        RowBatch& o = page[0];
        for (auto& c : o.columns) c.emplace_back();
        set(o, "id", "O" + std::to_string(i));
        set(o, "version", std::to_string(i + 1));
        ++o.rows;
        RowBatch& li = page[1];
        for (int k = 0; k <= i; ++k) {
            for (auto& c : li.columns) c.emplace_back();
            set(li, "order_id", "O" + std::to_string(i));
            set(li, "uid", "L" + std::to_string(k));
            li.parent_row.push_back(static_cast<std::size_t>(i));
            ++li.rows;
        }
    }
    for (auto& b : page) format_for_staging(b, "M", 7);
    return page;
}

std::vector<std::string> lines(const RowBatch& b) {
    std::vector<std::string> out;
    std::size_t start = 0;
    for (std::size_t e : b.line_ends) {
        out.push_back(b.copy_text.substr(start, e - start));
        start = e;
    }
    return out;
}

}  // namespace

TEST(Unchanged, VersionedBatchesAreTopLevelTablesWithAVersionAndTheirChildren) {
    auto page = orders_page(2);
    auto v = versioned_batches(page);
    ASSERT_EQ(v.size(), 1u);
    EXPECT_EQ(v[0].top, &page[0]);
    EXPECT_EQ(v[0].children.size(), 5u);
    EXPECT_EQ(page[0].table->columns[v[0].id_column].name, "id");
    EXPECT_EQ(page[0].table->columns[v[0].version_column].name, "version");
    std::vector<RowBatch> payments;
    payments.emplace_back(table_def("payments"));
    EXPECT_TRUE(versioned_batches(payments).empty()) << "payments carry no version";
}

TEST(Unchanged, DropsUnchangedObjectsWithTheirChildrenAndKeepsTheRest) {
    auto page = orders_page(3);  // O0 (1 item), O1 (2 items), O2 (3 items)
    const auto before_orders = lines(page[0]);
    const auto before_items = lines(page[1]);
    auto v = versioned_batches(page);
    drop_unchanged(v.at(0), {true, false, true});
    EXPECT_EQ(page[0].rows, 1u);
    EXPECT_EQ(lines(page[0]), std::vector<std::string>{before_orders[1]});
    EXPECT_EQ(page[0].columns[v[0].id_column], (std::vector<std::optional<std::string>>{"O1"}));
    EXPECT_EQ(page[1].rows, 2u);
    EXPECT_EQ(lines(page[1]), (std::vector<std::string>{before_items[1], before_items[2]}));
    EXPECT_EQ(page[1].parent_row, (std::vector<std::size_t>{0, 0})) << "children point at their parent's new place";
    EXPECT_EQ(page[1].copy_text.size(), page[1].line_ends.back());
    for (std::size_t b = 2; b < page.size(); ++b) EXPECT_EQ(page[b].rows, 0u);
}

TEST(Unchanged, NothingDroppedLeavesThePageAsItWas) {
    auto page = orders_page(2);
    const std::string orders = page[0].copy_text, items = page[1].copy_text;
    auto v = versioned_batches(page);
    drop_unchanged(v.at(0), {false, false});
    EXPECT_EQ(page[0].copy_text, orders);
    EXPECT_EQ(page[1].copy_text, items);
    EXPECT_EQ(page[1].rows, 3u);
}

TEST(Unchanged, DropRowsNeedsAFormattedBatchAndOneFlagPerRow) {
    RowBatch raw(table_def("vendors"));
    for (auto& c : raw.columns) c.emplace_back();
    raw.rows = 1;
    EXPECT_THROW(drop_rows(raw, {true}), std::logic_error);
    auto page = orders_page(1);
    EXPECT_THROW(drop_rows(page[0], {true, false}), std::logic_error);
}
