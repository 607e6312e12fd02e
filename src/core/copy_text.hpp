// copy_text.hpp: rows in PostgreSQL's COPY text format, as the staging tables take them. Pure C++:
// a page is formatted on the HTTP client's helper thread, and the backend only feeds the text to
// COPY FROM (src/pg/spi.cpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "mapping.hpp"

namespace squaresync {

// Appends v escaped for COPY's text format (backslash, tab, newline, carriage return).
void append_copy_value(std::string& out, std::string_view v);

// Formats batch for staging: copy_text gets one line per row (merchant_id, batch_no, the row's place
// in the batch from 1, then the columns in TableDef order; NULL as \N), line_ends where each ends;
// every column but the key columns and "version" is emptied.
void format_for_staging(RowBatch& batch, const std::string& merchant_id, std::int64_t batch_no);

}  // namespace squaresync
