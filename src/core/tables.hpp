// tables.hpp: every synced table described once, as data: its columns, their PostgreSQL types and
// where each value comes from in Square's JSON. The mapper, the staging INSERT and the schema check
// (squaresync._schema_mismatches) are all driven by these descriptions.
#pragma once

#include <string>
#include <vector>

namespace squaresync {

enum class PgType { Text, Integer, Bigint, Numeric, Boolean, Timestamptz, Jsonb, TextArray };

// The PostgreSQL spelling of a type, as format_type() prints it ("text[]", "timestamp with time zone").
const char* pg_type_name(PgType t);

// Where a column's value comes from, a small path language evaluated on one JSON element:
//   "a.b.c"        the value at that path in the element (absent or null: NULL)
//   "^a.b"         the same in the parent object (for rows drawn from an array inside an object)
//   "a[].b"        every element's "b" of the array "a", as text[]
//   "$"            the element itself, as JSON (the raw column)
//   "@index"       the element's index in its parent's array
//   "#"            "#" followed by the index (a fallback key for elements without a uid)
//   "any(p,q)"     true when any of the boolean paths p, q is true
//   "if(p,q)"      the value at q when the boolean at p is true, else NULL
//   "x|y"          the first alternative that is not NULL
struct ColumnDef {
    std::string name;
    PgType type;
    std::string source;
};

struct TableDef {
    std::string name;                 // table in schema "square"
    std::vector<std::string> key;     // primary key columns after merchant_id
    std::vector<ColumnDef> columns;   // every column but merchant_id and synced_at, keys included
    std::string array_path;           // for a child table: the array in the parent object ("line_items")

    const ColumnDef* column(const std::string& name) const;
};

// All tables squaresync fills from Square's JSON (the derived availability table is computed in SQL).
const std::vector<TableDef>& synced_tables();
const TableDef& table_def(const std::string& name);  // throws std::out_of_range

}  // namespace squaresync
