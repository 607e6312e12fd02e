// schema_check.cpp: squaresync._mapped_columns() lists the C++ table descriptions (tables.cpp) so
// that squaresync._schema_mismatches() can compare them with the DDL: one source of truth, checked.
extern "C" {
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
}

#include <array>

#include "guard.hpp"
#include "tables.hpp"

using namespace squaresync;
using namespace squaresync::pg;

SQUARESYNC_FUNCTION(squaresync_mapped_columns) {
    std::vector<std::array<std::string, 3>> rows;
    for (const auto& t : synced_tables())
        for (const auto& c : t.columns) rows.push_back({t.name, c.name, pg_type_name(c.type)});
    pg_call([&] {
        ReturnSetInfo* rsinfo = reinterpret_cast<ReturnSetInfo*>(fcinfo->resultinfo);
#if PG_VERSION_NUM >= 150000
        InitMaterializedSRF(fcinfo, 0);
#else
        if (rsinfo == nullptr || !IsA(rsinfo, ReturnSetInfo) || (rsinfo->allowedModes & SFRM_Materialize) == 0)
            ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
                            errmsg("set-valued function called in context that cannot accept a set")));
        TupleDesc desc;
        if (get_call_result_type(fcinfo, nullptr, &desc) != TYPEFUNC_COMPOSITE) elog(ERROR, "return type must be a row type");
        MemoryContext old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
        rsinfo->returnMode = SFRM_Materialize;
        rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
        rsinfo->setDesc = CreateTupleDescCopy(desc);
        MemoryContextSwitchTo(old);
#endif
        for (const auto& r : rows) {
            Datum values[3];
            bool nulls[3] = {false, false, false};
            for (int i = 0; i < 3; ++i) values[i] = CStringGetTextDatum(r[static_cast<std::size_t>(i)].c_str());
            tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
        }
    });
    return static_cast<Datum>(0);
}
