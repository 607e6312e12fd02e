// streams.cpp: the eight streams as data, and the one page walk that fetches any of them: build the
// request from the watermark, follow cursors to the end (a repeated cursor is an error, an expired
// one restarts the walk), map each page to rows, track the next watermark from Square's own data;
// a listing of entries starts a walk for each batch of objects to fetch by id.
#include "cpp_only.hpp"

#include "streams.hpp"

#include <algorithm>
#include <atomic>
#include <functional>
#include <set>
#include <utility>

#include "copy_text.hpp"
#include "time_util.hpp"

namespace squaresync {

namespace {

// Square's Connect v2 began in 2016; nothing a seller has is older. Passed explicitly where an
// endpoint's begin_time would otherwise default to one year ago (payments, refunds, transactions).
const char* kEarliest = "2009-01-01T00:00:00Z";

struct Route {
    std::string type;                  // the object's "type" ("" = every object)
    std::string table;                 // top-level table
    std::vector<std::string> children; // tables drawn from arrays inside the object
};

}  // namespace

struct StreamFetch::Spec {
    std::string name;
    std::string method;
    std::string path;                 // "{location_id}" is replaced per location
    std::string list_key;             // the response's array of objects
    // Once: one listing; PerLocation: one listing per location, so the page chains of different
    // locations overlap (SearchOrders takes up to 10 location ids: one is within its limit), or per
    // group of `from_watermark_group` locations on a read from a watermark.
    enum Scope { Once, PerLocation } scope;
    bool body_cursor;                 // cursor in the JSON body (POST) or the query (GET)
    bool paged;
    std::vector<Route> routes;
    std::string watermark_field;      // "" when the stream has none
    bool catalog_latest_time = false; // catalog: the first page's latest_time is the watermark
    // Set: an incremental read lists entries first ({"return_entries": true}: each object's id and
    // version, under entries_key) and fetches whole only the objects the sink does not hold at that
    // version, max at a time from path ({ids_key: [...]}, answered under list_key), each batch a
    // walk of its own started by the listing's page (take_spawned), so that they overlap.
    struct Batch {
        std::string path, ids_key, entries_key, entry_id_key;
        std::size_t max = 0;
    } batch;
    // The query string (GET) or body (POST) of the first request; begin is the watermark less the
    // overlap, or nullopt on a full read.
    std::function<std::string(const std::optional<std::string>& begin, const std::vector<std::string>& locations)> build;
    // A PerLocation stream's read from a watermark names up to this many locations a listing: its
    // pages are few (order entries, the counts changed since), so one request serves a group of
    // locations instead of one each. 10: SearchOrders' limit, and a cautious bound where Square
    // states none (BatchRetrieveInventoryCounts' location_ids).
    std::size_t from_watermark_group = 1;
};

namespace {

std::string q(const char* k, const std::string& v) { return std::string(k) + "=" + url_encode(v); }

// v in consecutive slices of at most n (n >= 1): locations per listing, ids per batch.
std::vector<std::vector<std::string>> slices(const std::vector<std::string>& v, std::size_t n) {
    std::vector<std::vector<std::string>> out;
    for (std::size_t i = 0; i < v.size(); i += n)
        out.emplace_back(v.begin() + i, v.begin() + std::min(v.size(), i + n));
    return out;
}

const std::vector<StreamFetch::Spec>& specs() {
    using S = StreamFetch::Spec;
    static const std::vector<S> all = [] {
        std::vector<S> v;
        v.push_back({"locations", "GET", "/v2/locations", "locations", S::Once, false, false,
                     {{"", "locations", {}}}, "", false, {},
                     [](const auto&, const auto&) { return std::string(); }});
        v.push_back({"catalog", "POST", "/v2/catalog/search", "objects", S::Once, true, true,
                     {{"CATEGORY", "catalog_categories", {}},
                      {"ITEM", "catalog_items", {}},
                      {"ITEM_VARIATION", "catalog_variations", {"catalog_vendor_info"}}},
                     "updated_at", true, {},
                     [](const std::optional<std::string>& begin, const auto&) {
                         json b = {{"object_types", {"ITEM", "ITEM_VARIATION", "CATEGORY"}},
                                   {"include_deleted_objects", true},
                                   {"limit", 1000}};
                         if (begin) b["begin_time"] = *begin;
                         return b.dump();
                     }});
        v.push_back({"inventory", "POST", "/v2/inventory/counts/batch-retrieve", "counts", S::PerLocation, true, true,
                     {{"", "catalog_inventory", {}}}, "calculated_at", false, {},
                     [](const std::optional<std::string>& begin, const std::vector<std::string>& locations) {
                         json b = {{"location_ids", locations}, {"limit", 1000}};
                         if (begin) b["updated_after"] = *begin;
                         return b.dump();
                     },
                     10});
        v.push_back({"vendors", "POST", "/v2/vendors/search", "vendors", S::Once, true, true,
                     {{"", "vendors", {}}}, "", false, {},
                     [](const auto&, const auto&) {
                         return json{{"filter", {{"status", {"ACTIVE", "INACTIVE"}}}}}.dump();
                     }});
        v.push_back({"orders", "POST", "/v2/orders/search", "orders", S::PerLocation, true, true,
                     {{"", "orders", {"order_line_items", "order_fulfillments", "order_refunds", "order_returns", "tenders"}}},
                     "updated_at", false,
                     {"/v2/orders/batch-retrieve", "order_ids", "order_entries", "order_id", 100},
                     [](const std::optional<std::string>& begin, const std::vector<std::string>& locations) {
                         json b = {{"location_ids", locations},
                                   {"limit", 1000},
                                   {"query",
                                    {{"filter", {{"date_time_filter", {{"updated_at", {{"start_at", begin.value_or(kEarliest)}}}}}}},
                                     {"sort", {{"sort_field", "UPDATED_AT"}, {"sort_order", "ASC"}}}}}};
                         return b.dump();
                     },
                     10});
        v.push_back({"payments", "GET", "/v2/payments", "payments", S::PerLocation, false, true,
                     {{"", "payments", {}}}, "updated_at", false, {},
                     [](const std::optional<std::string>& begin, const std::vector<std::string>& locations) {
                         std::string s = q("location_id", locations.at(0)) + "&" + q("begin_time", kEarliest) +
                                         "&sort_field=UPDATED_AT&sort_order=ASC&limit=100";
                         if (begin) s += "&" + q("updated_at_begin_time", *begin);
                         return s;
                     }});
        v.push_back({"refunds", "GET", "/v2/refunds", "refunds", S::Once, false, true,
                     {{"", "payment_refunds", {}}}, "updated_at", false, {},
                     [](const std::optional<std::string>& begin, const auto&) {
                         std::string s = q("begin_time", kEarliest) + "&sort_field=UPDATED_AT&sort_order=ASC&limit=100";
                         if (begin) s += "&" + q("updated_at_begin_time", *begin);
                         return s;
                     }});
        v.push_back({"transactions", "GET", "/v2/locations/{location_id}/transactions", "transactions",
                     S::PerLocation, false, true, {{"", "transactions", {}}}, "created_at", false, {},
                     [](const std::optional<std::string>& begin, const auto&) {
                         return q("begin_time", begin.value_or(kEarliest)) + "&sort_order=ASC";
                     }});
        return v;
    }();
    return all;
}

const StreamFetch::Spec& spec(const std::string& name) {
    for (const auto& s : specs())
        if (s.name == name) return s;
    throw std::out_of_range("no stream named " + name);
}

}  // namespace

const std::vector<std::string>& stream_names() {
    static const std::vector<std::string> names = [] {
        std::vector<std::string> n;
        for (const auto& s : specs()) n.push_back(s.name);
        return n;
    }();
    return names;
}

bool stream_reads_whole(const std::string& stream) { return spec(stream).watermark_field.empty(); }

bool stream_lists_entries(const std::string& stream) { return spec(stream).batch.max > 0; }

std::vector<std::string> stream_tables(const std::string& stream) {
    std::vector<std::string> t;
    for (const auto& r : spec(stream).routes) {
        t.push_back(r.table);
        t.insert(t.end(), r.children.begin(), r.children.end());
    }
    return t;
}

// One paginated listing of a stream (for one location, a group of locations, or all), or one
// batch of objects fetched by id that a listing of entries started.
struct StreamFetch::Walk : PageWalk {
    StreamFetch& owner;
    std::vector<std::string> locations;
    std::set<std::string> seen_cursors;
    int page = 0;
    // Entries mode (Spec::batch, an incremental read): the listing's pages name objects; those the
    // sink does not hold are fetched by id, a batch walk for each Spec::Batch::max of them, which
    // run beside the listing's next pages.
    bool entries_mode = false;
    std::vector<std::string> batch_ids;  // set: this walk is one batch by id, a single request
    std::vector<PageWalk*> spawned;      // batch walks started by the last page, for the client
    struct Mappers {
        std::string type;
        TableMapper object;
        std::vector<TableMapper> children;
    };
    std::vector<Mappers> mappers;

