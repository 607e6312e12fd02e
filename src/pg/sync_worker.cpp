// sync_worker.cpp: the sync worker (a dynamic background worker), one per run. It records the run,
// fetches every stream from Square with no transaction open while waiting (pages are staged in
// short transactions), and applies each fetched stream in one transaction with its watermark: the
// catalog side by an apply worker (apply_worker.cpp; as soon as it is fetched, or in a foundation
// once the orders are), the sales side here as each stream is fetched. It finishes the run with its
// counts, a NOTIFY and one LOG line.
extern "C" {
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "utils/guc.h"
}

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <unordered_map>

#include "guard.hpp"
#include "http_client.hpp"
#include "runs.hpp"
#include "settings.hpp"
#include "spi.hpp"
#include "stream_apply.hpp"
#include "streams.hpp"
#include "unchanged.hpp"
#include "workers.hpp"

namespace squaresync::pg {

namespace {

std::string str(std::int64_t v) { return std::to_string(v); }

// A cancel served inside a statement (pg_cancel_backend while a page is staged or applied) stops
// the run as one served between transfers does (should_abort), instead of failing one stream.
HttpError canceled(const std::string& during) {
    return HttpError(FailureKind::Aborted, 0, "the run was canceled while " + during);
}

template <typename F>
auto stop_on_cancel(const std::string& during, F&& f) -> decltype(f()) {
    try {
        return f();
    } catch (const PgError& e) {
        if (e.sqlerrcode == ERRCODE_QUERY_CANCELED) throw canceled(during);
        throw;
    }
}

// Stages each fetched page (formatted as COPY text by the fetch) in its own short transaction. In
// an incremental run, objects stored at the version Square sent (re-reads: the catalog's overlap)
// are dropped first, with their children: they are neither staged nor compared; orders, listed as
// entries, are not even fetched when stored at the version listed (not_held).
class StagingSink : public RowSink {
public:
    StagingSink(std::string merchant, bool incremental) : merchant_(std::move(merchant)), incremental_(incremental) {}
    std::function<void(const std::string&)> on_fetched;  // a stream's every walk has ended
    void fetched(const std::string& stream) override {
        if (on_fetched) on_fetched(stream);
    }
    std::int64_t stage(const std::string& stream, std::vector<RowBatch>& batches) override {
        return stop_on_cancel("a page of " + stream + " was staged", [&] {
            // (Streams listed by entries first stage only what not_held() chose: nothing to drop.)
            if (incremental_ && !stream_reads_whole(stream) && !stream_lists_entries(stream)) skip_stored(batches);
            std::int64_t staged = 0;
            in_transaction([&] {  // (throws RunAbort should the extension have been dropped)
                for (const auto& b : batches) {
                    spi_stage_batch(b);
                    staged += static_cast<std::int64_t>(b.rows);
                }
            });
            return staged;
        });
    }
    void progress(const std::string& label) override { report_activity("squaresync: " + label); }

    // The listed objects not stored at the version Square lists (all of them when the versions
    // cannot be read at once).
    std::vector<std::string> not_held(const std::string& stream, const std::vector<std::string>& ids,
                                      const std::vector<std::optional<std::int64_t>>& versions) override {
        const auto stored = stop_on_cancel("the stored versions of " + stream + " were read", [&] {
                                return stored_versions(stream_tables(stream).at(0), ids);
                            }).value_or(Versions{});
        std::vector<std::string> out;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            const auto it = stored.find(ids[i]);
            if (!versions[i] || it == stored.end() || it->second != std::to_string(*versions[i])) out.push_back(ids[i]);
        }
        return out;
    }

private:
    using Versions = std::unordered_map<std::string, std::string>;  // id -> stored version, as text

    // The stored version of those of these objects square.<table> holds. The fetch must never wait
    // for a lock on a data table (a seller's LOCK TABLE, an ALTER): nullopt when the versions cannot
    // be read at once; the caller then stages or fetches everything, which is always correct (the
    // apply compares it, or fails with squaresync.lock_timeout).
    std::optional<Versions> stored_versions(const std::string& table, const std::vector<std::string>& ids) {
        Versions stored;
        try {
            in_transaction([&] {
                spi_exec("SELECT set_config('lock_timeout', '1ms', true)");
                auto r = spi_exec("SELECT id, version::text FROM square." + table +
                                      " WHERE merchant_id = $1 AND id = ANY ($2::text[])",
                                  {merchant_, pg_text_array(ids)}, true);
                for (const auto& row : r.rows)
                    if (row[0] && row[1]) stored.emplace(*row[0], *row[1]);
            });
        } catch (const PgError& e) {
            if (e.sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE && e.sqlerrcode != ERRCODE_UNDEFINED_TABLE) throw;
            return std::nullopt;
        }
        return stored;
    }

