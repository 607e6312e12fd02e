// spi.cpp: SPI execution with text parameters, batched staging through unnest(), and worker
// transactions (start, commit, abort) that leave the worker's memory context in place.
extern "C" {
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
}

#include "spi.hpp"

#include <map>

#include "guard.hpp"
#include "mapping.hpp"

namespace squaresync::pg {

namespace {
MemoryContext g_outer_context = nullptr;  // the caller's context across worker transactions
}

SpiResult spi_exec(const std::string& sql, const std::vector<Value>& params, bool read_only) {
    const int n = static_cast<int>(params.size());
    std::vector<Oid> types(static_cast<std::size_t>(n), TEXTOID);
    std::vector<Datum> values(static_cast<std::size_t>(n), 0);
    std::vector<char> nulls(static_cast<std::size_t>(n), ' ');
    char*** cells = nullptr;
    std::uint64_t nrows = 0, processed = 0;
    int ncols = 0;
    pg_call([&] {
        for (int i = 0; i < n; ++i) {
            if (params[static_cast<std::size_t>(i)])
                values[static_cast<std::size_t>(i)] = CStringGetTextDatum(params[static_cast<std::size_t>(i)]->c_str());
            else
                nulls[static_cast<std::size_t>(i)] = 'n';
        }
        int rc = SPI_execute_with_args(sql.c_str(), n, types.data(), values.data(), nulls.data(), read_only, 0);
        if (rc < 0) elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(rc));
        processed = SPI_processed;
        if (SPI_tuptable != nullptr) {
            nrows = SPI_processed;
            ncols = SPI_tuptable->tupdesc->natts;
            cells = static_cast<char***>(palloc0(sizeof(char**) * (nrows + 1)));
            for (std::uint64_t r = 0; r < nrows; ++r) {
                cells[r] = static_cast<char**>(palloc0(sizeof(char*) * static_cast<std::size_t>(ncols + 1)));
                for (int c = 0; c < ncols; ++c)
                    cells[r][c] = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, c + 1);
            }
        }
    });
    SpiResult out;
    out.processed = processed;
    out.rows.reserve(nrows);
    for (std::uint64_t r = 0; r < nrows; ++r) {
        Row row;
        row.reserve(static_cast<std::size_t>(ncols));
        for (int c = 0; c < ncols; ++c) row.push_back(cells[r][c] ? Value(cells[r][c]) : std::nullopt);
        out.rows.push_back(std::move(row));
    }
    return out;
}

namespace {

// INSERT INTO squaresync.stage_<t> (merchant_id, _batch, _ord, cols...)
//   SELECT $1, $2::bigint, u._ord, u.c1::type1, ... FROM unnest($3::text[], ...) WITH ORDINALITY u(c1, ..., _ord)
const std::string& stage_sql(const TableDef& t) {
    static std::map<std::string, std::string> cache;
    auto it = cache.find(t.name);
    if (it != cache.end()) return it->second;
    std::string cols, casts, arrays, names;
    int p = 3;
    for (const auto& c : t.columns) {
        const std::string q = "\"" + c.name + "\"";
        cols += ", " + q;
        casts += ", u." + q + "::" + pg_type_name(c.type);
        arrays += std::string(arrays.empty() ? "" : ", ") + "$" + std::to_string(p++) + "::text[]";
        names += q + ", ";
    }
    std::string sql = "INSERT INTO squaresync.\"stage_" + t.name + "\" (merchant_id, _batch, _ord" + cols +
                      ") SELECT $1, $2::bigint, u._ord" + casts + " FROM unnest(" + arrays +
                      ") WITH ORDINALITY AS u(" + names + "_ord)";
    return cache.emplace(t.name, std::move(sql)).first->second;
}

}  // namespace

void spi_stage_batch(const RowBatch& batch, const std::string& merchant_id, std::int64_t batch_no) {
    if (batch.rows == 0) return;
    const TableDef& t = *batch.table;
    const std::string& sql = stage_sql(t);
    const std::string batch_text = std::to_string(batch_no);
    const int n = static_cast<int>(t.columns.size()) + 2;
    std::vector<Oid> types(static_cast<std::size_t>(n), TEXTARRAYOID);
    types[0] = TEXTOID;
    types[1] = TEXTOID;
    std::vector<Datum> values(static_cast<std::size_t>(n), 0);
    std::vector<char> nulls(static_cast<std::size_t>(n), ' ');
    const int rows = static_cast<int>(batch.rows);
    pg_call([&] {
        values[0] = CStringGetTextDatum(merchant_id.c_str());
        values[1] = CStringGetTextDatum(batch_text.c_str());
        Datum* elems = static_cast<Datum*>(palloc(sizeof(Datum) * static_cast<std::size_t>(rows)));
        bool* enulls = static_cast<bool*>(palloc(sizeof(bool) * static_cast<std::size_t>(rows)));
        int dims[1] = {rows};
        int lbs[1] = {1};
        for (std::size_t c = 0; c < t.columns.size(); ++c) {
            const auto& col = batch.columns[c];
            for (int r = 0; r < rows; ++r) {
                const auto& v = col[static_cast<std::size_t>(r)];
                enulls[r] = !v.has_value();
                elems[r] = v ? PointerGetDatum(cstring_to_text_with_len(v->data(), static_cast<int>(v->size()))) : 0;
            }
            values[c + 2] = PointerGetDatum(construct_md_array(elems, enulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
        }
        int rc = SPI_execute_with_args(sql.c_str(), n, types.data(), values.data(), nulls.data(), false, 0);
        if (rc != SPI_OK_INSERT) elog(ERROR, "staging %s failed: %s", t.name.c_str(), SPI_result_code_string(rc));
    });
}

void spi_connect() {
    pg_call([] {
        if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
    });
}

void spi_finish() {
    pg_call([] { SPI_finish(); });
}

void begin_transaction() {
    g_outer_context = CurrentMemoryContext;
    pg_call([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
        PushActiveSnapshot(GetTransactionSnapshot());
    });
}

void commit_transaction() {
    pg_call([] {
        SPI_finish();
        PopActiveSnapshot();
        CommitTransactionCommand();
        pgstat_report_stat(false);
    });
    MemoryContextSwitchTo(g_outer_context);
}

void abort_transaction() {
    pg_call([] { AbortCurrentTransaction(); });
    MemoryContextSwitchTo(g_outer_context);
}

}  // namespace squaresync::pg
