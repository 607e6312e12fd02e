# /__fake__/mutate changes exactly what it reports (snapshot diff before/after), advances updated_at
# and version as Square does, and refuses deletes Square does not have.
import datetime

import pytest

ALL = {"catalog_items": {"update": 3, "create": 2, "delete": 2},
       "catalog_variations": {"update": 3, "create": 2, "delete": 1},
       "catalog_categories": {"update": 1, "create": 1, "delete": 1},
       "inventory_counts": {"update": 5, "create": 2},
       "vendors": {"update": 2, "create": 1},
       "orders": {"update": 0.01, "create": 3},
       "payments": {"update": 1, "create": 1},
       "refunds": {"update": 1, "create": 1},
       "late_orders": 2}


def rows_by_key(table):
    nk = len(table["key"])
    return {tuple(r[:nk]): r[nk:] for r in table["rows"]}


def diff(before, after):
    """table -> (added keys, removed keys, changed keys)"""
    out = {}
    for name, tb in before["tables"].items():
        a, b = rows_by_key(tb), rows_by_key(after["tables"][name])
        out[name] = (set(b) - set(a), set(a) - set(b), {k for k in set(a) & set(b) if a[k] != b[k]})
    return out


def test_mutate_changes_exactly_what_it_reports(clean):
    fake = clean
    before = fake.snapshot()
    t0 = datetime.datetime.now(datetime.timezone.utc)
    st, res = fake.control("POST", "mutate", ALL)
    assert st == 200, res
    after = fake.snapshot()
    d = diff(before, after)
    R = {k: {op: set(v[op]) for op in ("updated", "created", "deleted")} for k, v in res.items()}
    touched = lambda kind: R[kind]["updated"] | R[kind]["created"] | R[kind]["deleted"]  # noqa: E731

    # every requested amount happened
    assert len(R["catalog_items"]["created"]) == 2 and len(R["catalog_items"]["deleted"]) == 2
    assert len(R["vendors"]["created"]) == 1 and len(R["inventory_counts"]["updated"]) == 5
    assert len(R["orders"]["created"]) == 3 + 1 + 2      # orders + a payment's order + late orders
    assert len(R["payments"]["created"]) == 3 + 1

    simple = {"catalog_categories": "catalog_categories", "catalog_items": "catalog_items",
              "catalog_variations": "catalog_variations", "vendors": "vendors", "payments": "payments",
              "payment_refunds": "refunds", "orders": "orders"}
    for table, kind in simple.items():
        added, removed, changed = d[table]
        assert not removed, table
        assert {k[0] for k in added} == R[kind]["created"], table
        assert {k[0] for k in changed} == R[kind]["updated"] | R[kind]["deleted"], table
    # tombstones
    t = rows_by_key(after["tables"]["catalog_items"])
    for iid in R["catalog_items"]["deleted"]:
        assert t[(iid,)][1] is True
    tv = rows_by_key(after["tables"]["catalog_variations"])
    for vid in R["catalog_variations"]["deleted"]:
        assert tv[(vid,)][2] is True
    # cascade: every variation of a deleted item is reported deleted
    for key, row in tv.items():
        if row[0] in R["catalog_items"]["deleted"]:
            assert row[2] is True
            assert key[0] in R["catalog_variations"]["deleted"] or rows_by_key(
                before["tables"]["catalog_variations"])[key][2] is True
    # inventory
    added, removed, changed = d["catalog_inventory"]
    assert not removed
    assert {":".join(k) for k in added} == R["inventory_counts"]["created"]
    assert {":".join(k) for k in changed} == R["inventory_counts"]["updated"]
    # children of orders only change with their order
    for table in ("order_line_items", "order_fulfillments", "order_refunds", "order_returns", "tenders",
                  "transactions"):
        added, removed, changed = d[table]
        assert {k[0] for k in added | removed | changed} <= touched("orders"), table
    # availability and vendor info only change with catalog objects
    added, removed, changed = d["catalog_location_availability"]
    var_ids = touched("catalog_variations")
    item_ids = touched("catalog_items")
    for k in added | removed | changed:
        assert k[0] in var_ids or rows_by_key(before["tables"]["catalog_location_availability"]).get(k, [None])[0] \
            in item_ids
    added, removed, changed = d["catalog_vendor_info"]
    assert not removed
    vi_after = rows_by_key(after["tables"]["catalog_vendor_info"])
    for k in added | changed:
        assert vi_after[k][0] in var_ids
    # new times are now-ish and versions moved forward
    now = datetime.datetime.now(datetime.timezone.utc)
    o_after = rows_by_key(after["tables"]["orders"])
    o_before = rows_by_key(before["tables"]["orders"])
    for oid in R["orders"]["updated"]:
        assert o_after[(oid,)][1] > o_before[(oid,)][1]
        ts = datetime.datetime.fromisoformat(o_after[(oid,)][3].replace("Z", "+00:00"))
        assert t0 - datetime.timedelta(seconds=1) <= ts <= now
    for vid in R["catalog_variations"]["updated"]:
        b = rows_by_key(before["tables"]["catalog_variations"])[(vid,)]
        assert tv[(vid,)][1] > b[1]


