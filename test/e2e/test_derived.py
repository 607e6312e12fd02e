"""test_derived.py: the internal, historical and export tables end to end (issue 6): daily sales
kept incrementally equal a from-scratch aggregation, the item library export equals a fresh build
(an incremental run recomputing the rows of the variations it touched) and a reader never sees it
empty, the inventory history records exactly the counts that changed, and the seller's operating
seasons survive every sync and rollback."""
import decimal
import re
import threading

import pytest

from fakesquare import assert_matches_fake


def norm(v):
    if isinstance(v, (decimal.Decimal, float, int)) and not isinstance(v, bool):
        return format(decimal.Decimal(str(v)).normalize(), "f")
    return v


def rows(con, sql, params=()):
    return {tuple(norm(v) for v in r) for r in con.execute(sql, params).fetchall()}


# Sales computed independently: straight from the orders' raw objects Square sent.
SALES_FROM_RAW = """
WITH o AS (
    SELECT o.raw, o.location_id, (o.closed_at AT TIME ZONE l.timezone)::date AS day
    FROM square.orders o JOIN square.locations l ON l.id = o.location_id
    WHERE o.state = 'COMPLETED'
), parts AS (
    SELECT day, location_id, x ->> 'catalog_object_id' AS v, o.raw ->> 'id' AS oid,
           (x ->> 'quantity')::numeric AS q, (x -> 'gross_sales_money' ->> 'amount')::bigint AS g,
           (x -> 'total_discount_money' ->> 'amount')::bigint AS d, 0 AS rq, 0 AS rg, 0 AS rd
    FROM o, jsonb_array_elements(coalesce(o.raw -> 'line_items', '[]')) x
    UNION ALL
    SELECT day, location_id, x ->> 'catalog_object_id', NULL, 0, 0, 0, (x ->> 'quantity')::numeric,
           (x -> 'gross_return_money' ->> 'amount')::bigint, (x -> 'total_discount_money' ->> 'amount')::bigint
    FROM o, jsonb_array_elements(coalesce(o.raw -> 'returns', '[]')) r, jsonb_array_elements(r -> 'return_line_items') x
)
SELECT day, location_id, v, count(DISTINCT oid), sum(q), sum(g), sum(d) - sum(rd), sum(rq), sum(rg),
       sum(g) - sum(rg) - sum(d) + sum(rd)
FROM parts GROUP BY 1, 2, 3
"""
SALES = """SELECT sale_date, location_id, variation_id, orders, quantity_sold, gross_sales_amount, discounts_amount,
                  returned_quantity, returns_amount, net_sales_amount FROM square.square_sales"""


def test_sales_kept_incrementally_equal_a_from_scratch_aggregation(db, fake):
    db.execute("SELECT squaresync.foundation()")
    assert db.execute("SELECT count(*) FROM square.square_sales").fetchone()[0] > 0
    assert rows(db, SALES) == rows(db, SALES_FROM_RAW)
    # A seller's day: open orders completed or cancelled, new orders, late orders, refunds.
    fake.mutate({"orders": {"update": 10, "create": 5}, "late_orders": 3, "refunds": {"create": 1, "update": 1},
                 "payments": {"create": 1}})
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert_matches_fake(db, fake, tables=["orders"])
    assert rows(db, SALES) == rows(db, SALES_FROM_RAW)
    # Only the touched days were rewritten: most rows keep their physical version.
    n_days = db.execute("SELECT count(*) FROM square.square_sales WHERE xmin::text = (SELECT xmin::text FROM"
                        " square.orders WHERE id = (SELECT pk->>'id' FROM squaresync.changes WHERE run_id = %s"
                        " AND table_name = 'orders' LIMIT 1))", (inc,)).fetchone()[0]
    assert 0 < n_days < db.execute("SELECT count(*) FROM square.square_sales").fetchone()[0] / 2
    # Recomputing the run's days again writes nothing: only rows that differ are written.
    versions = "SELECT sale_date::text || location_id || variation_id, xmin::text FROM square.square_sales"
    before = dict(db.execute(versions).fetchall())
    db.execute("SELECT squaresync._refresh_sales(%s, (SELECT merchant_id FROM squaresync.connection))", (inc,))
    assert dict(db.execute(versions).fetchall()) == before
    # A rollback recomputes the days it touches too.
    db.execute("SELECT squaresync.rollback(%s, 'test')", (inc,))
    assert rows(db, SALES) == rows(db, SALES_FROM_RAW)
    assert rows(db, SALES) == rows(db, "SELECT sale_date, location_id, variation_id, orders, quantity_sold,"
                               " gross_sales_amount, discounts_amount, returned_quantity, returns_amount,"
                               " net_sales_amount FROM squaresync._sales_rows("
                               "(SELECT merchant_id FROM squaresync.connection), NULL, NULL, NULL)")