    // Drops from the page the objects stored at the version Square sent, with their children.
    void skip_stored(std::vector<RowBatch>& page) {
        for (auto& v : versioned_batches(page)) {
            const RowBatch& top = *v.top;
            if (top.rows == 0) continue;
            const auto& ids = top.columns[v.id_column];
            const auto& versions = top.columns[v.version_column];
            std::vector<std::string> id_list;
            for (const auto& id : ids) id_list.push_back(id.value_or(""));
            const auto found = stored_versions(top.table->name, id_list);
            if (!found) return;  // staged whole
            const Versions& stored = *found;
            std::vector<bool> unchanged(top.rows);
            bool any = false;
            for (std::size_t i = 0; i < top.rows; ++i) {
                const auto it = ids[i] ? stored.find(*ids[i]) : stored.end();
                unchanged[i] = versions[i] && it != stored.end() && it->second == *versions[i];
                any = any || unchanged[i];
            }
            if (any) drop_unchanged(v, unchanged);
        }
    }

    std::string merchant_;
    bool incremental_;
};

class SyncRun {
public:
    SyncRun(std::int64_t id, const RunArgs& args) : id_(id), kind_(static_cast<RunKind>(args.kind)), args_(args) {}

    void execute() {
        start();
        try {
            load_connection();
            fetch_and_apply();
            finish_from_streams();  // (a cancel served while it records the run is a stop too)
        } catch (const HttpError& e) {
            if (e.kind == FailureKind::Aborted) {
                finish_stopped();
                throw;
            }
            finish_failed(e.what());
            return;
        } catch (const PgError& e) {
            if (e.sqlerrcode == ERRCODE_QUERY_CANCELED)
                finish_stopped();  // canceled inside a statement
            else
                finish_failed(e.what());
            throw;
        } catch (const RunAbort& e) {
            // The control tables are gone with the extension: nothing left to record.
            const std::string line = std::string("squaresync: run ") + str(id_) + " stopped: " + e.what();
            pg_call([&] { ereport(LOG, (errmsg("%s", line.c_str()))); });
            return;
        } catch (const std::exception& e) {
            finish_failed(e.what());
            throw;
        }
    }

private:
    bool full() const { return kind_ == RunKind::Foundation; }
    const char* kind_name() const { return full() ? "foundation" : "incremental"; }

    // Takes the run lock and records the run (and its streams) as running, committed before any work.
    void start() {
        report_activity("squaresync: waiting for the run lock");
        in_transaction([&] { advisory_lock(kRunLock, true); });
        in_transaction([&] {
            fail_stale_runs(id_);
            spi_exec("INSERT INTO squaresync.sync_runs (id, kind, status, worker_pid, triggered_by)"
                     " VALUES ($1::bigint, $2, 'running', pg_backend_pid(), $3)",
                     {str(id_), std::string(kind_name()), std::string(args_.triggered_by)});
            for (const auto& s : stream_names())
                spi_exec("INSERT INTO squaresync.sync_run_streams (run_id, stream, status) VALUES ($1::bigint, $2, 'running')",
                         {str(id_), s});
        });
    }

    // The connection and the committed watermarks; an error here fails the recorded run.
    void load_connection() {
        in_transaction([&] {
            auto c = spi_exec("SELECT merchant_id, base_url, access_token FROM squaresync.connection", {}, true);
            if (c.rows.empty()) throw std::runtime_error("squaresync is not connected to Square: run squaresync.connect() first");
            merchant_ = *c.at(0, 0);
            base_url_ = *c.at(0, 1);
            token_ = *c.at(0, 2);
            spi_exec("UPDATE squaresync.sync_runs SET merchant_id = $2 WHERE id = $1::bigint", {str(id_), merchant_});
            auto w = spi_exec("SELECT stream, watermark FROM squaresync.stream_state WHERE merchant_id = $1", {merchant_});
            for (const auto& r : w.rows)
                if (r[1]) watermarks_[*r[0]] = *r[1];
            spi_exec("SELECT squaresync._clear_staging(NULL)");
        });
    }

    StreamOptions options(const std::string& stream) const {
        StreamOptions o;
        o.full = full();
        auto it = watermarks_.find(stream);
        if (it != watermarks_.end()) o.watermark = it->second;
        o.location_ids = locations_;
        const int s = stream == "orders" ? Settings::orders_overlap_s
                      : stream == "transactions" ? Settings::transactions_lookback_s
                                                 : Settings::overlap_s;
        o.overlap_us = static_cast<std::int64_t>(s) * 1000000;
        o.stage_merchant = merchant_;
        o.entries_first = !full();
        return o;
    }