    Walk(StreamFetch& o, std::vector<std::string> locs, std::vector<std::string> ids = {}, int listing_page = 0)
        : owner(o), locations(std::move(locs)), page(listing_page), batch_ids(std::move(ids)) {
        for (const auto& r : owner.spec_->routes) {
            Mappers m{r.type, TableMapper(table_def(r.table)), {}};
            for (const auto& c : r.children) m.children.emplace_back(table_def(c));
            mappers.push_back(std::move(m));
        }
    }

    bool is_batch() const { return !batch_ids.empty(); }

    std::string label() const {
        std::string l = owner.name_;
        if (owner.spec_->scope == Spec::PerLocation) {
            l += " at " + locations.at(0);
            if (locations.size() == 2) l += " and 1 more location";
            if (locations.size() > 2) l += " and " + std::to_string(locations.size() - 1) + " more locations";
        }
        l += " page " + std::to_string(page + 1);
        if (is_batch()) l += ", " + std::to_string(batch_ids.size()) + " changed by id";
        return l;
    }

    std::optional<std::string> begin() const { return owner.begin(); }

    HttpRequest request(const std::optional<std::string>& cursor) {
        const Spec& s = *owner.spec_;
        HttpRequest r;
        r.method = s.method;
        r.target = s.path;
        const auto lp = r.target.find("{location_id}");
        if (lp != std::string::npos) r.target.replace(lp, 13, url_encode(locations.at(0)));
        const std::string built = s.build(begin(), locations);
        if (s.method == "POST") {
            if (cursor || entries_mode) {
                json b = json::parse(built);
                if (cursor) b["cursor"] = *cursor;
                if (entries_mode) b["return_entries"] = true;
                r.body = b.dump();
            } else {
                r.body = built;
            }
        } else {
            std::string query = built;
            if (cursor) query += (query.empty() ? "" : "&") + q("cursor", *cursor);
            if (!query.empty()) r.target += "?" + query;
        }
        r.label = label();
        return r;
    }

