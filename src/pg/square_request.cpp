// square_request.cpp: squaresync._square_request(method, target, body): one authenticated request
// to Square with the stored connection, for SQL-side checks such as validate(deep => true).
extern "C" {
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
}

#include "guard.hpp"
#include "http_client.hpp"
#include "mapping.hpp"
#include "settings.hpp"
#include "spi.hpp"
#include "streams.hpp"

using namespace squaresync;
using namespace squaresync::pg;

SQUARESYNC_FUNCTION(squaresync_square_request) {
    const std::string method = arg_text(fcinfo, 0);
    const std::string target = arg_text(fcinfo, 1);
    const std::string body = PG_ARGISNULL(2) ? "" : arg_text(fcinfo, 2);
    if (method != "GET" && method != "POST")
        throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "method must be GET or POST");
    if (target.empty() || target[0] != '/')
        throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "target must be a path starting with /, e.g. /v2/locations");
    spi_connect();
    auto c = spi_exec("SELECT base_url, access_token FROM squaresync.connection", {}, true);
    spi_finish();
    if (c.rows.empty())
        throw UserError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE, "squaresync is not connected to Square",
                        "Run SELECT squaresync.connect('<access token>') first.");
    std::string text;
    {
        HttpClient client(http_config(*c.at(0, 0), *c.at(0, 1)));
        try {
            text = client.perform({method, target, body, method + " " + target}).body;
        } catch (const HttpError& e) {
            std::string code;
            square_error_summary(e.body, &code);
            throw UserError(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION, std::string("Square request failed: ") + e.what(),
                            code.empty() ? "" : "Square's error code: " + code);
        }
    }
    Datum d = 0;
    text = json_without_nul(std::move(text));  // as the sync stores it (mapping.hpp)
    pg_call([&] { d = DirectFunctionCall1(jsonb_in, CStringGetDatum(text.c_str())); });
    return d;
}