    void fetch_and_apply() {
        HttpClient client(http_config(base_url_, token_));
        StagingSink sink(merchant_, !full());

        // Locations first: the per-location streams need their ids.
        {
            StreamFetch locations("locations", options("locations"), sink);
            run_walks(client, {&locations});
            apply(locations);
            in_transaction([&] {
                auto r = spi_exec("SELECT id FROM square.locations WHERE merchant_id = $1 ORDER BY id", {merchant_}, true);
                for (const auto& row : r.rows) locations_.push_back(*row[0]);
            });
            // A rejected token fails the whole run at once: no request is worth sending with it.
            const std::string& code = locations.error_code();
            if (code == "UNAUTHORIZED" || code == "ACCESS_TOKEN_EXPIRED" || code == "ACCESS_TOKEN_REVOKED" ||
                code == "FORBIDDEN" || code == "INSUFFICIENT_SCOPES") {
                for (const auto& s : stream_names())
                    if (s != "locations") streams_[s] = {true, locations.error()};
                return;
            }
        }

        // The catalog side's walks first (their pages are few in an incremental run), so that it
        // is fetched early and its apply worker starts while the sales side is still being
        // fetched. Then, in an incremental run, the orders (a few pages, the longest apply), so
        // that their apply starts as early as it can (the small streams' transfers then in flight
        // complete meanwhile; their pages are staged after it); in a foundation the
        // orders last, so that the small streams are fetched and applied here while the orders'
        // many pages are still coming in. The streams' own order otherwise.
        std::vector<std::string> order;
        for (const auto& s : stream_names())
            if (s != "locations") order.push_back(s);
        std::stable_partition(order.begin(), order.end(),
                              [this](const std::string& s) { return full() ? s != "orders" : s == "orders"; });
        std::stable_partition(order.begin(), order.end(), [](const std::string& s) { return applied_apart(s); });
        for (const auto& s : order) {
            fetches_.push_back(std::make_unique<StreamFetch>(s, options(s), sink));
            all_.push_back(fetches_.back().get());
        }
        // Each stream applies as soon as it is fetched (between the pages of the others): the
        // catalog side in an apply worker, the rest here. In an incremental run the catalog side
        // is handed over as soon as it is fetched: the fetch mostly waits for Square, and the
        // apply worker uses that time. A foundation's fetch keeps both cores busy staging, so
        // there the catalog side is handed over when the last stream (the orders, the longest
        // apply) is fetched, to be applied beside it.
        sink.on_fetched = [this](const std::string& name) {
            if (!full() || name == all_.back()->name()) hand_over_catalog_side(false);
            if (!(Settings::parallel_apply && applied_apart(name))) {
                apply_once(name);
                report_activity("squaresync: fetching");  // the other streams' pages, until a page is staged
            }
        };
        run_walks(client, all_);
        sink.on_fetched = nullptr;
        hand_over_catalog_side(true);  // not yet tried: the catalog side ended last, or a stream gave up

        // What is left: streams whose walks gave up, the catalog side when no apply worker took it.
        for (auto* f : all_)
            if (std::find(apart_.begin(), apart_.end(), f) == apart_.end()) apply_once(f->name());

        if (worker_) {
            report_activity("squaresync: waiting for the apply worker");
            const auto outcomes = worker_->wait();
            worker_.reset();
            for (auto* f : apart_) {
                const auto& o = outcomes.at(f->name());
                if (o)
                    streams_[f->name()] = {o->failed, o->error};
                else
                    apply(*f);  // the apply worker stopped before it applied or recorded this stream
            }
        }

        // What derives from several streams (the item library export), once per run: here, unless
        // the apply worker did it.
        if (apart_.empty() || !derived_done(id_)) derived_error_ = rebuild_derived(id_, merchant_);
    }

