# Fake Square /v2/ endpoints: request validation, Square's error envelope, filtering, sorting and
# cursor paging over the Dataset.  Pure functions of (dataset, request); no HTTP or sockets here.
import base64
import bisect
import hashlib
import json
import re

from dataset import YEAR_MS, ts, dumps

SQUARE_VERSION_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
RFC3339_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")

CATALOG_TYPES = ["ITEM", "IMAGE", "CATEGORY", "ITEM_VARIATION", "TAX", "DISCOUNT", "MODIFIER_LIST", "MODIFIER",
                 "PRICING_RULE", "PRODUCT_SET", "TIME_PERIOD", "MEASUREMENT_UNIT", "SUBSCRIPTION_PLAN_VARIATION",
                 "ITEM_OPTION", "ITEM_OPTION_VAL", "CUSTOM_ATTRIBUTE_DEFINITION", "QUICK_AMOUNTS_SETTINGS",
                 "SUBSCRIPTION_PLAN", "AVAILABILITY_PERIOD"]
# Not in the spec's enum but accepted by real Square (vendor infos as top-level objects).
VENDOR_INFO_TYPE = "ITEM_VARIATION_VENDOR_INFO"
CATALOG_DEFAULT_TYPES = {"ITEM", "CATEGORY", "TAX", "DISCOUNT", "MODIFIER_LIST", "PRICING_RULE", "PRODUCT_SET",
                         "TIME_PERIOD", "MEASUREMENT_UNIT", "SUBSCRIPTION_PLAN", "ITEM_OPTION",
                         "CUSTOM_ATTRIBUTE_DEFINITION", "QUICK_AMOUNTS_SETTINGS"}
INVENTORY_STATES = ["CUSTOM", "IN_STOCK", "SOLD", "RETURNED_BY_CUSTOMER", "RESERVED_FOR_SALE", "SOLD_ONLINE",
                    "ORDERED_FROM_VENDOR", "RECEIVED_FROM_VENDOR", "IN_TRANSIT_TO", "NONE", "WASTE",
                    "UNLINKED_RETURN", "COMPOSED", "DECOMPOSED", "SUPPORTED_BY_NEWER_VERSION", "IN_TRANSIT"]
ORDER_STATES = ["OPEN", "COMPLETED", "CANCELED", "DRAFT"]
ORDER_SORT_FIELDS = ["CREATED_AT", "UPDATED_AT", "CLOSED_AT"]
SORT_ORDERS = ["DESC", "ASC"]
VENDOR_STATUSES = ["ACTIVE", "INACTIVE"]
VENDOR_SORT_FIELDS = ["NAME", "CREATED_AT"]
PAYMENT_SORT_FIELDS = ["CREATED_AT", "OFFLINE_CREATED_AT", "UPDATED_AT"]
REFUND_SORT_FIELDS = ["CREATED_AT", "UPDATED_AT"]

CATALOG_SEARCH_DEFAULT_LIMIT = 100
CATALOG_LIST_PAGE = 100
INVENTORY_DEFAULT_LIMIT = 1000
VENDOR_PAGE = 10
ORDERS_DEFAULT_LIMIT = 500
PAYMENTS_MAX = 100
TRANSACTIONS_PAGE = 50
BATCH_CATALOG_MAX = 1000
BATCH_ORDERS_MAX = 100


class ApiError(Exception):
    def __init__(self, status, category, code, detail, field=None, headers=None):
        Exception.__init__(self, detail)
        self.status = status
        self.errors = [{"category": category, "code": code, "detail": detail}]
        if field:
            self.errors[0]["field"] = field
        self.headers = headers or {}

    def body(self):
        return dumps({"errors": self.errors})


def bad(code, detail, field=None, status=400):
    return ApiError(status, "INVALID_REQUEST_ERROR", code, detail, field)


def error_body(status, category, code, detail, field=None):
    return ApiError(status, category, code, detail, field).body()


# --------------------------------------------------------------------------- value parsing
def parse_time_us(value, field):
    if not isinstance(value, str):
        raise bad("EXPECTED_STRING", "Expected a string value for `%s`." % field, field)
    m = RFC3339_RE.match(value)
    if not m:
        raise bad("INVALID_TIME", "Invalid RFC 3339 timestamp `%s` for `%s`." % (value, field), field)
    import calendar
    y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 61):
        raise bad("INVALID_TIME", "Invalid RFC 3339 timestamp `%s` for `%s`." % (value, field), field)
    frac = m.group(7)
    us = int((frac[1:] + "000000")[:6]) if frac else 0
    tz = m.group(8)
    off = 0
    if tz not in ("Z", "z"):
        sign = 1 if tz[0] == "+" else -1
        off = sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)
    secs = calendar.timegm((y, mo, d, h, mi, min(s, 59), 0, 0, 0)) - off
    return secs * 1000000 + us


