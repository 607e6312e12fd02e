# Square's request rules as the fake enforces them: limits, time-filter inclusivity, sort orders,
# error envelopes for bad requests, payments' default location and one-year window, cursor rules.
import datetime

import pytest

from conftest import assert_square_error

EARLY = "2000-01-01T00:00:00Z"


def locs(fake):
    return [l["id"] for l in fake.ok("GET", "/v2/locations")["locations"]]


def parse(ts):
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))


# ---------------------------------------------------------------- auth and headers
def test_missing_token(fake, schemas):
    e = assert_square_error(fake.call("GET", "/v2/locations", token=None), 401, "UNAUTHORIZED",
                            "AUTHENTICATION_ERROR", schemas)
    assert e["detail"]


def test_wrong_token(fake, schemas):
    assert_square_error(fake.call("GET", "/v2/locations", token="nope"), 401, "UNAUTHORIZED",
                        "AUTHENTICATION_ERROR", schemas)
    assert_square_error(fake.call("POST", "/v2/orders/search", {"location_ids": locs(fake)}, token="nope"), 401,
                        "UNAUTHORIZED", schemas=schemas)


@pytest.mark.parametrize("ver", ["2025/08/20", "latest", "20250820"])
def test_bad_square_version(fake, schemas, ver):
    assert_square_error(fake.call("GET", "/v2/locations", headers={"Square-Version": ver}), 400,
                        "INVALID_SQUARE_VERSION_FORMAT", "INVALID_REQUEST_ERROR", schemas)


def test_good_square_version_and_absent(fake):
    assert fake.call("GET", "/v2/locations", headers={"Square-Version": "2024-01-18"}).status == 200
    # Without the header Square uses the application's default version.
    assert fake.call("GET", "/v2/locations", headers={"Square-Version": None}).status == 200


def test_unknown_path_is_square_404(fake, schemas):
    assert_square_error(fake.call("GET", "/v2/nothing/here"), 404, "NOT_FOUND", "INVALID_REQUEST_ERROR", schemas)
    assert_square_error(fake.call("GET", "/elsewhere"), 404, "NOT_FOUND", schemas=schemas)
    assert_square_error(fake.call("DELETE", "/v2/locations"), 405, "METHOD_NOT_ALLOWED", schemas=schemas)


def test_bad_json_body(fake, schemas):
    assert_square_error(fake.call("POST", "/v2/orders/search", b"{nope"), 400, category="INVALID_REQUEST_ERROR",
                        schemas=schemas)


# ---------------------------------------------------------------- orders
def test_orders_eleven_locations(fake, schemas):
    ids = locs(fake)
    r = fake.call("POST", "/v2/orders/search", {"location_ids": (ids * 2)[:11]})
    e = assert_square_error(r, 400, "INVALID_VALUE", "INVALID_REQUEST_ERROR", schemas)
    assert e["field"] == "location_ids"
    assert fake.call("POST", "/v2/orders/search", {"location_ids": (ids * 2)[:10]}).status == 200
    assert_square_error(fake.call("POST", "/v2/orders/search", {}), 400, "MISSING_REQUIRED_PARAMETER",
                        schemas=schemas)


@pytest.mark.parametrize("limit,code", [(1001, "VALUE_TOO_HIGH"), (0, "VALUE_TOO_LOW"), ("x", "EXPECTED_INTEGER")])
def test_orders_limit_out_of_range(fake, schemas, limit, code):
    assert_square_error(fake.call("POST", "/v2/orders/search", {"location_ids": locs(fake), "limit": limit}), 400,
                        code, schemas=schemas)


def test_orders_limit_max_ok(fake):
    page = fake.ok("POST", "/v2/orders/search", {"location_ids": locs(fake), "limit": 1000})
    assert len(page["orders"]) == 1000


def test_orders_bad_enum(fake, schemas):
    body = {"location_ids": locs(fake), "query": {"sort": {"sort_field": "UPDATED", "sort_order": "ASC"}}}
    assert_square_error(fake.call("POST", "/v2/orders/search", body), 400, "INVALID_ENUM_VALUE", schemas=schemas)
    body = {"location_ids": locs(fake), "query": {"filter": {"state_filter": {"states": ["DONE"]}}}}
    assert_square_error(fake.call("POST", "/v2/orders/search", body), 400, "INVALID_ENUM_VALUE", schemas=schemas)


