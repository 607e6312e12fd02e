# The generator: the seed dataset's exact sizes (built in-process, not served), the demo dataset,
# determinism, time placement (everything before start, ~15 months back) and the availability rule.
import time

import pytest

from dataset import Dataset, YEAR_MS

SEED_SIZES = {"locations": 9, "categories": 25, "items": 867, "variations": 1002, "inventory_counts": 9018,
              "vendors": 11, "vendor_infos": 989, "orders": 30390, "line_items": 159131, "tenders": 2493,
              "payments": 49}


@pytest.fixture(scope="module")
def seed_ds():
    return Dataset("seed", start_ms=int(time.time() * 1000))


def test_seed_sizes(seed_ds):
    got = seed_ds.counts_summary()
    assert {k: got[k] for k in SEED_SIZES} == SEED_SIZES
    for k in ("fulfillments", "returns", "order_refunds", "payment_refunds", "transactions"):
        assert got[k] > 0, k
    assert got["transactions"] == got["tenders"]


def test_seed_times_before_start_and_span(seed_ds):
    ds = seed_ds
    start = int(time.time() * 1000)
    created = [r.created_ms for r in ds.orders.values()]
    assert max(r.updated_ms for r in ds.orders.values()) < ds.anchor_ms <= start
    assert max(ds.cat_ms.values()) < ds.anchor_ms
    assert max(ds.count_ms.values()) < ds.anchor_ms
    span_days = (ds.anchor_ms - min(created)) / 86400000.0
    assert 420 <= span_days <= 470
    old = [p for p, (c, u) in ds.pay_ms.items() if c < start - YEAR_MS]
    assert 0 < len(old) < len(ds.payments)
    main = ds.main_location_id
    assert any(p["location_id"] != main for p in ds.payments.values())


def test_seed_availability_variety(seed_ds):
    ds = seed_ds
    objs = [ds.catalog[i] for i in ds.items] + [ds.catalog[v] for v in ds.variations]
    assert any(o.get("absent_at_location_ids") for o in objs)
    assert any(o.get("present_at_all_locations") is False for o in objs)
    assert any(ds.catalog[v]["item_variation_data"].get("location_overrides") for v in ds.variations)
    snap_avail = ds.snapshot()["tables"]["catalog_location_availability"]["rows"]
    assert len(snap_avail) == 1002 * 9
    present = sum(1 for r in snap_avail if r[3])
    assert 0 < present < len(snap_avail)
    assert any(r[4] is not None for r in snap_avail)


def test_availability_rule():
    p = Dataset._present
    assert p({}, "A")
    assert p({"present_at_all_locations": True, "absent_at_location_ids": ["B"]}, "A")
    assert not p({"present_at_all_locations": True, "absent_at_location_ids": ["A"]}, "A")
    assert p({"present_at_all_locations": False, "present_at_location_ids": ["A"]}, "A")
    assert not p({"present_at_all_locations": False, "present_at_location_ids": ["B"]}, "A")


def test_deterministic_per_seed():
    t = int(time.time() * 1000)
    a = Dataset("demo", seed=5, start_ms=t).snapshot()
    b = Dataset("demo", seed=5, start_ms=t).snapshot()
    c = Dataset("demo", seed=6, start_ms=t).snapshot()
    assert a == b
    assert a != c


def test_scale_and_locations():
    ds = Dataset("seed", scale=0.01, locations=12)
    s = ds.counts_summary()
    assert s["locations"] == 12
    assert s["inventory_counts"] == s["variations"] * 12
    assert 250 <= s["orders"] <= 350


def test_demo_served(demo, schemas):
    locs = demo.ok("GET", "/v2/locations")["locations"]
    assert len(locs) == 3
    snap = demo.snapshot()["tables"]
    assert 100 <= len(snap["orders"]["rows"]) <= 1000
    orders, _ = demo.walk("POST", "/v2/orders/search", {"location_ids": [l["id"] for l in locs], "limit": 1000},
                          "orders")
    assert len(orders) == len(snap["orders"]["rows"])


def test_orders_by_time_window_follow_every_change():
    """The searches' time-window index (orders_in_range) finds exactly the orders a scan of the
    location finds, for each time field, after orders are created, updated, closed, paid and
    refunded, and after an index is first built between changes."""
    import random
    ds = Dataset("seed", scale=0.02, start_ms=int(time.time() * 1000))
    rng = random.Random(7)
    attrs = ("updated_ms", "tx_ms", "created_ms", "closed_ms")

    def check(attr):
        values = [getattr(r, attr) for r in ds.orders.values() if getattr(r, attr) is not None]
        for _ in range(20):
            lo, hi = sorted(rng.choice(values) + rng.randint(-5000, 5000) for _ in range(2))
            locs = rng.sample(ds.loc_ids, rng.randint(1, 3))
            want = sorted(r.id for lid in locs for r in ds.orders_in((lid,))
                          if getattr(r, attr) is not None and lo <= getattr(r, attr) <= hi)
            got = sorted(r.id for r in ds.orders_in_range(locs, attr, lo, hi))
            assert got == want, (attr, lo, hi)
        unbounded = sorted(r.id for r in ds.orders_in_range(ds.loc_ids, attr, None, None))
        assert unbounded == sorted(r.id for r in ds.orders.values() if getattr(r, attr) is not None)

    check("updated_ms")
    check("tx_ms")
    for day in range(4):
        res, err = ds.mutate({"orders": {"update": 15, "create": 10}, "late_orders": 2, "drop_line_items": 2,
                              "refunds": {"create": 2, "update": 1}, "payments": {"update": 2}})
        assert err is None and res["orders"]["updated"], err
        for attr in attrs[: 2 + day % 3]:  # created_ms and closed_ms first built after changes
            check(attr)


def test_a_new_location_is_listed_and_sells():
    """new_locations: a store opens (ACTIVE, created now) and joins the locations ListLocations
    serves; the seed's own locations are untouched; the day's new orders may be sold there."""
    ds = Dataset("seed", scale=0.02, start_ms=int(time.time() * 1000))
    before = [dict(l) for l in ds.locations]
    res, err = ds.mutate({"new_locations": 1})
    assert err is None
    (lid,) = res["locations"]["created"]
    assert ds.locations[:-1] == before
    new = ds.locations[-1]
    assert new["id"] == lid and new["status"] == "ACTIVE" and lid in ds.loc_ids
    assert new["created_at"] > max(l["created_at"] for l in before)
    res, err = ds.mutate({"orders": {"create": 60}})
    assert err is None
    assert any(ds.orders[o].location_id == lid for o in res["orders"]["created"])
    assert ds.mutate({"new_locations": -1})[1] == "new_locations must be a non-negative number"