    // A batch walk's one request: its objects by id (and the location, when it has one).
    HttpRequest batch_request() const {
        const Spec::Batch& b = owner.spec_->batch;
        json body = {{b.ids_key, batch_ids}};
        if (owner.spec_->scope == Spec::PerLocation && locations.size() == 1) body["location_id"] = locations.at(0);
        HttpRequest r;
        r.method = "POST";
        r.target = b.path;
        r.body = body.dump();
        r.label = label();
        return r;
    }

    HttpRequest first() override {
        if (is_batch()) return batch_request();
        page = 0;
        seen_cursors.clear();
        entries_mode = owner.lists_entries();
        return request(std::nullopt);
    }

    std::vector<PageWalk*> take_spawned() override { return std::exchange(spawned, {}); }

    // What prepare() made of a page, for on_page(): rows, the cursor, the greatest watermark seen,
    // or Square's error.
    struct Prepared {
        std::vector<RowBatch> batches;
        std::optional<std::string> cursor;
        LatestTime watermark;
        std::string error, error_code;
        bool entries = false;                          // a page of entries (id and version)
        std::vector<std::string> entry_ids;
        std::vector<std::optional<std::int64_t>> entry_versions;
    };
    std::optional<Prepared> prepared;

    // Parses and maps the page (on the HTTP client's helper thread): only this walk's state, and
    // the thread's own parser (its buffers are reused from page to page).
    void prepare(HttpResponse& response) override {
        prepared.reset();
        const Spec& s = *owner.spec_;
        thread_local simdjson::dom::parser parser;
        simdjson::dom::object body;
        const auto parse_error = parser.parse(response.body).get(body);
        if (parse_error == simdjson::INCORRECT_TYPE)
            throw RetryableResponseError("Square sent " + label() + " as JSON that is not an object");
        if (parse_error)
            throw RetryableResponseError("Square sent malformed or truncated JSON for " + label() + " (" +
                                         simdjson::error_message(parse_error) + ")");
        response.body.clear();
        response.body.shrink_to_fit();
        Prepared p;
        simdjson::dom::array errors;
        if (body.at_key("errors").get(errors) == simdjson::SUCCESS && errors.size() > 0) {
            p.error = "Square answered " + label() + " with an error: " +
                      square_error_summary(simdjson::minify(body), &p.error_code);
            prepared = std::move(p);
            return;
        }

        if (entries_mode) {
            prepare_entries(body, p);
            prepared = std::move(p);
            return;
        }

        for (const auto& m : mappers) {
            p.batches.emplace_back(m.object.table());
            for (const auto& c : m.children) p.batches.emplace_back(c.table());
        }
        auto string_at = [](simdjson::dom::object o, const std::string& key) -> std::optional<std::string> {
            std::string_view v;
            if (key.empty() || o.at_key(key).get(v) != simdjson::SUCCESS) return std::nullopt;
            return std::string(v);
        };
        try {
            JsonElement list;
            if (body.at_key(s.list_key).get(list) == simdjson::SUCCESS && !list.is_null()) {
                simdjson::dom::array objects;
                if (list.get(objects) != simdjson::SUCCESS)
                    throw MappingError("\"" + s.list_key + "\" is not an array");
                for (JsonElement el : objects) {
                    simdjson::dom::object obj;
                    if (el.get(obj) != simdjson::SUCCESS)
                        throw MappingError("an element of \"" + s.list_key + "\" is not an object");
                    const auto type = string_at(obj, "type");
                    std::size_t b = 0;
                    for (const auto& m : mappers) {
                        if (m.type.empty() || type == m.type) {
                            const std::size_t parent = p.batches[b].rows;
                            m.object.map_object(el, p.batches[b]);
                            for (std::size_t c = 0; c < m.children.size(); ++c) {
                                RowBatch& child = p.batches[b + 1 + c];
                                m.children[c].map_children(el, child);
                                child.parent_row.resize(child.rows, parent);
                            }
                        }
                        b += 1 + m.children.size();
                    }
                    if (auto w = string_at(obj, s.watermark_field)) p.watermark.note(*w);
                }
            }
        } catch (const MappingError& e) {
            throw RetryableResponseError("Square sent " + label() + " in an unexpected shape: " + e.what());
        }
        if (s.catalog_latest_time && page == 0)
            if (auto lt = string_at(body, "latest_time")) p.watermark.note(*lt);
        if (s.paged)
            if (auto c = string_at(body, "cursor"); c && !c->empty()) p.cursor = *c;
        if (owner.options_.stage_merchant) {
            // Pages are numbered in the order they are prepared: a walk's pages in fetch order,
            // so the apply's "latest page" of a key is the one fetched last.
            static std::atomic<std::int64_t> page_number{0};
            const std::int64_t batch_no = ++page_number;
            for (auto& b : p.batches) format_for_staging(b, *owner.options_.stage_merchant, batch_no);
        }
        prepared = std::move(p);
    }