def test_orders_sort_must_match_filter(fake, schemas):
    rng = {"start_at": EARLY}
    for sort in ({"sort_field": "CREATED_AT"}, None):
        q = {"filter": {"date_time_filter": {"updated_at": rng}}}
        if sort:
            q["sort"] = sort
        assert_square_error(fake.call("POST", "/v2/orders/search", {"location_ids": locs(fake), "query": q}), 400,
                            "INVALID_VALUE", schemas=schemas)
    q = {"filter": {"date_time_filter": {"closed_at": rng}}, "sort": {"sort_field": "CLOSED_AT"}}
    assert_square_error(fake.call("POST", "/v2/orders/search", {"location_ids": locs(fake), "query": q}), 400,
                        schemas=schemas)     # CLOSED_AT needs a closed-states filter
    q["filter"]["state_filter"] = {"states": ["COMPLETED", "CANCELED"]}
    page = fake.ok("POST", "/v2/orders/search", {"location_ids": locs(fake), "query": q, "limit": 100})
    assert all(o["state"] in ("COMPLETED", "CANCELED") for o in page["orders"])


def test_orders_updated_at_inclusive_both_ends(fake):
    ids = locs(fake)
    base = {"location_ids": ids, "limit": 1000,
            "query": {"sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}}
    orders = fake.ok("POST", "/v2/orders/search", base)["orders"]
    a, b = orders[100]["updated_at"], orders[300]["updated_at"]
    q = {"filter": {"date_time_filter": {"updated_at": {"start_at": a, "end_at": b}}},
         "sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}
    got, _ = fake.walk("POST", "/v2/orders/search", {"location_ids": ids, "limit": 50, "query": q}, "orders")
    expect = [o["id"] for o in orders if a <= o["updated_at"] <= b]
    assert [o["id"] for o in got] == expect
    assert got[0]["updated_at"] == a and got[-1]["updated_at"] == b
    q["sort"]["sort_order"] = "DESC"
    got_desc, _ = fake.walk("POST", "/v2/orders/search", {"location_ids": ids, "limit": 50, "query": q}, "orders")
    assert [o["id"] for o in got_desc] == expect[::-1]


def test_orders_state_and_location_filter(fake):
    ids = locs(fake)
    q = {"filter": {"state_filter": {"states": ["OPEN"]}}}
    got, _ = fake.walk("POST", "/v2/orders/search", {"location_ids": ids[:2], "limit": 1000, "query": q}, "orders")
    assert got and all(o["state"] == "OPEN" and o["location_id"] in ids[:2] for o in got)
    snap = fake.snapshot()["tables"]["orders"]["rows"]
    assert len(got) == sum(1 for r in snap if r[3] == "OPEN" and r[1] in ids[:2])


def test_orders_created_at_sort(fake):
    q = {"sort": {"sort_field": "CREATED_AT", "sort_order": "ASC"}}
    got = fake.ok("POST", "/v2/orders/search", {"location_ids": locs(fake), "limit": 300, "query": q})["orders"]
    c = [parse(o["created_at"]) for o in got]
    assert c == sorted(c)


# ---------------------------------------------------------------- catalog
def test_catalog_begin_time_exclusive(fake):
    objs, _ = fake.walk("POST", "/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"],
                                                       "limit": 1000}, "objects")
    stamps = sorted(o["updated_at"] for o in objs)
    t = stamps[len(stamps) // 2]
    got, _ = fake.walk("POST", "/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"],
                                                      "begin_time": t, "limit": 1000}, "objects")
    assert sorted(o["id"] for o in got) == sorted(o["id"] for o in objs if o["updated_at"] > t)
    assert all(o["updated_at"] != t for o in got)
    latest = fake.ok("POST", "/v2/catalog/search", {"object_types": ["ITEM"], "limit": 1})["latest_time"]
    assert latest == stamps[-1]
    assert "objects" not in fake.ok("POST", "/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION",
                                                                                    "CATEGORY"],
                                                                   "begin_time": latest})


def test_catalog_bad_enum_and_time(fake, schemas):
    assert_square_error(fake.call("POST", "/v2/catalog/search", {"object_types": ["ITEMS"]}), 400,
                        "INVALID_ENUM_VALUE", schemas=schemas)
    assert_square_error(fake.call("POST", "/v2/catalog/search", {"begin_time": "yesterday"}), 400,
                        "INVALID_TIME", schemas=schemas)
    # real Square accepts the vendor-info type although the spec's enum lacks it
    page = fake.ok("POST", "/v2/catalog/search", {"object_types": ["ITEM_VARIATION_VENDOR_INFO"], "limit": 5})
    assert {o["type"] for o in page["objects"]} == {"ITEM_VARIATION_VENDOR_INFO"}


