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
// objects it already has, unchanged.hpp). May throw: the stream then fails (RunAbort: the run stops).
class RowSink {
public:
    virtual ~RowSink() = default;
    virtual std::int64_t stage(const std::string& stream, std::vector<RowBatch>& batches) = 0;
    virtual void progress(const std::string& label) = 0;
};

// Stream names in the order their data is applied (locations first: the others need their ids).
const std::vector<std::string>& stream_names();
// The tables (square.<name>) a stream's pages fill, parents before children.
std::vector<std::string> stream_tables(const std::string& stream);
// A stream without a watermark (locations, vendors) is read whole by every run, and its apply
// takes what is missing from the read as deleted: none of its objects may be skipped.
bool stream_reads_whole(const std::string& stream);

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
    // The page walks to run (one, or one per location or chunk of 10 locations). Owned here.
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
};

// Square's error envelope {"errors":[{"category","code","detail","field"}]}: "CODE: detail", or "".
std::string square_error_summary(const std::string& body, std::string* code = nullptr);

std::string url_encode(const std::string& s);

}  // namespace squaresync