    // A page of entries: each listed object's id and version (an object without a version is
    // always fetched), and the listing's cursor.
    void prepare_entries(simdjson::dom::object body, Prepared& p) const {
        const Spec::Batch& b = owner.spec_->batch;
        try {
            JsonElement list;
            if (body.at_key(b.entries_key).get(list) == simdjson::SUCCESS && !list.is_null()) {
                simdjson::dom::array entries;
                if (list.get(entries) != simdjson::SUCCESS) throw MappingError("\"" + b.entries_key + "\" is not an array");
                for (JsonElement el : entries) {
                    std::string_view id;
                    if (el.at_key(b.entry_id_key).get(id) != simdjson::SUCCESS)
                        throw MappingError("an element of \"" + b.entries_key + "\" has no " + b.entry_id_key);
                    std::int64_t version = 0;
                    p.entry_ids.emplace_back(id);
                    p.entry_versions.push_back(el.at_key("version").get(version) == simdjson::SUCCESS
                                                   ? std::optional<std::int64_t>(version) : std::nullopt);
                }
            }
        } catch (const MappingError& e) {
            throw RetryableResponseError("Square sent " + label() + " in an unexpected shape: " + e.what());
        }
        std::string_view c;
        if (body.at_key("cursor").get(c) == simdjson::SUCCESS && !c.empty()) p.cursor = std::string(c);
        p.entries = true;
    }