    // Once every stream of the catalog side is fetched (or, with every_walk_over, has given up),
    // hands them to an apply worker (which then rebuilds the export), so that they apply while
    // this worker fetches or applies the sales side. Tried once; without a free worker slot or
    // with parallel_apply off, this worker applies them after the fetch.
    void hand_over_catalog_side(bool every_walk_over) {
        if (hand_over_tried_) return;
        for (auto* f : all_)
            if (applied_apart(f->name()) && !every_walk_over && !f->done()) return;
        hand_over_tried_ = true;
        if (!Settings::parallel_apply) return;
        std::vector<StreamFetch*> apart;
        std::vector<StreamApply> fetched;
        std::vector<std::string> names;
        for (auto* f : all_)
            if (applied_apart(f->name()) && !f->failed()) {
                apart.push_back(f);
                fetched.push_back(stream_apply(*f));
                names.push_back(f->name());
            }
        if (apart.empty() || !record_fetched(fetched)) return;
        worker_ = ApplyWorker::start(id_, names, full(), args_.database, args_.role);
        if (worker_) apart_ = std::move(apart);
    }

    // Applies a stream here unless that was done already.
    void apply_once(const std::string& name) {
        if (streams_.count(name)) return;
        for (auto* f : all_)
            if (f->name() == name) apply(*f);
    }

    // Runs the streams' walks together; walks whose cursor expired restart from the watermark.
    void run_walks(HttpClient& client, const std::vector<StreamFetch*>& fetches) {
        std::vector<PageWalk*> walks;
        for (auto* f : fetches)
            for (auto* w : f->walks()) walks.push_back(w);
        for (int round = 0; !walks.empty(); ++round) {
            client.run(walks);
            walks.clear();
            for (auto* f : fetches) {
                auto r = f->take_restarts();
                if (r.empty()) continue;
                if (round >= 3)
                    f->fail("Square's page cursor expired (INVALID_CURSOR) three times in a row", "INVALID_CURSOR");
                else
                    walks.insert(walks.end(), r.begin(), r.end());
            }
        }
        stats_ = client.stats();
    }

    StreamApply stream_apply(const StreamFetch& f) const {
        StreamApply a;
        a.run_id = id_;
        a.merchant = merchant_;
        a.stream = f.name();
        a.full = full();
        a.watermark = f.next_watermark();
        a.pages = f.pages();
        a.rows = f.rows();
        return a;
    }

    // One transaction: the stream's tables, its watermark and the run's counters; or the stream's
    // failure recorded.
    void apply(StreamFetch& f) {
        const StreamApply a = stream_apply(f);
        ApplyOutcome o;
        if (f.failed()) {
            o = {true, f.error(), f.error_code()};
            record_stream_failure(a, o);
        } else {
            o = apply_stream(a);
            if (o.failed) f.fail(o.error, o.code);
            if (o.code == unpack_sql_state(ERRCODE_QUERY_CANCELED)) throw canceled(f.name() + " was applied");
        }
        streams_[f.name()] = {o.failed, o.error};
    }

    // A shutdown or cancel stopped the run: recorded with the stop request set aside (the first
    // statement would serve it otherwise and the run would stay 'running' until the next one), and
    // put back afterwards. Nothing is held meanwhile: a new stop request is served as usual (the
    // next run then marks the run failed), and each statement waits for a lock at most
    // squaresync.lock_timeout (0: without limit, as the applies).
    void finish_stopped() {
        const bool die = ProcDiePending, cancel = QueryCancelPending;
        ProcDiePending = false;
        QueryCancelPending = false;
        auto put_back = [&] {
            if (die) ProcDiePending = true;
            if (cancel) QueryCancelPending = true;
            if (die || cancel) InterruptPending = true;
        };
        try {
            end_apply_worker(true);
            const std::string timeout = std::to_string(Settings::lock_timeout_ms);
            pg_call([&] { SetConfigOption("lock_timeout", timeout.c_str(), PGC_USERSET, PGC_S_SESSION); });
            finish("failed", "the sync worker was asked to stop (shutdown or cancel) before the run finished;"
                             " committed streams are intact and the next run resumes from their watermarks");
        } catch (...) {
            put_back();
            throw;
        }
        put_back();
    }

    // The run failed (it was not stopped): recorded once its apply worker has ended. A cancel
    // served while waiting for that worker makes it a stopped run; should the wait fail otherwise,
    // the worker is asked to stop.
    void finish_failed(const std::string& error) {
        try {
            end_apply_worker(false);
        } catch (const PgError& e) {
            if (e.sqlerrcode == ERRCODE_QUERY_CANCELED) {
                finish_stopped();
                throw;
            }
            stop_apply_worker_quietly();
        } catch (...) {
            stop_apply_worker_quietly();
        }
        finish("failed", error);
    }

    void stop_apply_worker_quietly() {
        try {
            end_apply_worker(true);
        } catch (...) {
            worker_.reset();  // (the exit callback still asks it to stop)
        }
    }

