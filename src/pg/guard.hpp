// guard.hpp: the C++/PostgreSQL boundary, the one mechanism every entry point goes through.
//  - pg_call(f): runs f, which calls PostgreSQL, under PG_TRY; a PostgreSQL ERROR becomes a C++
//    PgError thrown after PG_END_TRY, so the C++ frames above it unwind normally. f itself must
//    hold no C++ object with a destructor (its locals are skipped by the longjmp).
//  - SQUARESYNC_FUNCTION(name): defines a SQL-callable function whose C++ body may throw; any
//    exception becomes an ereport(ERROR) raised only after every C++ object has been destroyed.
// Include after postgres.h.
#pragma once

extern "C" {
#include "fmgr.h"
#include "utils/elog.h"
#include "utils/memutils.h"
}

#include <exception>
#include <string>
#include <utility>

namespace squaresync::pg {

// A PostgreSQL error caught under pg_call, with the fields needed to raise it again unchanged.
struct PgError : std::exception {
    int sqlerrcode = 0;
    std::string message, detail, hint;
    const char* what() const noexcept override { return message.c_str(); }
};

// An error meant for the user: its SQLSTATE, message and hint (what to do).
struct UserError : std::exception {
    int sqlerrcode;
    std::string message, hint;
    UserError(int code, std::string msg, std::string h = {})
        : sqlerrcode(code), message(std::move(msg)), hint(std::move(h)) {}
    const char* what() const noexcept override { return message.c_str(); }
};

// Copies the current error (in PG_CATCH) into a PgError and clears PostgreSQL's error state.
PgError take_pg_error(MemoryContext restore);

template <typename F>
void pg_call(F&& f) {
    MemoryContext ctx = CurrentMemoryContext;
    volatile bool failed = false;
    PgError error;
    PG_TRY();
    {
        f();
    }
    PG_CATCH();
    {
        failed = true;
        error = take_pg_error(ctx);
    }
    PG_END_TRY();
    if (failed) throw error;
}

// A text argument as a C++ string, and a C++ string as a text Datum, both under pg_call.
std::string arg_text(FunctionCallInfo fcinfo, int n);
Datum text_datum(const std::string& s);

// Runs body (which may throw anything) and converts whatever escapes into an ereport(ERROR),
// raised after the try block has unwound. Used by SQUARESYNC_FUNCTION.
Datum invoke(Datum (*body)(FunctionCallInfo), FunctionCallInfo fcinfo);

}  // namespace squaresync::pg

#define SQUARESYNC_FUNCTION(name)                                                          \
    extern "C" {                                                                           \
    PG_FUNCTION_INFO_V1(name);                                                             \
    }                                                                                      \
    static Datum name##_body(FunctionCallInfo fcinfo);                                     \
    extern "C" Datum name(PG_FUNCTION_ARGS) { return squaresync::pg::invoke(name##_body, fcinfo); } \
    static Datum name##_body(FunctionCallInfo fcinfo)
