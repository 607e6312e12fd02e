// spi.cpp: SPI execution with text parameters, batched staging through unnest(), and worker
// transactions (start, commit, abort) that leave the worker's memory context in place.
extern "C" {
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/copy.h"
#include "commands/extension.h"
#include "nodes/makefuncs.h"
#include "nodes/value.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/lsyscache.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
}

#include "spi.hpp"

#include <cstring>

#include "guard.hpp"
#include "mapping.hpp"
#include "streams.hpp"

namespace squaresync::pg {

namespace {
MemoryContext g_outer_context = nullptr;  // the caller's context across worker transactions
}

namespace {

SpiResult execute(const std::string& sql, const std::vector<Value>& params, bool read_only, bool latest) {
    const int n = static_cast<int>(params.size());
    std::vector<Oid> types(static_cast<std::size_t>(n), TEXTOID);
    std::vector<Datum> values(static_cast<std::size_t>(n), 0);
    std::vector<char> nulls(static_cast<std::size_t>(n), ' ');
    char*** cells = nullptr;
    std::uint64_t nrows = 0, processed = 0;
    int ncols = 0;
    // The parameters' and the result's texts live in a context of their own, and the result's
    // tuples are freed, once copied: a caller that polls in one SPI connection (wait => true)
    // keeps nothing per call.
    MemoryContext outer = CurrentMemoryContext;
    MemoryContext scratch = nullptr;
    pg_call([&] { scratch = AllocSetContextCreate(outer, "squaresync spi_exec", ALLOCSET_SMALL_SIZES); });
    struct Scratch {
        MemoryContext outer, ctx;
        ~Scratch() {
            MemoryContextSwitchTo(outer);
            MemoryContextDelete(ctx);
        }
    } scratch_guard{outer, scratch};
    pg_call([&] {
        MemoryContextSwitchTo(scratch);
        for (int i = 0; i < n; ++i) {
            if (params[static_cast<std::size_t>(i)])
                values[static_cast<std::size_t>(i)] = CStringGetTextDatum(params[static_cast<std::size_t>(i)]->c_str());
            else
                nulls[static_cast<std::size_t>(i)] = 'n';
        }
        int rc;
        if (latest) {
            SPIPlanPtr plan = SPI_prepare(sql.c_str(), n, types.data());
            if (plan == nullptr) elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
            rc = SPI_execute_snapshot(plan, values.data(), nulls.data(), GetLatestSnapshot(), InvalidSnapshot, true,
                                      false, 0);
            SPI_freeplan(plan);
        } else {
            rc = SPI_execute_with_args(sql.c_str(), n, types.data(), values.data(), nulls.data(), read_only, 0);
        }
        MemoryContextSwitchTo(scratch);  // (SPI returns in its own procedure context)
        if (rc < 0) elog(ERROR, "SPI execution failed: %s", SPI_result_code_string(rc));
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
        SPI_freetuptable(SPI_tuptable);
        MemoryContextSwitchTo(outer);
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

}  // namespace

SpiResult spi_exec(const std::string& sql, const std::vector<Value>& params, bool read_only) {
    return execute(sql, params, read_only, false);
}

SpiResult spi_read_latest(const std::string& sql, const std::vector<Value>& params) {
    return execute(sql, params, true, true);
}

namespace {

// The batch being copied, for the COPY data callback (which has no user pointer).
const std::string* g_copy_data = nullptr;
std::size_t g_copy_pos = 0;

int copy_source(void* outbuf, int minread, int maxread) {
    (void)minread;
    const std::size_t left = g_copy_data->size() - g_copy_pos;
    const std::size_t n = left < static_cast<std::size_t>(maxread) ? left : static_cast<std::size_t>(maxread);
    memcpy(outbuf, g_copy_data->data() + g_copy_pos, n);
    g_copy_pos += n;
    return static_cast<int>(n);
}

}  // namespace

// A page's rows of one table, already COPY text (copy_text.hpp), fed to PostgreSQL's own COPY FROM
// machinery (BeginCopyFrom with a data callback): bulk insertion with the types' input functions,
// one call per page and table, no SQL to parse.
void spi_stage_batch(const RowBatch& batch) {
    if (batch.rows == 0) return;
    if (batch.copy_text.empty()) throw std::logic_error("spi_stage_batch: the batch was not formatted as COPY text");
    const TableDef& t = *batch.table;
    const std::string& data = batch.copy_text;
    const std::string relname = "stage_" + t.name;
    std::vector<const char*> names{"merchant_id", "_batch", "_ord"};
    for (const auto& c : t.columns) names.push_back(c.name.c_str());
    g_copy_data = &data;
    g_copy_pos = 0;
    pg_call([&] {
        Oid nsp = get_namespace_oid("squaresync", false);
        Oid relid = get_relname_relid(relname.c_str(), nsp);
        if (!OidIsValid(relid)) elog(ERROR, "staging table squaresync.%s does not exist", relname.c_str());
        Relation rel = table_open(relid, RowExclusiveLock);
        List* attnames = NIL;
        for (const char* n : names) attnames = lappend(attnames, makeString(pstrdup(n)));
        ParseState* pstate = make_parsestate(nullptr);
        // As COPY itself does: the relation is the statement's one range table entry.
        ParseNamespaceItem* nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, nullptr, false, false);
#if PG_VERSION_NUM >= 160000
        nsitem->p_perminfo->requiredPerms = ACL_INSERT;
#else
        nsitem->p_rte->requiredPerms = ACL_INSERT;
#endif
#if PG_VERSION_NUM >= 140000
        CopyFromState cstate = BeginCopyFrom(pstate, rel, nullptr, nullptr, false, copy_source, attnames, NIL);
#else
        CopyState cstate = BeginCopyFrom(pstate, rel, nullptr, false, copy_source, attnames, NIL);
#endif
        (void)CopyFrom(cstate);
        EndCopyFrom(cstate);
        free_parsestate(pstate);
        table_close(rel, NoLock);
    });
    g_copy_data = nullptr;
}

void spi_connect() {
    pg_call([] {
        if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
    });
}

void spi_finish() {
    pg_call([] { SPI_finish(); });
}

namespace {

bool g_extension_required = false;

// A sync or apply worker's transaction holds the extension (a share lock on the extension object)
// until it ends. DROP EXTENSION locks the extension before anything it drops, so it waits for the
// transaction instead of taking some of the tables the transaction goes on to use (a deadlock,
// which PostgreSQL breaks by failing one of the two); a transaction that waited for a DROP finds
// the extension gone.
bool hold_extension() {
    const Oid extension = get_extension_oid("squaresync", true);
    if (!OidIsValid(extension)) return false;
    LockDatabaseObject(ExtensionRelationId, extension, 0, AccessShareLock);
    return get_extension_oid("squaresync", true) == extension;
}

}  // namespace

void require_extension() { g_extension_required = true; }

void begin_transaction() {
    g_outer_context = CurrentMemoryContext;
    // (in_transaction aborts what this started if any step fails.)
    pg_call([] {
        SetCurrentStatementStartTimestamp();
        StartTransactionCommand();
        if (SPI_connect() != SPI_OK_CONNECT) elog(ERROR, "SPI_connect failed");
        PushActiveSnapshot(GetTransactionSnapshot());
    });
    if (!g_extension_required) return;
    bool held = false;
    pg_call([&] { held = hold_extension(); });
    if (!held) throw RunAbort("the squaresync extension was dropped while the run was in progress");
}

void commit_transaction() {
    // SPI_finish deletes the context the body ran in: a failed commit (a deferred foreign key, a
    // cancel during its checks) must copy its error elsewhere.
    MemoryContextSwitchTo(g_outer_context);
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