    // Before a failed or stopped run is recorded: an apply worker still running is waited for (its
    // streams stand on their own) or, when the run was stopped, asked to stop and then waited for.
    // Recording the run marks its unfinished streams failed, which would otherwise wait on the
    // stream row the apply worker holds while it applies, for as long as that apply waits.
    void end_apply_worker(bool stop) {
        if (!worker_) return;
        if (stop)
            worker_->stop();
        else
            worker_->wait();
        worker_.reset();
    }

    void finish_from_streams() {
        int failed = 0;
        std::string first_error;
        for (const auto& [name, st] : streams_) {
            if (st.first) {
                ++failed;
                if (first_error.empty()) first_error = name + ": " + st.second;
            }
        }
        if (first_error.empty()) first_error = derived_error_;
        const char* status = failed == static_cast<int>(streams_.size()) ? "failed"
                             : failed > 0 || !derived_error_.empty() ? "partial"
                                                                      : "succeeded";
        finish(status, first_error);
    }

    void finish(const std::string& status, const std::string& error) {
        in_transaction([&] {
            // The streams first, then the run: the order an apply takes them in (a stream's row,
            // then the run's counters), so that finishing beside an apply worker cannot deadlock.
            spi_exec("UPDATE squaresync.sync_run_streams SET status = 'failed', error = coalesce(error, $2)"
                     " WHERE run_id = $1::bigint AND status = 'running'",
                     {str(id_), error.empty() ? std::string("not reached") : error});
            auto r = spi_exec(
                "UPDATE squaresync.sync_runs SET status = $2, finished_at = clock_timestamp(),"
                " api_requests = $3::bigint, retries = $4::bigint, rate_limited = $5::bigint, bytes_received = $6::bigint,"
                " error = nullif($7, '') WHERE id = $1::bigint"
                " RETURNING json_build_object('id', id, 'kind', kind, 'status', status, 'inserted', rows_inserted,"
                " 'updated', rows_updated, 'deleted', rows_deleted, 'unchanged', rows_unchanged,"
                " 'api_requests', api_requests, 'seconds', round(extract(epoch FROM duration)::numeric, 3),"
                " 'error', error)::text",
                {str(id_), status, str(static_cast<std::int64_t>(stats_.requests)),
                 str(static_cast<std::int64_t>(stats_.retries)), str(static_cast<std::int64_t>(stats_.rate_limited)),
                 str(static_cast<std::int64_t>(stats_.bytes_received)), error});
            summary_ = r.rows.empty() ? "{}" : r.at(0, 0).value_or("{}");
            spi_exec("SELECT pg_notify('squaresync', $1)", {summary_});
        });
        const std::string line = "squaresync: run " + str(id_) + " (" + kind_name() + ") " + status + ": " + summary_;
        pg_call([&] { ereport(LOG, (errmsg("%s", line.c_str()))); });
    }

    std::int64_t id_;
    RunKind kind_;
    RunArgs args_;
    std::string merchant_, base_url_, token_, summary_, derived_error_;
    std::map<std::string, std::string> watermarks_;
    std::vector<std::string> locations_;
    std::map<std::string, std::pair<bool, std::string>> streams_;
    HttpStats stats_;
    // The fetches of every stream but locations, in walk order; those handed to the apply worker.
    std::vector<std::unique_ptr<StreamFetch>> fetches_;
    std::vector<StreamFetch*> all_, apart_;
    std::optional<ApplyWorker> worker_;
    bool hand_over_tried_ = false;
};

}  // namespace

}  // namespace squaresync::pg

extern "C" PGDLLEXPORT void squaresync_sync_main(Datum main_arg);

void squaresync_sync_main(Datum main_arg) {
    squaresync::pg::RunArgs args;
    memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof args);
#ifdef M_ARENA_MAX
    // One malloc arena for the process: the pages the HTTP client's helper thread parses are freed
    // by this thread, and a second arena would keep its own high-water mark on top of ours.
    mallopt(M_ARENA_MAX, 1);
#endif
#ifdef M_MMAP_THRESHOLD
    // Pages and their parse buffers (MBs each) are mapped and unmapped whole, not carved from the
    // heap: freed, they return to the system instead of raising the heap the apply then runs in.
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
    squaresync::pg::begin_worker(args.database, args.role, squaresync::pg::OnSigterm::Cancel);
    const std::int64_t run_id = DatumGetInt64(main_arg);
    static char what[64];
    snprintf(what, sizeof what, "run %lld", static_cast<long long>(run_id));
    squaresync::pg::run_worker_body(what, [&] {
        squaresync::pg::configure_apply_session();
        squaresync::pg::SyncRun run(run_id, args);
        run.execute();
    });
}