def export_rows(con):
    return rows(con, "SELECT * FROM square.square_item_library_export")


def test_export_equals_a_fresh_build_and_readers_never_see_it_empty(db, fake, cluster):
    db.execute("SELECT squaresync.foundation()")
    n_live = db.execute("SELECT count(*) FROM square.catalog_variations v JOIN square.catalog_items i ON i.id = v.item_id"
                        " WHERE NOT v.is_deleted AND NOT i.is_deleted").fetchone()[0]
    n_loc = db.execute("SELECT count(*) FROM square.locations").fetchone()[0]
    assert db.execute("SELECT count(*) FROM square.square_item_library_export").fetchone()[0] == n_live * n_loc

    seen = []
    stop = threading.Event()

    def reader():
        c = cluster.connect()
        while not stop.is_set():
            seen.append(c.execute("SELECT count(*) FROM square.square_item_library_export").fetchone()[0])
        c.close()

    th = threading.Thread(target=reader)
    th.start()
    try:
        for _ in range(3):
            fake.mutate({"catalog_items": {"update": 2, "create": 1, "delete": 1}, "catalog_variations": {"update": 2},
                         "inventory_counts": {"update": 5}, "vendors": {"update": 1}})
            db.execute("SELECT squaresync.incremental()")
        db.execute("SELECT squaresync.rebuild_derived()")
    finally:
        stop.set()
        th.join()
    assert len(seen) > 10 and min(seen) > 0, (len(seen), min(seen))

    got = export_rows(db)
    # The same library built from scratch in a fresh database by a foundation run.
    db.execute("DROP DATABASE IF EXISTS derived_fresh")
    db.execute("CREATE DATABASE derived_fresh")
    fresh = cluster.connect("derived_fresh")
    try:
        fresh.execute("CREATE EXTENSION squaresync")
        fresh.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        fresh.execute("SELECT squaresync.foundation()")
        assert export_rows(fresh) == got
        assert rows(fresh, SALES) == rows(db, SALES)
    finally:
        fresh.close()
        db.execute("DROP DATABASE derived_fresh")
    # Spot checks of the export's columns against the synced tables.
    v = db.execute("SELECT v.id, v.sku, v.price_amount, i.name FROM square.catalog_variations v"
                   " JOIN square.catalog_items i ON i.id = v.item_id WHERE NOT v.is_deleted AND NOT i.is_deleted"
                   " AND NOT EXISTS (SELECT 1 FROM square.catalog_location_availability a WHERE a.variation_id = v.id"
                   " AND a.has_override) LIMIT 1").fetchone()
    e = db.execute("SELECT DISTINCT sku, price_amount, item_name FROM square.square_item_library_export"
                   " WHERE variation_id = %s", (v[0],)).fetchall()
    assert e == [v[1:]]
    q = db.execute("SELECT e.current_quantity = c.quantity FROM square.square_item_library_export e"
                   " JOIN square.catalog_inventory c ON c.catalog_object_id = e.variation_id AND"
                   " c.location_id = e.location_id AND c.state = 'IN_STOCK'").fetchall()
    assert q and all(r[0] for r in q)


FRESH_EXPORT = "SELECT * FROM squaresync._item_library_rows((SELECT merchant_id FROM squaresync.connection))"


def outside(export, touched):
    return {r for r in export if r[1] not in touched}


