// floor_download.cpp: the download floor of a foundation (issue 9, floor (a)). Fetches exactly the
// requests a foundation sends (locations first, then every other stream's page walks together),
// with the extension's HttpClient and the same settings (libcurl multi, keep-alive, gzip accepted,
// max_concurrency transfers in flight), and sends the data nowhere. Three kinds of pass:
//   map   : StreamFetch with a sink that discards: download + JSON parse + map to rows + COPY text (what the
//           worker does before staging). A first map pass ("record", always run) also records
//           every walk's chain of requests.
//   raw   : replays the recorded chains (same walks, same order, same concurrency) and discards
//           every body unread: download only, "to nowhere".
//   parse : the same replay, parsing each body with simdjson's DOM (as the worker does) and dropping it.
// Prints one JSON object with seconds, requests and bytes per pass (and the pass's per-stream pages).
//
//   floor_download --url http://127.0.0.1:PORT --token T [--concurrency 4] [--passes raw,parse,map,...]
//   floor_download --dump-tables     (the synced tables' descriptions as JSON, for bench/oldway.py)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <simdjson.h>

#include "http_client.hpp"
#include "streams.hpp"
#include "tables.hpp"

using namespace squaresync;
using nlohmann::json;

namespace {

struct NullSink : RowSink {
    std::int64_t rows = 0;
    std::vector<std::string> location_ids;  // kept from the locations page: the other walks need them
    std::int64_t stage(const std::string& stream, std::vector<RowBatch>& batches) override {
        std::int64_t n = 0;
        for (const auto& b : batches) {
            n += static_cast<std::int64_t>(b.rows);
            if (stream != "locations") continue;
            for (std::size_t c = 0; c < b.table->columns.size(); ++c)
                if (b.table->columns[c].name == "id")
                    for (const auto& v : b.columns[c])
                        if (v) location_ids.push_back(*v);
        }
        rows += n;
        return n;
    }
    void progress(const std::string&) override {}
};

// Forwards to a StreamFetch walk and records the requests it makes, in order.
struct RecordingWalk : PageWalk {
    PageWalk* inner;
    std::vector<HttpRequest> chain;
    std::string failure;
    explicit RecordingWalk(PageWalk* w) : inner(w) {}
    HttpRequest first() override {
        chain.clear();
        HttpRequest r = inner->first();
        chain.push_back(r);
        return r;
    }
    void prepare(HttpResponse& response) override { inner->prepare(response); }
    std::optional<HttpRequest> on_page(HttpResponse&& response) override {
        auto next = inner->on_page(std::move(response));
        if (next) chain.push_back(*next);
        return next;
    }
    void on_failure(const HttpError& e) override {
        failure = e.what();
        inner->on_failure(e);
    }
};

// Replays a recorded chain: sends the same requests in the same order, discards (or parses) bodies.
struct ReplayWalk : PageWalk {
    const std::vector<HttpRequest>& chain;
    bool parse;
    std::size_t next = 0;
    std::string failure;
    ReplayWalk(const std::vector<HttpRequest>& c, bool p) : chain(c), parse(p) {}
    HttpRequest first() override {
        next = 1;
        return chain.at(0);
    }
    void prepare(HttpResponse& response) override {  // on the helper thread, as in the worker
        if (parse) {
            thread_local simdjson::dom::parser parser;  // the worker's parser (streams.cpp)
            simdjson::dom::element doc;
            if (parser.parse(response.body).get(doc)) throw RetryableResponseError("malformed JSON");
        }
    }
    std::optional<HttpRequest> on_page(HttpResponse&&) override {
        if (next >= chain.size()) return std::nullopt;
        return chain[next++];
    }
    void on_failure(const HttpError& e) override { failure = e.what(); }
};

double since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

HttpConfig config(const std::string& url, const std::string& token, int concurrency) {
    HttpConfig c;  // the extension's defaults (settings.cpp mirrors them), but the concurrency
    c.base_url = url;
    c.access_token = token;
    c.max_concurrency = concurrency;
    c.user_agent = "squaresync/0.1.0 (PostgreSQL extension)";
    return c;
}

}  // namespace