# ---------------------------------------------------------------- inventory
def test_inventory_limits_and_filters(fake, schemas):
    for limit, code in ((0, "VALUE_TOO_LOW"), (1001, "VALUE_TOO_HIGH")):
        assert_square_error(fake.call("POST", "/v2/inventory/counts/batch-retrieve", {"limit": limit}), 400, code,
                            schemas=schemas)
    assert_square_error(fake.call("POST", "/v2/inventory/counts/batch-retrieve", {"states": ["FULL"]}), 400,
                        "INVALID_ENUM_VALUE", schemas=schemas)
    ids = locs(fake)
    allc, _ = fake.walk("POST", "/v2/inventory/counts/batch-retrieve", {"limit": 1000}, "counts")
    t = sorted(c["calculated_at"] for c in allc)[len(allc) // 2]
    after, _ = fake.walk("POST", "/v2/inventory/counts/batch-retrieve",
                         {"updated_after": t, "location_ids": ids[:3], "states": ["IN_STOCK"], "limit": 100}, "counts")
    expect = [c for c in allc if c["calculated_at"] > t and c["location_id"] in ids[:3]]
    assert sorted(map(str, after)) == sorted(map(str, expect))
    stamps = [c["calculated_at"] for c in after]
    assert stamps == sorted(stamps, reverse=True)


# ---------------------------------------------------------------- payments / refunds / transactions
def test_payments_default_main_location_and_one_year(fake, schemas):
    merchant = fake.ok("GET", "/v2/merchants/me")["merchant"]
    main = merchant["main_location_id"]
    everything = []
    for lid in locs(fake):
        everything += fake.walk("GET", "/v2/payments?begin_time=%s&location_id=%s" % (EARLY, lid), None,
                                "payments")[0]
    year_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=365)
    default, _ = fake.walk("GET", "/v2/payments", None, "payments")
    expect = [p["id"] for p in everything if p["location_id"] == main and parse(p["created_at"]) >= year_ago]
    assert sorted(p["id"] for p in default) == sorted(expect)
    assert any(p["location_id"] != main for p in everything)          # the default misses these
    assert any(parse(p["created_at"]) < year_ago for p in everything)  # and these
    c = [p["created_at"] for p in default]
    assert c == sorted(c, reverse=True)


def test_payments_limits_and_sort(fake, schemas):
    main = fake.ok("GET", "/v2/merchants/me")["merchant"]["main_location_id"]
    assert_square_error(fake.call("GET", "/v2/payments?sort_field=AMOUNT"), 400, "INVALID_ENUM_VALUE",
                        schemas=schemas)
    assert_square_error(fake.call("GET", "/v2/payments?sort_order=UP"), 400, "INVALID_ENUM_VALUE", schemas=schemas)
    assert_square_error(fake.call("GET", "/v2/payments?limit=0"), 400, "VALUE_TOO_LOW", schemas=schemas)
    assert_square_error(fake.call("GET", "/v2/payments?begin_time=notatime"), 400, "INVALID_TIME", schemas=schemas)
    assert fake.call("GET", "/v2/payments?limit=500").status == 200          # >100 is ignored, not rejected
    pays = fake.walk("GET", "/v2/payments?begin_time=%s&location_id=%s&sort_field=UPDATED_AT&sort_order=ASC&limit=1"
                     % (EARLY, main), None, "payments")[0]
    u = [p["updated_at"] for p in pays]
    assert u == sorted(u) and len(u) >= 2
    mid = u[len(u) // 2]
    win = fake.walk("GET", "/v2/payments?begin_time=%s&location_id=%s&updated_at_begin_time=%s" % (EARLY, main, mid),
                    None, "payments")[0]
    assert sorted(p["id"] for p in win) == sorted(p["id"] for p in pays if p["updated_at"] >= mid)


def test_refunds_default_all_locations(fake, schemas):
    allr = fake.walk("GET", "/v2/refunds?begin_time=" + EARLY, None, "refunds")[0]
    assert len({r["location_id"] for r in allr}) >= 1
    assert_square_error(fake.call("GET", "/v2/refunds?sort_field=OFFLINE_CREATED_AT"), 400, "INVALID_ENUM_VALUE",
                        schemas=schemas)
    year_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=365)
    default = fake.walk("GET", "/v2/refunds", None, "refunds")[0]
    assert sorted(r["id"] for r in default) == sorted(r["id"] for r in allr if parse(r["created_at"]) >= year_ago)