    // Stages the prepared page (on the caller's thread) and returns the next page's request; a
    // walk without one has ended.
    std::optional<HttpRequest> on_page(HttpResponse&& response) override {
        auto next = stage_page(std::move(response));
        if (!next) owner.walk_ended();
        return next;
    }

    std::optional<HttpRequest> stage_page(HttpResponse&&) {
        Prepared p = std::move(prepared.value());
        prepared.reset();
        if (owner.failed()) return std::nullopt;
        if (!p.error.empty()) {
            owner.fail(p.error, p.error_code);
            return std::nullopt;
        }
        owner.max_seen_.note(p.watermark);

        ++owner.pages_;
        owner.sink_.progress(owner.name_ + " page " + std::to_string(owner.pages_));
        try {
            if (p.entries) {
                for (auto& ids : slices(owner.sink_.not_held(owner.name_, p.entry_ids, p.entry_versions),
                                        owner.spec_->batch.max))
                    spawned.push_back(owner.add_walk(std::make_unique<Walk>(owner, locations, std::move(ids), page)));
            } else {
                owner.rows_ += owner.sink_.stage(owner.name_, p.batches);
            }
        } catch (const RunAbort&) {
            throw;
        } catch (const std::exception& e) {
            const auto* stop = dynamic_cast<const HttpError*>(&e);
            if (stop && stop->kind == FailureKind::Aborted) throw;  // the run was asked to stop
            owner.fail("could not stage " + label() + ": " + e.what(), "STAGING_FAILED");
            return std::nullopt;
        }
        if (is_batch() || !p.cursor) return std::nullopt;
        if (!seen_cursors.insert(*p.cursor).second) {
            owner.fail("Square returned the same page cursor twice for " + label() +
                           "; stopped instead of looping (the stream was not applied; the next run retries it)",
                       "REPEATED_CURSOR");
            return std::nullopt;
        }
        ++page;
        return request(*p.cursor);
    }