def want_type(value, kind, field):
    ok = {"array": isinstance(value, list), "object": isinstance(value, dict),
          "string": isinstance(value, str), "boolean": isinstance(value, bool),
          "integer": isinstance(value, int) and not isinstance(value, bool)}[kind]
    if not ok:
        raise bad("EXPECTED_" + {"array": "ARRAY", "object": "OBJECT", "string": "STRING", "boolean": "BOOLEAN",
                                 "integer": "INTEGER"}[kind],
                  "Expected %s value for `%s`." % (kind, field), field)
    return value


def opt(body, key, kind, field=None, default=None):
    if key not in body or body[key] is None:
        return default
    return want_type(body[key], kind, field or key)


def enum_list(values, allowed, field):
    want_type(values, "array", field)
    for i, v in enumerate(values):
        if v not in allowed:
            raise bad("INVALID_ENUM_VALUE", "`%s` is not a valid enum value for `%s`." % (v, field),
                      "%s[%d]" % (field, i))
    return values


def enum_one(value, allowed, field):
    if value not in allowed:
        raise bad("INVALID_ENUM_VALUE", "`%s` is not a valid enum value for `%s`." % (value, field), field)
    return value


def q1(query, key):
    v = query.get(key)
    return v[-1] if v else None


def q_int(query, key):
    v = q1(query, key)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise bad("EXPECTED_INTEGER", "Expected an integer value for `%s`." % key, key)