def test_mutate_times_strictly_increase_and_catalog_watermark(clean, schemas):
    fake = clean
    body = {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"], "include_deleted_objects": True}
    latest = fake.ok("POST", "/v2/catalog/search", dict(body, limit=1))["latest_time"]
    st, res = fake.control("POST", "mutate", {"catalog_items": {"update": 2, "delete": 1},
                                               "catalog_variations": {"update": 2}})
    got, pages = fake.walk("POST", "/v2/catalog/search", dict(body, begin_time=latest), "objects",
                           lambda p: schemas.validate("SearchCatalogObjectsResponse", p))
    expect = set(res["catalog_items"]["updated"] + res["catalog_items"]["deleted"] +
                 res["catalog_variations"]["updated"] + res["catalog_variations"]["deleted"])
    assert {o["id"] for o in got} == expect
    stamps = sorted(o["updated_at"] for o in got)
    assert len(set(stamps)) == len(stamps)          # at least 1 ms apart
    assert pages[0]["latest_time"] == stamps[-1]
    deleted = [o for o in got if o["is_deleted"]]
    assert deleted and all(o["type"] in ("ITEM", "ITEM_VARIATION") for o in deleted)
    for o in deleted:
        if o["type"] == "ITEM":
            assert o["item_data"]["name"]           # tombstone keeps its last data
    # catalog/list never shows tombstones
    listed, _ = fake.walk("GET", "/v2/catalog/list?types=ITEM,ITEM_VARIATION", None, "objects")
    assert not {o["id"] for o in deleted} & {o["id"] for o in listed}
    # nor does search without include_deleted_objects
    plain, _ = fake.walk("POST", "/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION"],
                                                        "begin_time": latest}, "objects")
    assert not any(o["is_deleted"] for o in plain)


def test_mutate_orders_watermark_inclusive(clean):
    fake = clean
    locs = [l["id"] for l in fake.ok("GET", "/v2/locations")["locations"]]
    q = {"sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}
    last = fake.ok("POST", "/v2/orders/search", {"location_ids": locs, "limit": 1,
                                                 "query": {"sort": {"sort_field": "UPDATED_AT",
                                                                    "sort_order": "DESC"}}})["orders"][0]
    wm = last["updated_at"]
    st, res = fake.control("POST", "mutate", {"orders": {"update": 4, "create": 2}, "late_orders": 3})
    q["filter"] = {"date_time_filter": {"updated_at": {"start_at": wm}}}
    got, _ = fake.walk("POST", "/v2/orders/search", {"location_ids": locs, "limit": 3, "query": q}, "orders")
    ids = {o["id"] for o in got}
    assert last["id"] in ids           # inclusive start
    late_ids = res["orders"]["created"][-3:]        # late orders come last in the answer
    assert set(res["orders"]["updated"]) | set(res["orders"]["created"][:-3]) <= ids
    now = datetime.datetime.now(datetime.timezone.utc)
    late = fake.ok("POST", "/v2/orders/batch-retrieve", {"order_ids": late_ids})["orders"]
    # late orders' updated_at lies 1-48 h back: a watermark newer than that misses them (as with Square)
    assert {o["id"] for o in late if o["updated_at"] >= wm} <= ids
    assert not {o["id"] for o in late if o["updated_at"] < wm} & ids
    assert len(late) == 3
    for o in late:
        c = datetime.datetime.fromisoformat(o["created_at"].replace("Z", "+00:00"))
        u = datetime.datetime.fromisoformat(o["updated_at"].replace("Z", "+00:00"))
        assert datetime.timedelta(hours=1) <= now - c <= datetime.timedelta(hours=48, minutes=1)
        assert now - u >= datetime.timedelta(hours=1) - datetime.timedelta(seconds=5)


def test_mutate_money_stays_consistent(clean):
    fake = clean
    st, res = fake.control("POST", "mutate", {"orders": {"update": 30, "create": 5}, "refunds": {"create": 2}})
    ids = res["orders"]["updated"] + res["orders"]["created"]
    orders = fake.ok("POST", "/v2/orders/batch-retrieve", {"order_ids": ids})["orders"]
    assert len(orders) == len(ids)
    live_vars = {r[0] for r in fake.snapshot()["tables"]["catalog_variations"]["rows"] if not r[3]}
    for o in orders:
        lis = o.get("line_items", [])
        assert o["total_money"]["amount"] == sum(li["total_money"]["amount"] for li in lis) + \
            o["total_tip_money"]["amount"] + o["total_service_charge_money"]["amount"]
        for t in o.get("tenders", []):
            assert t["amount_money"]["amount"] == o["total_money"]["amount"]
    for oid in res["orders"]["created"]:
        o = next(x for x in orders if x["id"] == oid)
        assert all(li["catalog_object_id"] in live_vars for li in o["line_items"])
        assert o["tenders"]


@pytest.mark.parametrize("kind", ["orders", "payments", "refunds", "inventory_counts", "vendors"])
def test_mutate_refuses_deletes_square_lacks(clean, kind):
    st, body = clean.control("POST", "mutate", {kind: {"delete": 1}})
    assert st == 400 and "no delete" in body["error"]


def test_mutate_fraction_and_reset(clean):
    fake = clean
    n_vendors = len(fake.snapshot()["tables"]["vendors"]["rows"])
    st, res = fake.control("POST", "mutate", {"vendors": {"update": 0.5}})
    assert len(res["vendors"]["updated"]) == max(1, round(0.5 * n_vendors))
    st, res = fake.control("POST", "mutate", {"vendors": {"update": 0.0001}})
    assert len(res["vendors"]["updated"]) == 1
    st, body = fake.control("POST", "mutate", {"nonsense": {"update": 1}})
    assert st == 400
    s1 = fake.snapshot()
    fake.control("POST", "reset")
    fake.control("POST", "mutate", {"vendors": {"update": 1}})
    fake.control("POST", "reset")
    assert fake.snapshot() != s1
    s2 = fake.snapshot()
    fake.control("POST", "reset")
    assert fake.snapshot() == s2