    void on_failure(const HttpError& error) override {
        std::string code;
        const std::string summary = square_error_summary(error.body, &code);
        if (code == "INVALID_CURSOR" && page > 0 && !is_batch()) {
            owner.restarts_.push_back(this);
            return;
        }
        if (code.empty()) {
            // Square's own codes for what the status says, when the body has no error envelope.
            switch (error.kind) {
                case FailureKind::Unauthorized: code = "UNAUTHORIZED"; break;
                case FailureKind::Forbidden: code = "FORBIDDEN"; break;
                case FailureKind::Gone: code = "GONE"; break;
                default: code = failure_kind_name(error.kind);
            }
        }
        owner.fail(std::string(error.what()), code);
        owner.walk_ended();
    }
};

StreamFetch::StreamFetch(const std::string& stream, StreamOptions options, RowSink& sink)
    : name_(stream), options_(std::move(options)), sink_(sink), spec_(&spec(stream)) {}

StreamFetch::~StreamFetch() = default;

std::vector<PageWalk*> StreamFetch::walks() {
    walks_.clear();
    walks_ended_ = 0;
    const auto& locs = options_.location_ids;
    switch (spec_->scope) {
        case Spec::Once: walks_.push_back(std::make_unique<Walk>(*this, locs)); break;
        case Spec::PerLocation: {
            // One walk per location, so that the page chains of different locations overlap; a read
            // from a watermark names several (Spec::from_watermark_group).
            const std::size_t per = begin().has_value() ? std::max<std::size_t>(spec_->from_watermark_group, 1) : 1;
            for (auto& group : slices(locs, per)) walks_.push_back(std::make_unique<Walk>(*this, std::move(group)));
            break;
        }
    }
    std::vector<PageWalk*> out;
    for (auto& w : walks_) out.push_back(w.get());
    return out;
}

std::optional<std::string> StreamFetch::begin() const {
    if (!options_.full && options_.watermark)
        if (auto wm = parse_rfc3339(*options_.watermark)) return format_rfc3339(*wm - options_.overlap_us);
    return std::nullopt;
}

bool StreamFetch::lists_entries() const {
    return options_.entries_first && spec_->batch.max > 0 && begin().has_value();
}

PageWalk* StreamFetch::add_walk(std::unique_ptr<Walk> w) {
    walks_.push_back(std::move(w));
    return walks_.back().get();
}

void StreamFetch::walk_ended() {
    if (++walks_ended_ == walks_.size()) sink_.fetched(name_);
}

std::vector<PageWalk*> StreamFetch::take_restarts() {
    std::vector<PageWalk*> r;
    r.swap(restarts_);
    return r;
}

void StreamFetch::fail(const std::string& message, const std::string& code) {
    if (error_.empty()) {
        error_ = message;
        error_code_ = code;
    }
}

void LatestTime::note(const std::string& ts) {
    const auto t = parse_rfc3339(ts);
    if (t && (!us || *t > *us)) {
        us = t;
        text = ts;
    }
}

void LatestTime::note(const LatestTime& other) {
    if (other.us && (!us || *other.us > *us)) *this = other;
}

std::optional<std::string> StreamFetch::next_watermark() const {
    if (spec_->watermark_field.empty()) return std::nullopt;
    if (!max_seen_.us) return options_.watermark;
    if (options_.watermark) {
        auto old = parse_rfc3339(*options_.watermark);
        if (old && *old > *max_seen_.us) return options_.watermark;
    }
    return max_seen_.text;
}

std::string square_error_summary(const std::string& body, std::string* code) {
    json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return "";
    auto e = j.find("errors");
    if (e == j.end() || !e->is_array() || e->empty() || !(*e)[0].is_object()) return "";
    const json& first = (*e)[0];
    auto code_it = first.find("code");
    const std::string c = code_it != first.end() && code_it->is_string() ? code_it->get<std::string>() : "";
    std::string detail = first.contains("detail") && first["detail"].is_string() ? first["detail"].get<std::string>() : "";
    if (code) *code = c;
    return detail.empty() ? c : c + ": " + detail;
}

std::string url_encode(const std::string& s) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    for (unsigned char c : s) {
        if (is_ascii_alnum(static_cast<char>(c)) || c == '-' || c == '_' || c == '.' || c == '~') {
            out += static_cast<char>(c);
        } else {
            out += '%';
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    return out;
}

}  // namespace squaresync