# --------------------------------------------------------------------------- cursors
def canon_hash(endpoint, params):
    s = json.dumps([endpoint, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(s.encode()).hexdigest()[:16]


def make_cursor(endpoint, qhash, last, t_ms, extra=None):
    d = {"e": endpoint, "h": qhash, "k": list(last), "t": t_ms}
    if extra:
        d["x"] = extra
    return base64.urlsafe_b64encode(json.dumps(d, separators=(",", ":")).encode()).decode().rstrip("=")


def read_cursor(endpoint, qhash, cursor):
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        d = json.loads(raw)
        assert d["e"] == endpoint and isinstance(d["k"], list) and isinstance(d["t"], int)
    except Exception:
        raise bad("INVALID_CURSOR", "The pagination cursor included in the request is invalid.", "cursor")
    if d["h"] != qhash:
        raise bad("INVALID_CURSOR", "The cursor was issued for a different query; use the original query "
                  "when paging.", "cursor")
    return d


class Ctx:
    """Per-request context: the request's cursor and fault flags."""

    def __init__(self):
        self.cursor_in = None
        self.repeat_cursor = False


def page(ds, ctx, endpoint, qparams, cursor, limit, desc, build, t_default):
    """Generic keyset paging.  build(t_ms) -> ascending list of (sort..., id) keys.
    Returns (selected keys, next cursor or None, t_ms)."""
    qhash = canon_hash(endpoint, qparams)
    last = None
    if cursor is not None:
        d = read_cursor(endpoint, qhash, cursor)
        t_ms = d["t"]
        last = tuple(d["k"])
    else:
        t_ms = t_default
    ck = (endpoint, qhash, t_ms, ds.generation)
    keys = ds._query_cache.get(ck)
    if keys is None:
        keys = build(t_ms)
        keys.sort()
        if len(ds._query_cache) > 64:
            ds._query_cache.clear()
        ds._query_cache[ck] = keys
    if not desc:
        i = bisect.bisect_right(keys, last) if last is not None else 0
        sel = keys[i:i + limit]
        more = i + limit < len(keys)
    else:
        j = bisect.bisect_left(keys, last) if last is not None else len(keys)
        i = max(0, j - limit)
        sel = keys[i:j][::-1]
        more = i > 0
    nxt = make_cursor(endpoint, qhash, sel[-1], t_ms) if (more and sel) else None
    if ctx.repeat_cursor:
        nxt = ctx.cursor_in or nxt
    return sel, nxt, t_ms


def envelope(listkey, chunks, extras=None, always=False):
    parts = []
    if chunks or always:
        parts.append(b'"' + listkey.encode() + b'":[' + b",".join(chunks) + b"]")
    for k, v in (extras or {}).items():
        if v is not None:
            parts.append(b'"' + k.encode() + b'":' + dumps(v))
    return b"{" + b",".join(parts) + b"}"


# --------------------------------------------------------------------------- endpoints
def merchants_list(ds, ctx, q, body):
    return envelope("merchant", [ds.obj_bytes("merchant", 0, ds.merchant)])


def merchants_get(ds, ctx, q, body, merchant_id):
    if merchant_id not in ("me", ds.merchant_id):
        raise bad("NOT_FOUND", "Merchant with ID `%s` not found." % merchant_id, status=404)
    return b'{"merchant":' + ds.obj_bytes("merchant", 0, ds.merchant) + b"}"


def locations_list(ds, ctx, q, body):
    locs = sorted(ds.locations, key=lambda l: (l["name"], l["id"]))
    return envelope("locations", [ds.obj_bytes("location", l["id"], l) for l in locs], always=True)


def catalog_info(ds, ctx, q, body):
    return dumps({"limits": {"batch_upsert_max_objects_per_batch": 1000, "batch_upsert_max_total_objects": 10000,
                             "batch_retrieve_max_object_ids": BATCH_CATALOG_MAX, "search_max_page_limit": 1000,
                             "batch_delete_max_object_ids": 200, "update_item_taxes_max_item_ids": 1000,
                             "update_item_taxes_max_taxes_to_enable": 1000,
                             "update_item_taxes_max_taxes_to_disable": 1000,
                             "update_item_modifier_lists_max_item_ids": 1000,
                             "update_item_modifier_lists_max_modifier_lists_to_enable": 1000,
                             "update_item_modifier_lists_max_modifier_lists_to_disable": 1000}})


def _catalog_candidates(ds, types, include_deleted):
    out = []
    for oid, obj in ds.catalog.items():
        if obj["type"] in types and (include_deleted or not obj["is_deleted"]):
            out.append((ds.cat_ms[oid], oid))
    if VENDOR_INFO_TYPE in types:
        for iid, (vid, obj) in ds.vinfo.items():
            deleted = obj["is_deleted"] or ds.catalog[vid]["is_deleted"]
            if include_deleted or not deleted:
                out.append((ds.vinfo_ms[iid], iid))
    return out


def _related(ds, objs_ids):
    seen = set(objs_ids)
    rel = []
    for oid in objs_ids:
        obj = ds.catalog.get(oid)
        if obj is None:
            continue
        refs = []
        if obj["type"] == "ITEM":
            refs = [c["id"] for c in obj["item_data"].get("categories", ())]
        elif obj["type"] == "ITEM_VARIATION":
            refs = [obj["item_variation_data"]["item_id"]]
        for r in refs:
            if r not in seen and r in ds.catalog:
                seen.add(r)
                rel.append(ds.catalog_bytes(r))
    return rel


def catalog_search(ds, ctx, q, body):
    types = opt(body, "object_types", "array")
    if types is not None:
        enum_list(types, CATALOG_TYPES + [VENDOR_INFO_TYPE], "object_types")
        types = set(types)
    else:
        types = CATALOG_DEFAULT_TYPES
    incl_del = opt(body, "include_deleted_objects", "boolean", default=False)
    incl_rel = opt(body, "include_related_objects", "boolean", default=False)
    if incl_del and opt(body, "include_category_path_to_root", "boolean", default=False):
        raise bad("CONFLICTING_PARAMETERS", "`include_deleted_objects` cannot be true together with "
                  "`include_category_path_to_root`.", "include_deleted_objects")
    begin = body.get("begin_time")
    begin_us = parse_time_us(begin, "begin_time") if begin is not None else None
    limit = opt(body, "limit", "integer")
    if limit is None or limit <= 0 or limit > 1000:     # advisory: out-of-range values are ignored
        limit = CATALOG_SEARCH_DEFAULT_LIMIT
    if body.get("query") is not None:
        want_type(body["query"], "object", "query")
    cursor = opt(body, "cursor", "string")
    params = {k: v for k, v in body.items() if k not in ("cursor", "limit")}

    def build(t_ms):
        c = _catalog_candidates(ds, types, incl_del)
        if begin_us is not None:
            c = [k for k in c if k[0] * 1000 > begin_us]      # exclusive
        return c

    latest = ds.latest_catalog_ms()
    t_default = latest
    sel, nxt, t_ms = page(ds, ctx, "catalog_search", params, cursor, limit, False, build, t_default)
    chunks = [ds.catalog_bytes(k[1]) for k in sel]
    extras = {}
    if incl_rel and sel:
        rel = _related(ds, [k[1] for k in sel])
        if rel:
            return envelope("objects", chunks)[:-1] + b',"related_objects":[' + b",".join(rel) + b"]" + \
                (b',"cursor":' + dumps(nxt) if nxt else b"") + b',"latest_time":' + dumps(ts(t_ms)) + b"}"
    extras["cursor"] = nxt
    extras["latest_time"] = ts(t_ms)    # the catalog's last update as of the first page
    return envelope("objects", chunks, extras)


def catalog_list(ds, ctx, q, body):
    types_s = q1(q, "types")
    if types_s:
        types = set()
        for t in types_s.split(","):
            t = t.strip().upper()
            if t not in CATALOG_TYPES and t != VENDOR_INFO_TYPE:
                raise bad("INVALID_ENUM_VALUE", "`%s` is not a valid enum value for `types`." % t, "types")
            types.add(t)
    else:
        types = CATALOG_DEFAULT_TYPES
    q_int(q, "catalog_version")     # historical versions are not kept: the current catalog is returned
    cursor = q1(q, "cursor")

    def build(t_ms):
        # never deleted objects; stable order by id
        return [(k[1],) for k in _catalog_candidates(ds, types, False)]

    sel, nxt, _ = page(ds, ctx, "catalog_list", {"types": sorted(types)}, cursor, CATALOG_LIST_PAGE, False,
                       build, 0)
    return envelope("objects", [ds.catalog_bytes(k[0]) for k in sel], {"cursor": nxt})


def catalog_batch_retrieve(ds, ctx, q, body):
    ids = body.get("object_ids")
    if ids is None:
        raise bad("MISSING_REQUIRED_PARAMETER", "Field must be set", "object_ids")
    want_type(ids, "array", "object_ids")
    if not ids:
        raise bad("ARRAY_EMPTY", "`object_ids` must contain at least one id.", "object_ids")
    if len(ids) > BATCH_CATALOG_MAX:
        raise bad("ARRAY_LENGTH_TOO_LONG", "At most %d object ids are allowed." % BATCH_CATALOG_MAX, "object_ids")
    incl_del = opt(body, "include_deleted_objects", "boolean", default=False)
    incl_rel = opt(body, "include_related_objects", "boolean", default=False)
    found = []
    for oid in dict.fromkeys(ids):
        if not isinstance(oid, str):
            raise bad("EXPECTED_STRING", "Expected string values in `object_ids`.", "object_ids")
        if oid in ds.catalog:
            deleted = ds.catalog[oid]["is_deleted"]
        elif oid in ds.vinfo:
            vid, obj = ds.vinfo[oid]
            deleted = obj["is_deleted"] or ds.catalog[vid]["is_deleted"]
        else:
            continue
        if deleted and not incl_del:
            continue
        found.append(oid)
    chunks = [ds.catalog_bytes(i) for i in found]
    if incl_rel:
        rel = _related(ds, found)
        if rel:
            return envelope("objects", chunks)[:-1] + (b"," if chunks else b"") + \
                b'"related_objects":[' + b",".join(rel) + b"]}"
    return envelope("objects", chunks)


def inventory_counts(ds, ctx, q, body):
    obj_ids = opt(body, "catalog_object_ids", "array")
    loc_ids = opt(body, "location_ids", "array")
    states = opt(body, "states", "array")
    if states is not None:
        enum_list(states, INVENTORY_STATES, "states")
        states = set(states) - {"NONE", "SOLD", "UNLINKED_RETURN"}
    after = body.get("updated_after")
    after_us = parse_time_us(after, "updated_after") if after is not None else None
    limit = opt(body, "limit", "integer")
    if limit is not None:
        if limit < 1:
            raise bad("VALUE_TOO_LOW", "`limit` must be at least 1.", "limit")
        if limit > 1000:
            raise bad("VALUE_TOO_HIGH", "`limit` must be at most 1000.", "limit")
    else:
        limit = INVENTORY_DEFAULT_LIMIT
    cursor = opt(body, "cursor", "string")
    params = {k: v for k, v in body.items() if k not in ("cursor", "limit")}
    obj_set = set(obj_ids) if obj_ids is not None else None
    loc_set = set(loc_ids) if loc_ids is not None else None

    def build(t_ms):
        out = []
        for key, ms in ds.count_ms.items():
            if obj_set is not None and key[0] not in obj_set:
                continue
            if loc_set is not None and key[1] not in loc_set:
                continue
            if states is not None and key[2] not in states:
                continue
            if after_us is not None and ms * 1000 <= after_us:   # strictly after
                continue
            out.append((ms, key[0], key[1], key[2]))
        return out

    sel, nxt, _ = page(ds, ctx, "inventory_counts", params, cursor, limit, True, build, 0)
    chunks = [ds.obj_bytes("count", k[1:], ds.counts[k[1:]]) for k in sel]
    return envelope("counts", chunks, {"cursor": nxt})


def vendors_search(ds, ctx, q, body):
    flt = opt(body, "filter", "object", default={})
    names = opt(flt, "name", "array", "filter.name")
    statuses = opt(flt, "status", "array", "filter.status")
    if statuses is not None:
        enum_list(statuses, VENDOR_STATUSES, "filter.status")
    else:
        statuses = ["ACTIVE"]   # decision: without a status filter only ACTIVE vendors are returned
    sort = opt(body, "sort", "object", default={})
    field = sort.get("field") or "CREATED_AT"   # null is the default (nullable in the spec)
    enum_one(field, VENDOR_SORT_FIELDS, "sort.field")
    order = sort.get("order") or "ASC"
    enum_one(order, SORT_ORDERS, "sort.order")
    cursor = opt(body, "cursor", "string")
    params = {k: v for k, v in body.items() if k != "cursor"}
    name_set = set(n.lower() for n in names) if names is not None else None

    def build(t_ms):
        out = []
        for vid, v in ds.vendors.items():
            if v["status"] not in statuses:
                continue
            if name_set is not None and v["name"].lower() not in name_set:
                continue
            out.append((v["name"] if field == "NAME" else v["created_at"], vid))
        return out

    sel, nxt, _ = page(ds, ctx, "vendors_search", params, cursor, VENDOR_PAGE, order == "DESC", build, 0)
    return envelope("vendors", [ds.obj_bytes("vendor", k[1], ds.vendors[k[1]]) for k in sel], {"cursor": nxt})


def vendors_bulk(ds, ctx, q, body):
    ids = body.get("vendor_ids")
    if ids is None:
        raise bad("MISSING_REQUIRED_PARAMETER", "Field must be set", "vendor_ids")
    want_type(ids, "array", "vendor_ids")
    parts = []
    for vid in dict.fromkeys(ids):
        if vid in ds.vendors:
            b = b'{"vendor":' + ds.obj_bytes("vendor", vid, ds.vendors[vid]) + b"}"
        else:
            b = dumps({"errors": [{"category": "INVALID_REQUEST_ERROR", "code": "NOT_FOUND",
                                   "detail": "Vendor with id `%s` not found." % vid, "field": "vendor_ids"}]})
        parts.append(dumps(str(vid)) + b":" + b)
    return b'{"responses":{' + b",".join(parts) + b"}}"


def orders_search(ds, ctx, q, body):
    locs = body.get("location_ids")
    if locs is None or locs == []:
        raise bad("MISSING_REQUIRED_PARAMETER", "At least one location id is required.", "location_ids")
    want_type(locs, "array", "location_ids")
    if len(locs) > 10:
        raise bad("INVALID_VALUE", "Too many location_ids: %d given, at most 10 are allowed." % len(locs),
                  "location_ids")
    known = set(ds.loc_ids)
    for i, lid in enumerate(locs):
        if lid not in known:
            raise bad("INVALID_VALUE", "Location `%s` does not belong to this merchant." % lid,
                      "location_ids[%d]" % i)
    limit = opt(body, "limit", "integer")
    if limit is None:
        limit = ORDERS_DEFAULT_LIMIT
    elif limit < 1:
        raise bad("VALUE_TOO_LOW", "`limit` must be at least 1.", "limit")
    elif limit > 1000:
        raise bad("VALUE_TOO_HIGH", "`limit` must be at most 1000.", "limit")
    entries = opt(body, "return_entries", "boolean", default=False)
    query = opt(body, "query", "object", default={})
    flt = opt(query, "filter", "object", "query.filter", default={})
    sort = opt(query, "sort", "object", "query.sort", default={})
    sort_field = sort.get("sort_field", "CREATED_AT") if sort else "CREATED_AT"
    if sort and "sort_field" not in sort:
        raise bad("MISSING_REQUIRED_PARAMETER", "Field must be set", "query.sort.sort_field")
    enum_one(sort_field, ORDER_SORT_FIELDS, "query.sort.sort_field")
    sort_order = sort.get("sort_order") or "DESC"   # null is the default (nullable in the spec)
    enum_one(sort_order, SORT_ORDERS, "query.sort.sort_order")
    states = None
    sf = opt(flt, "state_filter", "object", "query.filter.state_filter")
    if sf is not None:
        if "states" not in sf:
            raise bad("MISSING_REQUIRED_PARAMETER", "Field must be set", "query.filter.state_filter.states")
        states = set(enum_list(sf["states"], ORDER_STATES, "query.filter.state_filter.states"))
    dtf = opt(flt, "date_time_filter", "object", "query.filter.date_time_filter")
    range_field = None
    rng = (None, None)
    if dtf:
        present = [f for f in ("created_at", "updated_at", "closed_at") if dtf.get(f) is not None]
        unknown = [f for f in dtf if f not in ("created_at", "updated_at", "closed_at")]
        if unknown:
            raise bad("INVALID_VALUE", "Unknown date_time_filter field `%s`." % unknown[0],
                      "query.filter.date_time_filter." + unknown[0])
        if len(present) > 1:
            raise bad("INVALID_VALUE", "Only one time range may be set in date_time_filter.",
                      "query.filter.date_time_filter")
        if present:
            range_field = present[0]
            tr = want_type(dtf[range_field], "object", "query.filter.date_time_filter." + range_field)
            base = "query.filter.date_time_filter.%s." % range_field
            rng = (parse_time_us(tr["start_at"], base + "start_at") if tr.get("start_at") is not None else None,
                   parse_time_us(tr["end_at"], base + "end_at") if tr.get("end_at") is not None else None)
            if rng[0] is not None and rng[1] is not None and rng[0] > rng[1]:
                raise bad("INVALID_TIME_RANGE", "start_at must not be after end_at.", base + "start_at")
            if range_field.upper() != sort_field:
                raise bad("INVALID_VALUE", "The sort field %s must match the field used in the date_time_filter "
                          "(%s)." % (sort_field, range_field), "query.sort.sort_field")
    if sort_field == "CLOSED_AT" and (states is None or not states <= {"COMPLETED", "CANCELED"}):
        raise bad("INVALID_VALUE", "Sorting or filtering by CLOSED_AT requires a state_filter with only closed "
                  "states (COMPLETED, CANCELED).", "query.filter.state_filter")
    for k in ("fulfillment_filter", "source_filter", "customer_filter"):
        if flt.get(k) is not None:
            want_type(flt[k], "object", "query.filter." + k)
    cursor = opt(body, "cursor", "string")
    params = {k: v for k, v in body.items() if k not in ("cursor", "limit")}
    loc_set = set(locs)
    attr = {"CREATED_AT": "created_ms", "UPDATED_AT": "updated_ms", "CLOSED_AT": "closed_ms"}[sort_field]

    def build(t_ms):
        lo, hi = rng
        if range_field and hi is None:
            hi = t_ms * 1000        # end defaults to the time of the first request for the cursor
        rattr = {"created_at": "created_ms", "updated_at": "updated_ms", "closed_at": "closed_ms"}.get(range_field)
        out = []
        if rattr:  # the orders of the window only (a superset: the filter below decides)
            recs = ds.orders_in_range(loc_set, rattr, None if lo is None else lo // 1000,
                                      None if hi is None else -(-hi // 1000))
        else:
            recs = ds.orders_in(loc_set)
        for rec in recs:
            if states is not None and rec.state not in states:
                continue
            if rattr:
                v = getattr(rec, rattr)
                if v is None or (lo is not None and v * 1000 < lo) or (hi is not None and v * 1000 > hi):
                    continue
            sv = getattr(rec, attr)
            if sv is None:
                continue
            out.append((sv, rec.id))
        return out

    sel, nxt, _ = page(ds, ctx, "orders_search", params, cursor, limit, sort_order == "DESC", build,
                       ds.clock.peek_ms())
    if entries:
        chunks = []
        for k in sel:
            rec = ds.orders[k[1]]
            e = {"order_id": rec.id, "location_id": rec.location_id}
            if rec.version is not None:
                e["version"] = rec.version
            chunks.append(dumps(e))
        return envelope("order_entries", chunks, {"cursor": nxt})
    return envelope("orders", [ds.orders[k[1]].raw for k in sel], {"cursor": nxt})


def orders_batch(ds, ctx, q, body):
    ids = body.get("order_ids")
    if ids is None:
        raise bad("MISSING_REQUIRED_PARAMETER", "Field must be set", "order_ids")
    want_type(ids, "array", "order_ids")
    if len(ids) > BATCH_ORDERS_MAX:
        raise bad("ARRAY_LENGTH_TOO_LONG", "At most %d order ids are allowed." % BATCH_ORDERS_MAX, "order_ids")
    lid = opt(body, "location_id", "string")
    out = []
    for oid in dict.fromkeys(ids):
        rec = ds.orders.get(oid) if isinstance(oid, str) else None
        if rec is None or (lid is not None and rec.location_id != lid):
            continue        # unknown ids are silently omitted
        out.append(rec.raw)
    return envelope("orders", out)


def _time_window(q, t_ms, begin_key, end_key):
    b = q1(q, begin_key)
    e = q1(q, end_key)
    bu = parse_time_us(b, begin_key) if b else None
    eu = parse_time_us(e, end_key) if e else None
    return bu, eu


def _payment_like(ds, ctx, q, endpoint, store, ms_map, default_all_locations, sort_fields, extra_filter):
    sort_field = q1(q, "sort_field") or "CREATED_AT"
    enum_one(sort_field, sort_fields, "sort_field")
    sort_order = q1(q, "sort_order") or "DESC"
    enum_one(sort_order, SORT_ORDERS, "sort_order")
    limit = q_int(q, "limit")
    if limit is None or limit > PAYMENTS_MAX:
        limit = PAYMENTS_MAX        # larger values are ignored
    if limit < 1:
        raise bad("VALUE_TOO_LOW", "`limit` must be at least 1.", "limit")
    loc = q1(q, "location_id")
    if not loc and not default_all_locations:
        loc = ds.main_location_id   # payments: the main location by default
    cursor = q1(q, "cursor")
    params = {k: v for k, v in q.items() if k not in ("cursor", "limit")}
    # validate times up front (also when paging)
    ub, ue = _time_window(q, 0, "updated_at_begin_time", "updated_at_end_time")
    cb, ce = _time_window(q, 0, "begin_time", "end_time")
    if cb is not None and ce is not None and cb > ce:
        raise bad("INVALID_TIME_RANGE", "begin_time must not be after end_time.", "begin_time")

    def build(t_ms):
        b = cb if cb is not None else (t_ms - YEAR_MS) * 1000      # default: now minus one year
        e = ce if ce is not None else t_ms * 1000
        out = []
        for oid, obj in store.items():
            c_ms, u_ms = ms_map[oid]
            if loc and obj.get("location_id") != loc:
                continue
            if c_ms * 1000 < b or c_ms * 1000 >= e:         # begin inclusive, end exclusive
                continue
            if ub is not None and u_ms * 1000 < ub:
                continue
            if ue is not None and u_ms * 1000 >= ue:
                continue
            if not extra_filter(obj):
                continue
            out.append(((u_ms if sort_field == "UPDATED_AT" else c_ms), oid))
        return out

    return page(ds, ctx, endpoint, params, cursor, limit, sort_order == "DESC", build, ds.clock.peek_ms())


def payments_list(ds, ctx, q, body):
    total = q_int(q, "total")
    last4 = q1(q, "last_4")
    brand = q1(q, "card_brand")

    def extra(p):
        if total is not None and p["total_money"]["amount"] != total:
            return False
        card = p.get("card_details", {}).get("card", {})
        if last4 and card.get("last_4") != last4:
            return False
        if brand and card.get("card_brand") != brand:
            return False
        return True

    sel, nxt, _ = _payment_like(ds, ctx, q, "payments", ds.payments, ds.pay_ms, False, PAYMENT_SORT_FIELDS, extra)
    return envelope("payments", [ds.obj_bytes("payment", k[1], ds.payments[k[1]]) for k in sel], {"cursor": nxt})


def refunds_list(ds, ctx, q, body):
    status = q1(q, "status")
    source = q1(q, "source_type")

    def extra(r):
        if status and r["status"] != status:
            return False
        # Refunds whose payment has that source type (a refund's own destination_type may differ).
        if source and ds.payments.get(r.get("payment_id"), {}).get("source_type") != source:
            return False
        return True

    sel, nxt, _ = _payment_like(ds, ctx, q, "refunds", ds.refunds, ds.refund_ms, True, REFUND_SORT_FIELDS, extra)
    return envelope("refunds", [ds.obj_bytes("refund", k[1], ds.refunds[k[1]]) for k in sel], {"cursor": nxt})


def transactions_list(ds, ctx, q, body, location_id):
    if location_id not in ds.loc_ids:
        raise bad("NOT_FOUND", "Location `%s` not found." % location_id, "location_id", status=404)
    sort_order = q1(q, "sort_order") or "DESC"
    enum_one(sort_order, SORT_ORDERS, "sort_order")
    cb, ce = _time_window(q, 0, "begin_time", "end_time")
    if cb is not None and ce is not None and cb > ce:
        raise bad("INVALID_TIME_RANGE", "begin_time must not be after end_time.", "begin_time")
    cursor = q1(q, "cursor")
    params = {k: v for k, v in q.items() if k != "cursor"}
    params["_loc"] = location_id

    def build(t_ms):
        b = cb if cb is not None else (t_ms - YEAR_MS) * 1000
        e = ce if ce is not None else t_ms * 1000
        return [(r.tx_ms, r.id) for r in ds.orders_in_range((location_id,), "tx_ms", b // 1000, -(-e // 1000))
                if r.has_tenders and b <= r.tx_ms * 1000 < e]

    sel, nxt, _ = page(ds, ctx, "transactions", params, cursor, TRANSACTIONS_PAGE, sort_order == "DESC", build,
                       ds.clock.peek_ms())
    chunks = []
    for k in sel:
        rec = ds.orders[k[1]]
        key = ("tx", rec.id, rec.updated_ms, rec.version)
        b = ds._bytes.get(key)
        if b is None:
            b = dumps(ds.transaction_for(rec))
            ds._bytes[key] = b
        chunks.append(b)
    return envelope("transactions", chunks, {"cursor": nxt})


# --------------------------------------------------------------------------- routing
ROUTES = [
    ("GET", re.compile(r"^/v2/merchants$"), "GET /v2/merchants", merchants_list),
    ("GET", re.compile(r"^/v2/merchants/([^/]+)$"), "GET /v2/merchants/{merchant_id}", merchants_get),
    ("GET", re.compile(r"^/v2/locations$"), "GET /v2/locations", locations_list),
    ("GET", re.compile(r"^/v2/locations/([^/]+)/transactions$"), "GET /v2/locations/{location_id}/transactions",
     transactions_list),
    ("GET", re.compile(r"^/v2/catalog/info$"), "GET /v2/catalog/info", catalog_info),
    ("POST", re.compile(r"^/v2/catalog/search$"), "POST /v2/catalog/search", catalog_search),
    ("GET", re.compile(r"^/v2/catalog/list$"), "GET /v2/catalog/list", catalog_list),
    ("POST", re.compile(r"^/v2/catalog/batch-retrieve$"), "POST /v2/catalog/batch-retrieve", catalog_batch_retrieve),
    ("POST", re.compile(r"^/v2/inventory/counts/batch-retrieve$"), "POST /v2/inventory/counts/batch-retrieve",
     inventory_counts),
    ("POST", re.compile(r"^/v2/vendors/search$"), "POST /v2/vendors/search", vendors_search),
    ("POST", re.compile(r"^/v2/vendors/bulk-retrieve$"), "POST /v2/vendors/bulk-retrieve", vendors_bulk),
    ("POST", re.compile(r"^/v2/orders/search$"), "POST /v2/orders/search", orders_search),
    ("POST", re.compile(r"^/v2/orders/batch-retrieve$"), "POST /v2/orders/batch-retrieve", orders_batch),
    ("GET", re.compile(r"^/v2/payments$"), "GET /v2/payments", payments_list),
    ("GET", re.compile(r"^/v2/refunds$"), "GET /v2/refunds", refunds_list),
]
LIST_KEYS = {"GET /v2/merchants": "merchant", "GET /v2/locations": "locations",
             "GET /v2/locations/{location_id}/transactions": "transactions",
             "POST /v2/catalog/search": "objects", "GET /v2/catalog/list": "objects",
             "POST /v2/catalog/batch-retrieve": "objects", "POST /v2/inventory/counts/batch-retrieve": "counts",
             "POST /v2/vendors/search": "vendors", "POST /v2/vendors/bulk-retrieve": "responses",
             "POST /v2/orders/search": "orders", "POST /v2/orders/batch-retrieve": "orders",
             "GET /v2/payments": "payments", "GET /v2/refunds": "refunds", "GET /v2/merchants/{merchant_id}": "merchant",
             "GET /v2/catalog/info": "limits"}


def match(method, path):
    """-> (template, handler, args) or raises ApiError (404 / 405)."""
    path_ok = False
    for m, rx, tmpl, fn in ROUTES:
        mo = rx.match(path)
        if mo:
            path_ok = True
            if m == method:
                return tmpl, fn, mo.groups()
    if path_ok:
        raise bad("METHOD_NOT_ALLOWED", "Method %s is not allowed for %s." % (method, path), status=405)
    raise bad("NOT_FOUND", "API endpoint for URL path `%s` and HTTP method `%s` is not found." % (path, method),
              status=404)


def check_auth(headers, token):
    auth = headers.get("Authorization")
    if not auth:
        raise ApiError(401, "AUTHENTICATION_ERROR", "UNAUTHORIZED",
                       "This request could not be authorized: the Authorization header is missing.")
    parts = auth.split(None, 1)
    if len(parts) != 2 or parts[0].lower() != "bearer":
        raise ApiError(401, "AUTHENTICATION_ERROR", "UNAUTHORIZED",
                       "The `Authorization` http header of your request was malformed. The header value is "
                       "expected to be of the format \"Bearer TOKEN\" (without quotation marks).")
    if parts[1].strip() != token:
        raise ApiError(401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized.")
    ver = headers.get("Square-Version")
    if ver is not None and not SQUARE_VERSION_RE.match(ver.strip()):
        raise bad("INVALID_SQUARE_VERSION_FORMAT", "Invalid Square-Version format: `%s`. Expected YYYY-MM-DD."
                  % ver, "Square-Version")


def parse_body(method, raw):
    if method != "POST":
        return {}
    if not raw or not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise bad("BAD_REQUEST", "The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise bad("EXPECTED_JSON_BODY", "The request body must be a JSON object.")
    return body