int main(int argc, char** argv) {
    std::string url, token = "fake-square-token", passes = "raw,parse,map";
    int concurrency = 4;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto val = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::cerr << a << " needs a value\n";
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "--url") url = val();
        else if (a == "--token") token = val();
        else if (a == "--concurrency") concurrency = std::stoi(val());
        else if (a == "--passes") passes = val();
        else if (a == "--dump-tables") {
            // The table descriptions (tables.hpp), for bench/oldway.py's mapper.
            json t = json::array();
            for (const auto& d : synced_tables()) {
                json cols = json::array();
                for (const auto& c : d.columns) cols.push_back({{"name", c.name}, {"type", pg_type_name(c.type)}, {"source", c.source}});
                t.push_back({{"name", d.name}, {"key", d.key}, {"array_path", d.array_path}, {"columns", cols}});
            }
            std::cout << t.dump() << std::endl;
            return 0;
        }
        else {
            std::cerr << "usage: floor_download --url URL [--token T] [--concurrency N] [--passes map,raw,parse]\n";
            return 2;
        }
    }
    if (url.empty()) {
        std::cerr << "--url is required\n";
        return 2;
    }

    json out = json::object();
    out["concurrency"] = concurrency;
    std::vector<std::unique_ptr<RecordingWalk>> recorded;

    // A map pass: what the worker does before staging. The first one also records the chains.
    auto map_pass = [&](bool record) {
        NullSink sink;
        std::vector<std::unique_ptr<StreamFetch>> fetches;
        std::vector<std::unique_ptr<RecordingWalk>> rec;
        std::map<std::string, int> pages;
        HttpClient client(config(url, token, concurrency));
        const auto t0 = std::chrono::steady_clock::now();
        // Locations first, as the worker does; the other walks need their ids.
        StreamFetch locations("locations", StreamOptions{true, std::nullopt, {}, 0}, sink);
        std::vector<PageWalk*> lw;
        for (auto* w : locations.walks()) {
            rec.push_back(std::make_unique<RecordingWalk>(w));
            lw.push_back(rec.back().get());
        }
        client.run(lw);
        std::vector<std::string> ids = sink.location_ids;
        std::sort(ids.begin(), ids.end());  // the worker reads them back ORDER BY id (C collation)
        const double t_loc = since(t0);
        std::vector<PageWalk*> walks;
        for (const auto& s : stream_names()) {
            if (s == "locations") continue;
            // Formatted as COPY text for staging, as in the worker (the merchant id is a stand-in).
            fetches.push_back(std::make_unique<StreamFetch>(s, StreamOptions{true, std::nullopt, ids, 0, "MERCHANT"}, sink));
            for (auto* w : fetches.back()->walks()) {
                rec.push_back(std::make_unique<RecordingWalk>(w));
                walks.push_back(rec.back().get());
            }
        }
        client.run(walks);
        const double secs = since(t0);
        for (auto& f : fetches) {
            if (f->failed()) {
                std::cerr << "stream " << f->name() << " failed: " << f->error() << "\n";
                std::exit(1);
            }
            pages[f->name()] = f->pages();
        }
        pages["locations"] = locations.pages();
        const auto& st = client.stats();
        if (record) recorded = std::move(rec);
        return json{{"seconds", secs},
                    {"locations_seconds", t_loc},
                    {"requests", st.requests},
                    {"bytes", st.bytes_received},
                    {"rows", sink.rows},
                    {"walks", walks.size() + 1},
                    {"pages", pages}};
    };

    auto replay = [&](bool parse) {
        HttpClient client(config(url, token, concurrency));
        std::vector<std::unique_ptr<ReplayWalk>> rw;
        for (auto& r : recorded) rw.push_back(std::make_unique<ReplayWalk>(r->chain, parse));
        const auto t0 = std::chrono::steady_clock::now();
        client.run({rw.at(0).get()});  // locations, alone, first
        std::vector<PageWalk*> walks;
        for (std::size_t i = 1; i < rw.size(); ++i) walks.push_back(rw[i].get());
        client.run(walks);
        const double secs = since(t0);
        for (auto& w : rw)
            if (!w->failure.empty()) {
                std::cerr << "replay failed: " << w->failure << "\n";
                std::exit(1);
            }
        const auto& st = client.stats();
        return json{{"seconds", secs}, {"requests", st.requests}, {"bytes", st.bytes_received}};
    };
    // The recording pass always runs first (and warms the server up); then the passes asked for,
    // each reported under its name (a repeated name keeps the fastest).
    out["record"] = map_pass(true);
    std::stringstream ss(passes);
    for (std::string p; std::getline(ss, p, ',');) {
        json r;
        if (p == "raw") r = replay(false);
        else if (p == "parse") r = replay(true);
        else if (p == "map") r = map_pass(false);
        else {
            std::cerr << "unknown pass " << p << "\n";
            return 2;
        }
        if (!out.contains(p) || r["seconds"].get<double>() < out[p]["seconds"].get<double>()) out[p] = r;
        out[p]["runs"] = out[p].value("runs", 0) + 1;
    }
    std::cout << out.dump() << std::endl;
    return 0;
}
