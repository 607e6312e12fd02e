// connect.cpp: squaresync.connect(access_token, environment, base_url): checks the token with
// GET /v2/merchants/me, stores the connection (readable by the extension's owner only) and returns
// the merchant id. The token never reaches a log line, an error or pg_stat_activity.
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
}

#include <nlohmann/json.hpp>

#include "guard.hpp"
#include "http_client.hpp"
#include "settings.hpp"
#include "spi.hpp"
#include "streams.hpp"

using namespace squaresync;
using namespace squaresync::pg;

namespace {

const char* kProduction = "https://connect.squareup.com";
const char* kSandbox = "https://connect.squareupsandbox.com";
const char* kRedacted = "SELECT squaresync.connect(<access token redacted>)";

void check_token(const std::string& token) {
    if (token.empty())
        throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "the access token is empty",
                        "Pass the access token from the Square Developer Dashboard (or an OAuth token).");
    if (token.size() > 1024)
        throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "the access token is longer than 1024 characters",
                        "Pass the token itself, not a file or a JSON document.");
    for (unsigned char c : token)
        if (c <= 0x20 || c >= 0x7f)
            throw UserError(ERRCODE_INVALID_PARAMETER_VALUE,
                            "the access token contains a space, a control or a non-ASCII character",
                            "Square tokens are printable ASCII; check for a stray newline or quote.");
}

}  // namespace

SQUARESYNC_FUNCTION(squaresync_connect) {
    // The statement's text holds the token: keep it out of pg_stat_activity and of the STATEMENT
    // line PostgreSQL logs with an error.
    pg_call([] {
        debug_query_string = kRedacted;
        pgstat_report_activity(STATE_RUNNING, kRedacted);
    });
    if (PG_ARGISNULL(0)) throw UserError(ERRCODE_NULL_VALUE_NOT_ALLOWED, "the access token is NULL");
    const std::string token = arg_text(fcinfo, 0);
    const std::string environment = PG_ARGISNULL(1) ? "production" : arg_text(fcinfo, 1);
    const bool custom = !PG_ARGISNULL(2);
    check_token(token);
    if (environment != "production" && environment != "sandbox")
        throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, "unknown environment \"" + environment + "\"",
                        "Use 'production' or 'sandbox' (or base_url => 'https://...' for another server).");
    std::string base_url = custom ? arg_text(fcinfo, 2) : (environment == "sandbox" ? kSandbox : kProduction);
    while (!base_url.empty() && base_url.back() == '/') base_url.pop_back();
    try {
        validate_base_url(base_url);
    } catch (const ConfigError& e) {
        throw UserError(ERRCODE_INVALID_PARAMETER_VALUE, std::string("base_url is not usable: ") + e.what(),
                        "Give https://host[:port]; plain http is accepted only for a loopback host (127.0.0.1, localhost, [::1]).");
    }

    std::string merchant_id;
    {
        HttpClient client(http_config(base_url, token));
        HttpResponse resp;
        try {
            resp = client.perform({"GET", "/v2/merchants/me", "", "merchant lookup"});
        } catch (const HttpError& e) {
            if (e.kind == FailureKind::Aborted) throw UserError(ERRCODE_QUERY_CANCELED, "canceled while contacting Square");
            if (e.kind == FailureKind::Unauthorized)
                throw UserError(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, e.what(),
                                "Check that the token belongs to this environment (sandbox tokens only work with "
                                "environment => 'sandbox') and has not been revoked.");
            throw UserError(ERRCODE_CONNECTION_FAILURE, std::string("could not reach Square: ") + e.what());
        }
        auto body = nlohmann::json::parse(resp.body, nullptr, false);
        if (body.is_object() && body.contains("merchant") && body["merchant"].is_object() &&
            body["merchant"].contains("id") && body["merchant"]["id"].is_string())
            merchant_id = body["merchant"]["id"].get<std::string>();
        if (merchant_id.empty())
            throw UserError(ERRCODE_PROTOCOL_VIOLATION,
                            "Square's answer to GET /v2/merchants/me has no merchant id; is base_url a Square API server?");
    }

    spi_connect();
    spi_exec("INSERT INTO squaresync.connection (id, merchant_id, environment, base_url, access_token, connected_at)"
             " VALUES (1, $1, $2, $3, $4, now()) ON CONFLICT (id) DO UPDATE SET merchant_id = excluded.merchant_id,"
             " environment = excluded.environment, base_url = excluded.base_url,"
             " access_token = excluded.access_token, connected_at = excluded.connected_at",
             {merchant_id, custom ? std::string("custom") : environment, base_url, token});
    spi_finish();
    return text_datum(merchant_id);
}