def export_scope(cluster, log_from, run):
    """How _after_run brought the export up to date for a run, from its DEBUG line: 'full' or the
    number of variations recomputed; None when it had nothing to do."""
    found = re.findall(r"squaresync: run %d: item library export recomputed (in full|for (\d+) variations)" % run,
                       cluster.log_text()[log_from:])
    assert len(found) <= 1, found
    return None if not found else ("full" if found[0][0] == "in full" else int(found[0][1]))


@pytest.fixture
def debug_log(db):
    """The workers of the test database log at DEBUG1 (where _after_run says what it recomputed)."""
    db.execute("ALTER DATABASE postgres SET log_min_messages = debug1")
    yield
    db.execute("ALTER DATABASE postgres RESET log_min_messages")


def test_an_incremental_run_recomputes_the_export_rows_of_the_variations_it_touched(db, fake, cluster, debug_log):
    db.execute("SELECT squaresync.foundation()")
    m = db.execute("SELECT merchant_id FROM squaresync.connection").fetchone()[0]
    days = [
        {"catalog_items": {"update": 1}},
        {"catalog_variations": {"update": 1, "create": 1, "delete": 1}},
        {"inventory_counts": {"update": 3, "create": 2}},
        {"catalog_items": {"create": 1, "delete": 1}},
        {"catalog_categories": {"update": 1}},
        {"catalog_categories": {"create": 1, "delete": 1}},
        {"vendors": {"update": 1, "create": 1}},
        {"catalog_variations": {"delete": 2}},
        {"orders": {"update": 2}},
        {"catalog_items": {"update": 1}, "catalog_variations": {"update": 1}, "inventory_counts": {"update": 2}},
    ]
    scopes = []
    for spec in days:
        before = export_rows(db)
        changed = fake.mutate(spec)
        log_from = len(cluster.log_text())
        run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
        after = export_rows(db)
        assert after == rows(db, FRESH_EXPORT), spec
        touched = set(db.execute("SELECT squaresync._export_variations(%s, %s)", (run, m)).fetchone()[0])
        # Sound: the run changed no export row outside the variations it touched ...
        assert outside(after, touched) == outside(before, touched), spec
        # ... and those include every variation the fake changed, and those of the items it changed.
        want = set(changed["catalog_variations"]["updated"] + changed["catalog_variations"]["created"]
                   + changed["catalog_variations"]["deleted"])
        want |= {k.split(":")[0] for k in changed["inventory_counts"]["updated"] + changed["inventory_counts"]["created"]}
        items = changed["catalog_items"]["updated"] + changed["catalog_items"]["deleted"]
        want |= {r[0] for r in db.execute("SELECT id FROM square.catalog_variations WHERE item_id = ANY (%s)",
                                          (items,)).fetchall()}
        assert want <= touched, (spec, want - touched)
        n_var = db.execute("SELECT count(*) FROM square.catalog_variations").fetchone()[0]
        scope = export_scope(cluster, log_from, run)
        if not touched:
            assert scope is None, (spec, scope)  # nothing to recompute
        elif 4 * len(touched) <= n_var:
            assert scope == len(touched), (spec, scope, len(touched))
        else:
            assert scope == "full", (spec, scope, len(touched), n_var)  # most of the library: all of it
        scopes.append(scope)
    assert sum(isinstance(s, int) for s in scopes) >= 4, scopes