def test_refunds_source_type_is_their_payments(fake):
    """source_type keeps the refunds whose payment has that source type (GET /v2/refunds). (The
    dataset's refunds all go back where their payments came from, so a filter on the refunds' own
    destination_type, as the fake had, answers the same here: this checks the rule, not that change.)"""
    allr = fake.walk("GET", "/v2/refunds?begin_time=" + EARLY, None, "refunds")[0]
    pays = {p["id"]: p for p in fake.walk("GET", "/v2/payments?begin_time=" + EARLY, None, "payments")[0]}
    for lid in locs(fake):
        pays.update({p["id"]: p for p in fake.walk("GET", "/v2/payments?begin_time=%s&location_id=%s" % (EARLY, lid),
                                                   None, "payments")[0]})
    kinds = {pays[r["payment_id"]]["source_type"] for r in allr if r.get("payment_id") in pays}
    assert kinds, "no refund with a known payment: the test proves nothing"
    for kind in kinds | {"BANK_ACCOUNT"}:
        got = fake.walk("GET", "/v2/refunds?begin_time=%s&source_type=%s" % (EARLY, kind), None, "refunds")[0]
        assert sorted(r["id"] for r in got) == sorted(
            r["id"] for r in allr if pays.get(r.get("payment_id"), {}).get("source_type") == kind), kind


def test_null_sort_fields_take_their_defaults(fake):
    """Square's spec marks these sort fields nullable: null is the default, not an error."""
    assert fake.call("POST", "/v2/vendors/search", {"sort": {"field": None, "order": None}}).status == 200
    assert fake.call("POST", "/v2/orders/search", {"location_ids": locs(fake)[:1],
                                                   "query": {"sort": {"sort_field": "CREATED_AT", "sort_order": None}}}
                     ).status == 200


def test_transactions_window_and_sort(fake, schemas):
    lid = locs(fake)[0]
    allt = fake.walk("GET", "/v2/locations/%s/transactions?begin_time=%s&sort_order=ASC" % (lid, EARLY), None,
                     "transactions")[0]
    c = [t["created_at"] for t in allt]
    assert c == sorted(c)
    year_ago = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=365)
    default = fake.walk("GET", "/v2/locations/%s/transactions" % lid, None, "transactions")[0]
    assert sorted(t["id"] for t in default) == sorted(t["id"] for t in allt if parse(t["created_at"]) >= year_ago)
    assert len(default) < len(allt)
    assert_square_error(fake.call("GET", "/v2/locations/%s/transactions?sort_order=SIDEWAYS" % lid), 400,
                        "INVALID_ENUM_VALUE", schemas=schemas)


# ---------------------------------------------------------------- cursors
def test_cursor_must_use_original_query(fake, schemas):
    ids = locs(fake)
    p1 = fake.ok("POST", "/v2/orders/search", {"location_ids": ids, "limit": 10})
    assert p1["cursor"]
    r = fake.call("POST", "/v2/orders/search", {"location_ids": ids[:1], "limit": 10, "cursor": p1["cursor"]})
    assert_square_error(r, 400, "INVALID_CURSOR", schemas=schemas)
    r = fake.call("POST", "/v2/orders/search", {"location_ids": ids, "cursor": "garbage!!"})
    assert_square_error(r, 400, "INVALID_CURSOR", schemas=schemas)
    r = fake.call("GET", "/v2/payments?cursor=" + p1["cursor"])
    assert_square_error(r, 400, "INVALID_CURSOR", schemas=schemas)
    # a different limit on later pages is fine (only the query must match)
    p2 = fake.ok("POST", "/v2/orders/search", {"location_ids": ids, "limit": 20, "cursor": p1["cursor"]})
    assert len(p2["orders"]) == 20
    assert not {o["id"] for o in p1["orders"]} & {o["id"] for o in p2["orders"]}


def test_gzip_and_keepalive(fake):
    c = fake.conn()
    try:
        for _ in range(3):
            c.request("GET", "/v2/locations", headers={"Authorization": "Bearer fake-square-token",
                                                       "Accept-Encoding": "gzip"})
            r = c.getresponse()
            body = r.read()
            assert r.status == 200 and r.getheader("Content-Encoding") == "gzip"
            import gzip
            import json
            assert len(json.loads(gzip.decompress(body))["locations"]) == 9
    finally:
        c.close()
