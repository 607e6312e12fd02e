// mapping.hpp: Square JSON -> typed rows, driven by the table descriptions in tables.hpp. A row's
// values are PostgreSQL text input (NULL as nullopt), stored column by column; a page's rows are
// then formatted as COPY text for staging (copy_text.hpp). Pages are parsed with simdjson's DOM
// (a page of orders is several MB: nlohmann's DOM parsed it at ~60 MB/s and held ~10x its size;
// see docs/benchmarks.md); nlohmann/json builds requests and reads error bodies.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "tables.hpp"

namespace squaresync {

using json = nlohmann::json;
using JsonElement = simdjson::dom::element;

// The JSON does not have the shape the table expects (a string where a number belongs, no id).
struct MappingError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct RowBatch {
    const TableDef* table = nullptr;
    std::vector<std::vector<std::optional<std::string>>> columns;  // [column][row]
    std::size_t rows = 0;
    // Child tables: the row of the parent's batch (same page) each row was mapped from.
    std::vector<std::size_t> parent_row;
    // Set when the fetch formats pages for staging (StreamOptions::stage_merchant): the rows as
    // COPY text (copy_text.hpp), where each row's line ends, and only the key and version columns
    // kept (the others emptied).
    std::string copy_text;
    std::vector<std::size_t> line_ends;

    explicit RowBatch(const TableDef& t) : table(&t), columns(t.columns.size()) {}
    void clear();
};

class TableMapper {
public:
    explicit TableMapper(const TableDef& table);
    ~TableMapper();
    TableMapper(TableMapper&&) noexcept;

    const TableDef& table() const { return *table_; }

    // One row from a top-level object (a location, an order, a catalog object).
    void map_object(const JsonElement& object, RowBatch& out) const;
    // One row per element of the table's array_path inside parent (an order's line items).
    void map_children(const JsonElement& parent, RowBatch& out) const;

    struct Expr;

private:
    void map_element(const JsonElement& element, const JsonElement* parent, std::size_t index, RowBatch& out) const;
    const TableDef* table_;
    std::vector<std::unique_ptr<Expr>> exprs_;
    std::vector<std::string> array_path_;
};

// A JSON value's type in words ("a string", "an object"), for error messages.
std::string describe(const JsonElement& v);

// A PostgreSQL array literal ({"a","b"}) of the given strings.
std::string pg_text_array(const std::vector<std::string>& values);

// Valid JSON text with every \u0000 escape written \ufffd: PostgreSQL's jsonb cannot hold U+0000
// (it is stored as U+FFFD, the replacement character; text values likewise).
std::string json_without_nul(std::string json);

}  // namespace squaresync
