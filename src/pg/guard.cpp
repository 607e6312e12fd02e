// guard.cpp: turning PostgreSQL errors into C++ exceptions and back (see guard.hpp), and the
// self-test SQL function that proves both directions in the regression suite.
extern "C" {
#include "postgres.h"

#include "utils/builtins.h"
}

#include "guard.hpp"

#include <cstring>
#include <stdexcept>

namespace squaresync::pg {

PgError take_pg_error(MemoryContext restore) {
    MemoryContextSwitchTo(restore);
    ErrorData* edata = CopyErrorData();
    FlushErrorState();
    PgError e;
    e.sqlerrcode = edata->sqlerrcode;
    if (edata->message) e.message = edata->message;
    if (edata->detail) e.detail = edata->detail;
    if (edata->hint) e.hint = edata->hint;
    FreeErrorData(edata);
    return e;
}

std::string arg_text(FunctionCallInfo fcinfo, int n) {
    char* s = nullptr;
    pg_call([&] { s = text_to_cstring(PG_GETARG_TEXT_PP(n)); });
    return s;
}

Datum text_datum(const std::string& s) {
    Datum d = 0;
    pg_call([&] { d = PointerGetDatum(cstring_to_text_with_len(s.data(), static_cast<int>(s.size()))); });
    return d;
}

namespace {

// Copies a message into static storage so nothing C++-owned is alive when ereport longjmps.
struct ErrorText {
    int code = ERRCODE_INTERNAL_ERROR;
    char message[4096] = {0};
    char detail[2048] = {0};
    char hint[1024] = {0};
    void set(int c, const std::string& m, const std::string& d, const std::string& h) {
        code = c;
        std::strncpy(message, m.c_str(), sizeof message - 1);
        std::strncpy(detail, d.c_str(), sizeof detail - 1);
        std::strncpy(hint, h.c_str(), sizeof hint - 1);
    }
};

ErrorText g_error;

}  // namespace

Datum invoke(Datum (*body)(FunctionCallInfo), FunctionCallInfo fcinfo) {
    try {
        return body(fcinfo);
    } catch (const PgError& e) {
        g_error.set(e.sqlerrcode, e.message, e.detail, e.hint);
    } catch (const UserError& e) {
        g_error.set(e.sqlerrcode, e.message, "", e.hint);
    } catch (const std::bad_alloc&) {
        g_error.set(ERRCODE_OUT_OF_MEMORY, "squaresync: out of memory", "", "");
    } catch (const std::exception& e) {
        g_error.set(ERRCODE_INTERNAL_ERROR, std::string("squaresync: ") + e.what(), "", "");
    } catch (...) {
        g_error.set(ERRCODE_INTERNAL_ERROR, "squaresync: unknown C++ exception", "", "");
    }
    // Every C++ object of the try block is destroyed by now.
    ereport(ERROR, (errcode(g_error.code), errmsg("%s", g_error.message),
                    g_error.detail[0] ? errdetail("%s", g_error.detail) : 0,
                    g_error.hint[0] ? errhint("%s", g_error.hint) : 0));
    pg_unreachable();
}

namespace {

int g_destructors_run = 0;

struct CountsDestruction {
    std::string payload = std::string(64, 'x');  // owns heap memory, like real C++ state
    ~CountsDestruction() { ++g_destructors_run; }
};

}  // namespace

}  // namespace squaresync::pg

using squaresync::pg::CountsDestruction;
using squaresync::pg::g_destructors_run;
using squaresync::pg::pg_call;
using squaresync::pg::PgError;

// squaresync._boundary_selftest(kind text): 'cpp_throw' lets a C++ exception escape a SQL
// function's body (it must arrive as an ordinary ERROR); 'pg_error_unwinds' raises a PostgreSQL
// ERROR beneath two live C++ objects under pg_call and reports that both destructors ran and the
// error arrived as a C++ exception carrying its SQLSTATE and message.
SQUARESYNC_FUNCTION(squaresync_boundary_selftest) {
    const std::string kind = squaresync::pg::arg_text(fcinfo, 0);
    if (kind == "cpp_throw") {
        CountsDestruction alive;
        throw std::runtime_error("a C++ exception thrown inside a SQL function");
    }
    if (kind == "pg_error_unwinds") {
        g_destructors_run = 0;
        std::string caught;
        try {
            CountsDestruction outer;
            CountsDestruction inner;
            pg_call([] {
                ereport(ERROR, (errcode(ERRCODE_DIVISION_BY_ZERO), errmsg("raised by PostgreSQL under the guard")));
            });
        } catch (const PgError& e) {
            caught = std::string("caught PgError sqlstate=") + unpack_sql_state(e.sqlerrcode) + " message=\"" +
                     e.message + "\"";
        }
        caught += " destructors_run=" + std::to_string(g_destructors_run);
        return squaresync::pg::text_datum(caught);
    }
    throw squaresync::pg::UserError(ERRCODE_INVALID_PARAMETER_VALUE, "unknown self-test \"" + kind + "\"",
                                    "use 'cpp_throw' or 'pg_error_unwinds'");
}