def test_after_a_run_that_left_the_export_behind_the_next_run_recomputes_all_of_it(db, fake, cluster, debug_log):
    db.execute("SELECT squaresync.foundation()")
    # The export's rebuild fails (a lock held on it outlasts squaresync.lock_timeout): the catalog
    # side is applied, the export is not, and the run is partial.
    fake.mutate({"catalog_items": {"update": 2}, "inventory_counts": {"update": 2}})
    from test_faults import incremental_under_lock
    incremental_under_lock(db, cluster, "LOCK TABLE square.square_item_library_export IN SHARE MODE")
    run, status, error, derived = db.execute("SELECT id, status, error, derived_at FROM squaresync.sync_runs"
                                             " ORDER BY id DESC LIMIT 1").fetchone()
    assert status == "partial" and "item library export was not rebuilt" in error and derived is None, error
    assert export_rows(db) != rows(db, FRESH_EXPORT)
    # The next run touches one other variation, yet brings all of the export up to date.
    fake.mutate({"inventory_counts": {"update": 1}})
    log_from = len(cluster.log_text())
    nxt = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert export_scope(cluster, log_from, nxt) == "full"
    assert export_rows(db) == rows(db, FRESH_EXPORT)
    # And the run after that one recomputes only what it touched again.
    fake.mutate({"inventory_counts": {"update": 1}})
    log_from = len(cluster.log_text())
    third = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert export_scope(cluster, log_from, third) == 1
    assert export_rows(db) == rows(db, FRESH_EXPORT)


def test_inventory_history_records_exactly_the_counts_that_changed(db, fake):
    f = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    n_counts = db.execute("SELECT count(*) FROM square.catalog_inventory").fetchone()[0]
    assert db.execute("SELECT count(*) FROM square.inventory_counts WHERE run_id = %s", (f,)).fetchone()[0] == n_counts

    changed = fake.mutate({"inventory_counts": {"update": 6, "create": 3}, "orders": {"create": 1}})
    want = set(changed["inventory_counts"]["updated"]) | set(changed["inventory_counts"]["created"])
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    hist = db.execute("SELECT h.catalog_object_id || ':' || h.location_id || ':' || h.state,"
                      " h.quantity = c.quantity AND h.calculated_at = c.calculated_at, h.previous_quantity IS NULL"
                      " FROM square.inventory_counts h JOIN square.catalog_inventory c USING"
                      " (merchant_id, catalog_object_id, location_id, state) WHERE h.run_id = %s", (inc,)).fetchall()
    assert {h[0] for h in hist} == want
    assert all(h[1] for h in hist)
    assert {h[0] for h in hist if h[2]} == set(changed["inventory_counts"]["created"])
    # Nothing changed: nothing appended.
    again = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert db.execute("SELECT count(*) FROM square.inventory_counts WHERE run_id = %s", (again,)).fetchone()[0] == 0
    # Rolled back with its run.
    db.execute("SELECT squaresync.rollback(%s, 'test')", (inc,))
    assert db.execute("SELECT count(*) FROM square.inventory_counts WHERE run_id = %s", (inc,)).fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM square.inventory_counts").fetchone()[0] == n_counts


def test_operating_seasons_survive_syncs_and_rollbacks(db, fake):
    loc = fake._call("GET", "/__fake__/info")["main_location_id"]
    m = fake._call("GET", "/__fake__/info")["merchant_id"]
    db.execute("INSERT INTO square.operating_seasons (merchant_id, location_id, name, starts_on, ends_on, notes)"
               " VALUES (%s, %s, 'Summer', '2025-06-01', '2025-08-31', 'patio open'),"
               "        (%s, NULL, 'Holidays', '2025-12-01', '2025-12-31', NULL)", (m, loc, m))
    seasons = rows(db, "SELECT * FROM square.operating_seasons")
    f = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    fake.mutate({"orders": {"create": 2}, "catalog_items": {"update": 1}})
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    db.execute("SELECT squaresync.rollback(%s, 'test')", (inc,))
    db.execute("SELECT squaresync.rollback(%s, 'test')", (f,))
    db.execute("SELECT squaresync.foundation()")
    db.execute("SELECT squaresync.rebuild_derived()")
    assert rows(db, "SELECT * FROM square.operating_seasons") == seasons
    assert not db.execute("SELECT count(*) FROM squaresync.changes WHERE table_name = 'operating_seasons'").fetchone()[0]
    # pg_dump keeps the rows of the seller's and the historical tables.
    dumped = {r[0] for r in db.execute(
        "SELECT c.relname FROM pg_extension e, unnest(e.extconfig) o JOIN pg_class c ON c.oid = o"
        " WHERE e.extname = 'squaresync'").fetchall()}
    assert {"operating_seasons", "operating_seasons_id_seq", "inventory_counts"} <= dumped
