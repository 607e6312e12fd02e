// streams.hpp: the fetch side of a sync. A stream is one unit of Square data applied atomically
// (locations, catalog, inventory, vendors, orders, payments, refunds, transactions); each is
// described once as data (endpoint, paging, scope, watermark field, tables) and fetched by the same
// page walk, which maps every page to rows and hands them to a RowSink (the staging area).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "http_client.hpp"
#include "mapping.hpp"

namespace squaresync {

struct StreamOptions {
    bool full = false;                      // foundation: no watermark, read everything
    std::optional<std::string> watermark;   // the committed watermark (RFC 3339)
    std::vector<std::string> location_ids;  // every location of the merchant
    std::int64_t overlap_us = 0;            // re-read this much before the watermark
    // A read from a watermark lists entries first where the stream can (orders: id and version),
    // then fetches by id only the objects the sink does not hold at that version (RowSink::not_held).
    bool entries_first = false;
    // Set: each page's rows are formatted as COPY text for this merchant's staging tables while
    // they are prepared (RowBatch::copy_text), and their columns freed.
    std::optional<std::string> stage_merchant;
};

// Thrown by a RowSink when the whole run must stop (the extension was dropped): it is not caught
// by the walk, so it stops every transfer and leaves HttpClient::run().
struct RunAbort : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Receives each fetched page, mapped to rows, to stage it; returns the rows it staged (it may skip
// objects it already has, unchanged.hpp). May throw: the stream then fails (RunAbort, or
// HttpError{Aborted} when the run was asked to stop meanwhile: the run stops).
class RowSink {
public:
    virtual ~RowSink() = default;
    virtual std::int64_t stage(const std::string& stream, std::vector<RowBatch>& batches) = 0;
    virtual void progress(const std::string& label) = 0;
    // Of the objects a listing names (ids, and the versions Square lists them at), the ids of those
    // the sink does not hold at that version: the ones worth fetching whole (an object listed
    // without a version always is). By default, every one. May throw, as stage() may.
    virtual std::vector<std::string> not_held(const std::string& stream, const std::vector<std::string>& ids,
                                              const std::vector<std::optional<std::int64_t>>& versions) {
        (void)stream;
        (void)versions;
        return ids;
    }
    // Called once every walk of the stream has ended (fetched, or failed), on the thread that
    // runs the walks: its rows are all staged, or it failed (StreamFetch::failed()).
    virtual void fetched(const std::string& stream) { (void)stream; }
};

// Stream names in the order their data is applied (locations first: the others need their ids).
const std::vector<std::string>& stream_names();
// The tables (square.<name>) a stream's pages fill, parents before children.
std::vector<std::string> stream_tables(const std::string& stream);
// A stream without a watermark (locations, vendors) is read whole by every run, and its apply
// takes what is missing from the read as deleted: none of its objects may be skipped.
bool stream_reads_whole(const std::string& stream);
// A stream whose reads from a watermark can list entries first (StreamOptions::entries_first): the
// objects it then stages are only those the sink said it does not hold.
bool stream_lists_entries(const std::string& stream);

// The latest of some RFC 3339 times, kept as Square wrote it (instants are compared, not text;
// times that do not parse are ignored).
struct LatestTime {
    std::optional<std::int64_t> us;
    std::string text;
    void note(const std::string& ts);
    void note(const LatestTime& other);
};

class StreamFetch {
public:
    StreamFetch(const std::string& stream, StreamOptions options, RowSink& sink);
    ~StreamFetch();
    StreamFetch(const StreamFetch&) = delete;
    StreamFetch& operator=(const StreamFetch&) = delete;

    const std::string& name() const { return name_; }
    // The page walks to run (one, or one per location, or per group of locations on a read from a
    // watermark: Spec::from_watermark_group). Owned here, as are the batch walks they start.
    std::vector<PageWalk*> walks();
    // Walks whose cursor expired (INVALID_CURSOR); each restarts from the watermark when run again.
    std::vector<PageWalk*> take_restarts();

    bool failed() const { return !error_.empty(); }
    const std::string& error() const { return error_; }
    const std::string& error_code() const { return error_code_; }
    void fail(const std::string& message, const std::string& code);

    // The watermark to commit with this stream's rows: the greatest one seen, never older than the
    // committed one. nullopt when the stream has no watermark (locations, vendors).
    std::optional<std::string> next_watermark() const;
    int pages() const { return pages_; }
    std::int64_t rows() const { return rows_; }  // rows staged (what the sink took)
    // Every walk (batches started by a listing included) has ended: the stream is fetched (or
    // failed), and the sink was told.
    bool done() const { return !walks_.empty() && walks_ended_ == walks_.size(); }

    struct Walk;
    struct Spec;

private:
    friend struct Walk;

    std::string name_;
    StreamOptions options_;
    RowSink& sink_;
    const Spec* spec_;
    std::vector<std::unique_ptr<Walk>> walks_;
    std::vector<PageWalk*> restarts_;
    std::string error_, error_code_;
    LatestTime max_seen_;
    int pages_ = 0;
    std::int64_t rows_ = 0;
    std::size_t walks_ended_ = 0;
    void walk_ended();
    PageWalk* add_walk(std::unique_ptr<Walk> w);  // a batch walk a listing started
    // The watermark less the overlap; nullopt on a full read (or an unusable watermark).
    std::optional<std::string> begin() const;
    // This read lists entries first (StreamOptions::entries_first, a stream that can, a watermark).
    bool lists_entries() const;
};

// Square's error envelope {"errors":[{"category","code","detail","field"}]}: "CODE: detail", or "".
std::string square_error_summary(const std::string& body, std::string* code = nullptr);

std::string url_encode(const std::string& s);

}  // namespace squaresync
