// connect.cpp: squaresync.connect(access_token, environment, base_url): checks the token with
// GET /v2/merchants/me, stores the connection (readable by the extension's owner only) and returns
// the merchant id. The token never reaches a log line, an error or pg_stat_activity.
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#if PG_VERSION_NUM >= 140000  // (pgstat.h declares it before PostgreSQL 14)
#include "utils/backend_status.h"
#endif
}

#include <cstdlib>

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

// The setting under which PostgreSQL writes this statement's text or parameters, the token among
// them, to the server log (name empty when none is on), and whether it has done so already. A
// duration or a sampled statement is logged when the statement ends, so refusing (an ERROR)
// prevents it (though the extended protocol's parse and bind steps, logged apart, came before);
// log_statement = 'all' logged it before any extension code ran.
struct Exposure {
    std::string name, value, off;  // the setting, its value now, and the value that turns it off
    bool already = false;
};

Exposure logging_exposure() {
    auto number = [](double v) {
        std::string s = std::to_string(v);
        while (s.size() > 1 && s.back() == '0') s.pop_back();
        if (!s.empty() && s.back() == '.') s.pop_back();
        return s;
    };
    if (log_statement == LOGSTMT_ALL) return {"log_statement", "'all'", "'none'", true};
    if (log_min_duration_statement >= 0)
        return {"log_min_duration_statement", std::to_string(log_min_duration_statement) + " ms", "-1"};
    if (log_min_duration_sample >= 0 && log_statement_sample_rate > 0)
        return {"log_min_duration_sample", std::to_string(log_min_duration_sample) + " ms", "-1"};
    if (log_xact_sample_rate > 0) return {"log_transaction_sample_rate", number(log_xact_sample_rate), "0"};
#if PG_VERSION_NUM >= 160000
    // auto_explain logs the statement that stores the token, with its parameters.
    const char* ae_min = GetConfigOption("auto_explain.log_min_duration", true, false);
    const char* ae_nested = GetConfigOption("auto_explain.log_nested_statements", true, false);
    const char* ae_params = GetConfigOption("auto_explain.log_parameter_max_length", true, false);
    if (ae_min && ae_nested && ae_params && std::atoi(ae_min) >= 0 && std::string(ae_nested) == "on" &&
        std::atoi(ae_params) != 0)
        return {"auto_explain.log_parameter_max_length", ae_params, "0"};
#endif
    return {};
}

}  // namespace

SQUARESYNC_FUNCTION(squaresync_connect) {
    // The statement's text holds the token: keep it out of pg_stat_activity and of the STATEMENT
    // line PostgreSQL logs with an error.
    pg_call([] {
        debug_query_string = kRedacted;
        pgstat_report_activity(STATE_RUNNING, kRedacted);
    });
    const Exposure exposed = logging_exposure();
    if (!exposed.name.empty()) {
        const std::string setting = exposed.name + " = " + exposed.value;
        const std::string off = "SET " + exposed.name + " = " + exposed.off;
        if (exposed.already)
            throw UserError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                            setting + " has already written this statement, with the access token in it, to the "
                                      "server log; the token was not stored",
                            "Replace that token in the Square Developer Dashboard, then connect with the new one from a "
                            "session where statements are not logged (" + off + ", as a superuser).");
        throw UserError(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                        "squaresync.connect() does not run while " + setting +
                            ": PostgreSQL would write the statement, with the access token in it, to the server log "
                            "when it ends; the token was not stored",
                        "Turn it off for this session first (" + off + ", as a superuser), call connect(), then RESET it. "
                        "From psql nothing was logged; a driver that sends the statement in separate parse and bind steps "
                        "may have had those logged already, with the token: then replace it in the Square Developer "
                        "Dashboard.");
    }
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
