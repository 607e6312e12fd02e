"""test_sync.py: the sync engine end to end (issue 4): foundation equals the fake's truth, an
incremental after a seller's day makes the tables equal again and reports exactly what changed,
an incremental with nothing changed writes nothing, orders read again unchanged are not staged,
the catalog side applied by an apply worker meanwhile, more than 10 locations, late offline orders,
line items an order lost deleted (and restored by a rollback)."""
import json

import psycopg
import pytest

from fakesquare import FakeSquare, assert_matches_fake

XMIN_TABLES = ["locations", "catalog_items", "catalog_variations", "catalog_inventory", "orders",
               "order_line_items", "tenders", "payments", "payment_refunds", "transactions",
               "catalog_location_availability", "catalog_vendor_info", "vendors"]


def run_row(con, run_id):
    cur = con.execute("SELECT status, tables, rows_inserted, rows_updated, rows_deleted, rows_unchanged, error"
                      " FROM squaresync.sync_runs WHERE id = %s", (run_id,))
    status, tables, ins, upd, dele, unch, err = cur.fetchone()
    return {"status": status, "tables": tables, "inserted": ins, "updated": upd, "deleted": dele,
            "unchanged": unch, "error": err}


def row_versions(con):
    """Every row's physical version (xmin): unchanged rows were not written."""
    out = {}
    for t in XMIN_TABLES:
        out[t] = dict(con.execute(f"SELECT ctid::text || xmin::text, synced_at FROM square.{t}").fetchall())
    return out


def test_foundation_equals_fake(db, fake):
    run = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    r = run_row(db, run)
    assert r["status"] == "succeeded", r
    snap = assert_matches_fake(db, fake)
    # Every table was filled, and the counters say how many rows were inserted, table by table.
    for table, spec in snap["tables"].items():
        assert len(spec["rows"]) > 0, f"the fake's {table} is empty: the test proves nothing for it"
        assert r["tables"][table]["inserted"] == len(spec["rows"]), table
    assert r["updated"] == 0 and r["deleted"] == 0
    # The orders' raw JSON is stored compressed with lz4 where the server has it (pglz otherwise).
    lz4 = db.execute("SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'").fetchone()
    if lz4 is not None:  # PostgreSQL 14+: column compression methods
        methods = {m for (m,) in db.execute("SELECT DISTINCT pg_column_compression(raw) FROM square.orders"
                                            " WHERE pg_column_compression(raw) IS NOT NULL")}
        assert methods == {"lz4" if lz4[0] else "pglz"}, methods


def upkeep(con):
    """The square tables' indexes and foreign keys: {name: (definition, oid)}, {name: (definition, validated, oid)}."""
    idx = con.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indexrelid::int FROM pg_index i"
                      " JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = 'square'::regnamespace").fetchall()
    fks = con.execute("SELECT conname, pg_get_constraintdef(oid), convalidated, oid::int FROM pg_constraint"
                      " WHERE connamespace = 'square'::regnamespace AND contype = 'f'").fetchall()
    return {n: (d, o) for n, d, o in idx}, {n: (d, v, o) for n, d, v, o in fks}


def definitions(up):
    idx, fks = up
    return {n: d for n, (d, _) in idx.items()}, {n: (d, v) for n, (d, v, _) in fks.items()}


def test_a_first_foundation_makes_the_indexes_and_foreign_keys_again_after_the_rows(db, fake):
    """Into empty tables a foundation drops their secondary indexes and the foreign keys among them
    and makes them again once the rows are in: the same definitions, validated, new objects."""
    before = upkeep(db)
    run = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    assert run_row(db, run)["status"] == "succeeded"
    after = upkeep(db)
    assert definitions(after) == definitions(before)
    assert all(v for _, v in definitions(after)[1].values())
    idx_b, fk_b = before
    idx_a, fk_a = after
    remade = {"orders_merchant_id_updated_at_idx", "order_line_items_merchant_id_catalog_object_id_idx",
              "catalog_variations_merchant_id_item_id_idx"}
    for name in remade:
        assert idx_a[name][1] != idx_b[name][1], f"{name} was not made again"
    for name in ("orders_pkey", "order_line_items_pkey", "catalog_items_pkey"):
        assert idx_a[name][1] == idx_b[name][1], f"{name}: a primary key is never dropped"
    for name in ("order_line_items_merchant_id_order_id_fkey", "catalog_variations_merchant_id_item_id_fkey"):
        assert fk_a[name][2] != fk_b[name][2], f"{name} was not made again"
    # The indexes work: the planner uses the made-again index for a lookup by catalog object.
    db.execute("SET enable_seqscan = off")
    plan = "\n".join(r[0] for r in db.execute(
        "EXPLAIN SELECT * FROM square.order_line_items WHERE merchant_id = 'x' AND catalog_object_id = 'y'"))
    db.execute("RESET enable_seqscan")
    assert "order_line_items_merchant_id_catalog_object_id_idx" in plan, plan
    assert_matches_fake(db, fake)


def test_a_foundation_into_tables_a_reader_holds_loads_them_row_by_row(db, fake, cluster):
    """The exclusive lock is only taken when free at once: a reader's open transaction on orders
    makes the orders' stream load row by row (its indexes untouched), and the run succeeds."""
    before = upkeep(db)
    reader = cluster.connect(autocommit=False)
    reader.execute("SELECT count(*) FROM square.orders")  # holds ACCESS SHARE until it ends
    try:
        run = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    finally:
        reader.rollback()
        reader.close()
    assert run_row(db, run)["status"] == "succeeded"
    idx_b, fk_b = before
    idx_a, fk_a = upkeep(db)
    assert idx_a["orders_merchant_id_updated_at_idx"][1] == idx_b["orders_merchant_id_updated_at_idx"][1]
    assert fk_a["order_line_items_merchant_id_order_id_fkey"][2] == fk_b["order_line_items_merchant_id_order_id_fkey"][2]
    # The catalog's tables were free: those were made again.
    assert idx_a["catalog_variations_merchant_id_item_id_idx"][1] != idx_b["catalog_variations_merchant_id_item_id_idx"][1]
    assert_matches_fake(db, fake)


def test_a_first_load_that_breaks_a_foreign_key_fails_and_leaves_the_tables_as_they_were(db, fake):
    """The foreign keys a first load makes again after its rows are validated, not taken on trust:
    a catalog apply into emptied tables whose variations lack their items fails in _apply_stream
    with the key's name. (_apply_stream is called directly, in a transaction of the test's, because
    no fake catalog can send such variations; a worker's apply transaction ends the same way, and a
    failed apply's recording is shown by test_faults.py's lock-timeout test.) The aborted transaction
    takes the dropped indexes and keys back with it: PostgreSQL's DDL is transactional."""
    db.execute("SELECT squaresync.foundation()")
    merchant = db.execute("SELECT merchant_id FROM squaresync.connection").fetchone()[0]
    before = upkeep(db)
    with pytest.raises(Exception, match="catalog_variations_merchant_id_item_id_fkey"):
        with db.transaction():
            db.execute("INSERT INTO squaresync.stage_catalog_variations"
                       " SELECT v.*, 1, row_number() OVER () FROM square.catalog_variations v")
            for t in ("catalog_location_availability", "catalog_vendor_info", "catalog_variations",
                      "catalog_items", "catalog_categories", "square_item_library_export"):
                db.execute(f"DELETE FROM square.{t}")
            db.execute("SELECT squaresync._apply_stream(0, %s, 'catalog', true, NULL)", (merchant,))
    assert upkeep(db) == before
    assert db.execute("SELECT count(*) FROM square.catalog_variations").fetchone()[0] > 0


def test_a_foundation_tombstones_or_deletes_what_square_no_longer_has(db, fake):
    """A full read reconciles (schema.md, *Deletes*): catalog objects Square no longer returns at all
    (purged: no tombstone was ever sent) become tombstones, with deleted_at set, audited as deletes
    with an after image; a row of another table that Square no longer returns (a payment) is deleted
    and audited with its old row; no other row is written."""
    db.execute("SELECT squaresync.foundation()")
    db.execute("CREATE TEMP TABLE lost AS SELECT * FROM square.payments ORDER BY id LIMIT 1")
    db.execute("UPDATE lost SET id = 'LOST_PAYMENT', raw = jsonb_set(raw, '{id}', '\"LOST_PAYMENT\"')")
    db.execute("INSERT INTO square.payments SELECT * FROM lost")
    purged = fake.mutate({"purge_items": 2})
    items, variations = purged["catalog_items"]["purged"], purged["catalog_variations"]["purged"]
    infos = [r[0] for r in db.execute("SELECT id FROM square.catalog_vendor_info WHERE variation_id = ANY(%s)",
                                      (variations,))]
    before = row_versions(db)
    run = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    assert run_row(db, run)["status"] == "succeeded"

    def audited(table, op):
        return {r[0] for r in db.execute("SELECT pk ->> 'id' FROM squaresync.changes WHERE run_id = %s"
                                         " AND table_name = %s AND op = %s AND after IS NOT NULL",
                                         (run, table, op))} if op == "delete" else set()

    for table, ids in (("catalog_items", items), ("catalog_variations", variations), ("catalog_vendor_info", infos)):
        rows = db.execute(f"SELECT id, is_deleted, deleted_at IS NOT NULL FROM square.{table} WHERE id = ANY(%s)",
                          (ids,)).fetchall()
        assert sorted(r[0] for r in rows) == sorted(ids) and all(r[1] and r[2] for r in rows), (table, rows)
        assert audited(table, "delete") == set(ids), table
    assert not db.execute("SELECT 1 FROM square.payments WHERE id = 'LOST_PAYMENT'").fetchone()
    gone = db.execute("SELECT op, before ->> 'id', after FROM squaresync.changes WHERE run_id = %s"
                      " AND table_name = 'payments'", (run,)).fetchall()
    assert gone == [("delete", "LOST_PAYMENT", None)], gone
    # Nothing else was written (the availability of the purged variations follows them: not compared).
    after = row_versions(db)
    touched = {"catalog_items": set(items), "catalog_variations": set(variations), "catalog_vendor_info": set(infos)}
    for t in XMIN_TABLES:
        if t in ("catalog_location_availability", "payments") or t in touched:
            continue
        assert after[t] == before[t], f"{t}: rows rewritten by a foundation that changed nothing there"
    # The rest matches Square (the fake keeps no trace of what it purged; the tombstones stay here).
    assert_matches_fake(db, fake, [t for t in fake.snapshot()["tables"] if t not in touched])


def test_a_stored_row_without_its_guard_value_is_still_updated(db, fake):
    """A NULL guard value (here an order's updated_at) on the stored side does not block the write."""
    db.execute("SELECT squaresync.foundation()")
    changed = fake.mutate({"orders": {"update": 3}})["orders"]["updated"]
    db.execute("UPDATE square.orders SET updated_at = NULL WHERE id = ANY(%s)", (changed,))
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert run_row(db, run)["status"] == "succeeded"
    assert db.execute("SELECT count(*) FROM square.orders WHERE id = ANY(%s) AND updated_at IS NULL",
                      (changed,)).fetchone()[0] == 0, "a changed order was not written over a NULL updated_at"
    assert_matches_fake(db, fake)


def stage_copy(con, order_id, batch, age, bump):
    """Stages a copy of a stored order as page `batch`: its updated_at `age` older, its line items'
    quantities `bump` higher and its last line item missing."""
    con.execute("INSERT INTO squaresync.stage_orders SELECT o.*, %s, 1 FROM square.orders o WHERE o.id = %s",
                (batch, order_id))
    con.execute("UPDATE squaresync.stage_orders SET updated_at = updated_at - %s::interval, version = version - 1"
                " WHERE id = %s AND _batch = %s", (age, order_id, batch))
    con.execute("INSERT INTO squaresync.stage_order_line_items SELECT li.*, %s, row_number() OVER ()"
                " FROM square.order_line_items li WHERE li.order_id = %s", (batch, order_id))
    con.execute("UPDATE squaresync.stage_order_line_items SET quantity = quantity + %s"
                " WHERE order_id = %s AND _batch = %s", (bump, order_id, batch))
    con.execute("DELETE FROM squaresync.stage_order_line_items WHERE order_id = %s AND _batch = %s"
                " AND uid = (SELECT max(uid) FROM square.order_line_items WHERE order_id = %s)",
                (order_id, batch, order_id))


def test_an_orders_parts_follow_the_copy_of_the_order_that_was_chosen(db, fake):
    """Staged copies of one order (_apply_stream called directly, in a transaction of the test's: no
    fake sends stale copies): its parts come from the copy the guard chose, never from another; and a
    copy older than the stored order leaves the order and its parts alone."""
    db.execute("SELECT squaresync.foundation()")
    merchant = db.execute("SELECT merchant_id FROM squaresync.connection").fetchone()[0]
    oid = db.execute("SELECT order_id FROM square.order_line_items GROUP BY order_id HAVING count(*) >= 2"
                     " ORDER BY order_id LIMIT 1").fetchone()[0]
    parts = "SELECT uid, quantity FROM square.order_line_items WHERE order_id = %s ORDER BY uid"
    stored = db.execute(parts, (oid,)).fetchall()

    class Undo(Exception):
        pass

    def apply():
        db.execute("SELECT squaresync._apply_stream(%s, %s, 'orders', false, NULL)",
                   (db.execute("SELECT max(id) FROM squaresync.sync_runs").fetchone()[0], merchant))

    # Page 1: the order as stored, its parts +1; page 2, later: an older copy, its parts +5. The
    # order of page 1 is chosen (newer), and so are its parts.
    with pytest.raises(Undo):
        with db.transaction():
            stage_copy(db, oid, 1, "0 seconds", 1)
            stage_copy(db, oid, 2, "1 hour", 5)
            apply()
            got = db.execute(parts, (oid,)).fetchall()
            assert got == [(u, q + 1) for u, q in stored[:-1]], (stored, got)
            raise Undo
    # Only an older copy: the order is left alone, and so are its parts.
    with pytest.raises(Undo):
        with db.transaction():
            stage_copy(db, oid, 1, "1 hour", 5)
            apply()
            assert db.execute(parts, (oid,)).fetchall() == stored
            raise Undo


def test_incremental_with_nothing_changed_writes_nothing(db, fake):
    db.execute("SELECT squaresync.foundation()")
    before = row_versions(db)
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    r = run_row(db, run)
    assert r["status"] == "succeeded", r
    assert (r["inserted"], r["updated"], r["deleted"]) == (0, 0, 0), r
    assert row_versions(db) == before, "an incremental run with no change rewrote rows"
    assert_matches_fake(db, fake)


def test_incremental_after_a_sellers_day_reports_exactly_what_changed(db, fake):
    db.execute("SELECT squaresync.foundation()")
    changed = fake.mutate({
        "catalog_items": {"update": 3, "create": 2, "delete": 2},
        "catalog_variations": {"update": 4},
        "catalog_categories": {"update": 1, "create": 1},
        "inventory_counts": {"update": 6},
        "vendors": {"update": 1, "create": 1},
        "orders": {"update": 5, "create": 4},
        "payments": {"update": 2},
        "refunds": {"update": 1},
    })
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    r = run_row(db, run)
    assert r["status"] == "succeeded", r
    assert_matches_fake(db, fake)
    table_of = {"catalog_items": "catalog_items", "catalog_variations": "catalog_variations",
                "catalog_categories": "catalog_categories", "inventory_counts": "catalog_inventory",
                "vendors": "vendors", "orders": "orders", "payments": "payments", "refunds": "payment_refunds"}
    for kind, table in table_of.items():
        want = changed.get(kind, {})
        got = r["tables"].get(table, {"inserted": 0, "updated": 0, "deleted": 0})
        assert got["inserted"] == len(set(want.get("created", []))), (kind, got, want)
        assert got["updated"] == len(set(want.get("updated", [])) - set(want.get("created", []))
                                     - set(want.get("deleted", []))), (kind, got, want)
        assert got["deleted"] == len(set(want.get("deleted", []))), (kind, got, want)


def test_orders_read_again_unchanged_are_not_staged(db, fake):
    """The orders overlap re-reads recent orders every run: those stored at the version Square sent
    are dropped before staging, with their parts; a changed order is staged whole."""
    db.execute("SELECT squaresync.foundation()")
    overlap = db.execute("SELECT count(*) FROM square.orders WHERE updated_at > "
                         "(SELECT max(updated_at) FROM square.orders) - interval '72 hours'").fetchone()[0]
    assert overlap > 0, "no order inside the overlap: the test proves nothing"
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    pages, staged = db.execute("SELECT pages, rows_staged FROM squaresync.sync_run_streams"
                               " WHERE run_id = %s AND stream = 'orders'", (run,)).fetchone()
    assert pages > 0 and staged == 0, (pages, staged)

    changed = fake.mutate({"orders": {"update": 2}})
    ids = sorted(set(changed["orders"]["updated"]))
    assert len(ids) == 2
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert run_row(db, run)["status"] == "succeeded"
    staged = db.execute("SELECT rows_staged FROM squaresync.sync_run_streams"
                        " WHERE run_id = %s AND stream = 'orders'", (run,)).fetchone()[0]
    parts = db.execute("SELECT (SELECT count(*) FROM square.orders WHERE id = ANY(%(i)s))"
                       " + (SELECT count(*) FROM square.order_line_items WHERE order_id = ANY(%(i)s))"
                       " + (SELECT count(*) FROM square.order_fulfillments WHERE order_id = ANY(%(i)s))"
                       " + (SELECT count(*) FROM square.order_refunds WHERE order_id = ANY(%(i)s))"
                       " + (SELECT count(*) FROM square.order_returns WHERE order_id = ANY(%(i)s))"
                       " + (SELECT count(*) FROM square.tenders WHERE order_id = ANY(%(i)s))",
                       {"i": ids}).fetchone()[0]
    assert staged == parts, (staged, parts)
    assert_matches_fake(db, fake)


def test_an_orders_dropped_line_items_are_deleted_and_its_other_parts_left_unwritten(db, fake):
    """Square's UpdateOrder can clear line items of an OPEN order: the re-read order no longer lists
    them. The incremental deletes exactly those (audited with their stored image), writes none of the
    order's other parts, and a rollback of the run brings them back as they were."""
    db.execute("SELECT squaresync.foundation()")
    changed = fake.mutate({"drop_line_items": 3})
    dropped = sorted(tuple(x) for x in changed["orders"]["line_items_dropped"])
    orders = sorted({o for o, _ in dropped})
    assert len(dropped) == 3 and len(orders) == 3, changed["orders"]

    def parts():
        return {(r[0], r[1]): (r[2], r[3]) for r in db.execute(
            "SELECT order_id, uid, to_jsonb(l), xmin::text FROM square.order_line_items l"
            " WHERE merchant_id = (SELECT merchant_id FROM squaresync.connection) AND order_id = ANY (%s)",
            (orders,))}

    before = parts()
    assert set(dropped) <= set(before) and len(before) > len(dropped), (dropped, sorted(before))
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    r = run_row(db, run)
    assert r["status"] == "succeeded", r
    assert_matches_fake(db, fake)
    after = parts()
    assert set(after) == set(before) - set(dropped)
    # The order's other line items were compared, not written.
    assert all(after[k][1] == before[k][1] for k in after), "an unchanged line item was rewritten"
    assert r["tables"]["order_line_items"] == {"inserted": 0, "updated": 0, "deleted": 3,
                                               "unchanged": len(before) - 3}, r["tables"]["order_line_items"]
    audited = {(p["order_id"], p["uid"]): b for p, b in db.execute(
        "SELECT pk, before FROM squaresync.changes WHERE run_id = %s AND table_name = 'order_line_items'"
        " AND op = 'delete'", (run,))}
    assert audited == {k: before[k][0] for k in dropped}

    db.execute("SELECT squaresync.rollback(%s, 'undo the day')", (run,))
    assert {k: v[0] for k, v in parts().items()} == {k: v[0] for k, v in before.items()}


def test_item_presence_changes_reach_the_availability_of_its_variations(db, fake):
    """An incremental catalog recomputes the availability of the variations it changed and of the
    items it changed, and nothing else: the result still equals the fake's, row for row."""
    db.execute("SELECT squaresync.foundation()")
    changed = fake.mutate({"catalog_items": {"update": 0.6}})
    assert len(changed["catalog_items"]["updated"]) >= 5
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    r = run_row(db, run)
    assert r["status"] == "succeeded", r
    avail = r["tables"].get("catalog_location_availability", {"inserted": 0, "updated": 0, "unchanged": 0})
    assert avail["updated"] > 0, ("no item changed its locations: the test proves nothing", avail)
    # Only the changed items' variations were recomputed: the others were not even compared.
    n_vars = db.execute("SELECT count(*) FROM square.catalog_variations WHERE item_id = ANY(%s) AND NOT is_deleted",
                        (changed["catalog_items"]["updated"],)).fetchone()[0]
    n_locs = db.execute("SELECT count(*) FROM square.locations").fetchone()[0]
    assert avail["updated"] + avail["unchanged"] + avail["inserted"] <= n_vars * n_locs, avail
    assert_matches_fake(db, fake)


def test_more_than_ten_locations(cluster):
    fake = FakeSquare(scale=0.01, locations=12).start()
    try:
        con = cluster.connect()
        con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
        con.execute("CREATE EXTENSION squaresync")
        con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        run = con.execute("SELECT squaresync.foundation()").fetchone()[0]
        assert run_row(con, run)["status"] == "succeeded"
        snap = assert_matches_fake(con, fake)
        assert len(snap["tables"]["locations"]["rows"]) == 12
        # Orders of all 12 locations arrived (SearchOrders takes at most 10 location ids a request).
        assert con.execute("SELECT count(DISTINCT location_id) FROM square.orders").fetchone()[0] == 12
        con.close()
    finally:
        fake.stop()


def test_late_offline_orders_inside_the_overlap_are_caught(db, fake):
    db.execute("SELECT squaresync.foundation()")
    changed = fake.mutate({"late_orders": 3})
    late = set(changed["orders"]["created"])
    assert len(late) == 3
    run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert run_row(db, run)["tables"]["orders"]["inserted"] == 3
    got = {r[0] for r in db.execute("SELECT id FROM square.orders WHERE id = ANY(%s)", (list(late),)).fetchall()}
    assert got == late
    assert_matches_fake(db, fake)


def _export(c):
    return sorted(map(str, c.execute("SELECT * FROM square.square_item_library_export").fetchall()))


def _fresh_export(c):
    return sorted(map(str, c.execute("SELECT * FROM squaresync._item_library_rows("
                                     "(SELECT merchant_id FROM squaresync.connection))").fetchall()))


def test_the_catalog_side_applies_in_an_apply_worker_while_the_sales_side_applies(db, fake, cluster):
    from test_ops import wait_for
    db.execute("SELECT squaresync.foundation()")
    fake.mutate({"orders": {"update": 5}, "catalog_items": {"update": 2}, "inventory_counts": {"update": 4}})
    export_before = _export(db)
    holder = cluster.connect(autocommit=False)
    holder.execute("LOCK TABLE square.catalog_items IN ACCESS EXCLUSIVE MODE")
    try:
        run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        # The catalog (first of the catalog side) waits for the lock inside its apply, in a process
        # of its own ...
        applier = wait_for(lambda: db.execute(
            "SELECT pid, usename FROM pg_stat_activity WHERE backend_type = 'squaresync apply'"
            " AND wait_event_type = 'Lock' AND query = 'squaresync: applying catalog'").fetchone(),
            60, "the apply worker to wait inside the catalog apply")
        # ... while the sync worker fetches and applies the sales side, then waits for it.
        wait_for(lambda: db.execute("SELECT query = 'squaresync: waiting for the apply worker'"
                                    " FROM pg_stat_activity WHERE backend_type = 'squaresync sync'").fetchone()[0],
                 60, "the sync worker to wait for the apply worker")
        status = dict(db.execute("SELECT stream, status FROM squaresync.sync_run_streams WHERE run_id = %s",
                                 (run,)).fetchall())
        assert {s: status[s] for s in ("catalog", "inventory", "vendors")} == dict.fromkeys(
            ("catalog", "inventory", "vendors"), "running"), status
        assert {s: status[s] for s in ("locations", "orders", "payments", "refunds", "transactions")} == dict.fromkeys(
            ("locations", "orders", "payments", "refunds", "transactions"), "succeeded"), status
        assert _export(db) == export_before  # rebuilt after the catalog side, not before
        worker = db.execute("SELECT usename FROM pg_stat_activity WHERE backend_type = 'squaresync sync'").fetchone()
        assert applier[0] and applier[1] == worker[0]  # as the same role
    finally:
        holder.rollback()
        holder.close()
    assert db.execute("SELECT squaresync.incremental()").fetchone()[0] == run  # joins it, waits for it
    assert run_row(db, run)["status"] == "succeeded"
    # The apply worker rebuilt the export once the catalog side was applied.
    assert _export(db) != export_before and _export(db) == _fresh_export(db)
    assert db.execute("SELECT derived_at IS NOT NULL FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0]
    assert_matches_fake(db, fake)


def test_the_catalog_side_and_the_export_are_applied_while_the_orders_are_still_being_fetched(db, fake, cluster):
    from test_ops import wait_for
    db.execute("SELECT squaresync.foundation()")
    fake.mutate({"orders": {"update": 5}, "catalog_items": {"update": 2}, "inventory_counts": {"update": 4}})
    export_before = _export(db)
    # One orders page comes 8 s late: the sales side's fetch cannot end before it.
    fake.fault(fault="delay", path="/v2/orders/search", count=1, delay_ms=8000)
    run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
    wait_for(lambda: db.execute(
        "SELECT r.derived_at IS NOT NULL AND (SELECT bool_and(status = 'succeeded') FROM squaresync.sync_run_streams s"
        " WHERE s.run_id = r.id AND s.stream IN ('catalog', 'inventory', 'vendors'))"
        " FROM squaresync.sync_runs r WHERE r.id = %s", (run,)).fetchone()[0],
        60, "the catalog side to be applied and the export rebuilt")
    # Meanwhile the orders are not even fetched: the sync worker is still waiting for Square.
    orders = db.execute("SELECT status, applied_at FROM squaresync.sync_run_streams WHERE run_id = %s"
                        " AND stream = 'orders'", (run,)).fetchone()
    assert orders == ("running", None), orders
    assert _export(db) != export_before and _export(db) == _fresh_export(db)
    assert db.execute("SELECT squaresync.incremental()").fetchone()[0] == run
    assert run_row(db, run)["status"] == "succeeded"
    later = db.execute("SELECT r.derived_at < s.applied_at FROM squaresync.sync_runs r JOIN squaresync.sync_run_streams s"
                       " ON s.run_id = r.id AND s.stream = 'orders' WHERE r.id = %s", (run,)).fetchone()[0]
    assert later
    assert_matches_fake(db, fake)


def test_concurrent_calls_start_one_run(db, fake, cluster):
    from test_ops import concurrent_calls
    ids, errors = concurrent_calls(cluster, db, "SELECT squaresync.foundation()", 4)
    assert not errors and len(ids) == 4 and len(set(ids)) == 1, (ids, errors)
    assert db.execute("SELECT count(*) FROM squaresync.sync_runs").fetchone()[0] == 1


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_a_database_whose_default_isolation_is_stricter_syncs_as_in_read_committed(db, fake, cluster, level):
    """With the database's default_transaction_isolation at REPEATABLE READ or SERIALIZABLE, the
    calls (in a transaction of that level) start and wait for their runs, and the sync and apply
    workers, which update the same run's rows side by side, keep to READ COMMITTED: a foundation and
    days of changes all succeed. (Before, the workers failed the orders with serialization errors.)"""
    admin = cluster.connect()
    admin.execute(f"ALTER DATABASE postgres SET default_transaction_isolation = '{level}'")
    try:
        con = cluster.connect()
        assert con.execute("SHOW transaction_isolation").fetchone()[0] == level
        runs = [con.execute("SELECT squaresync.foundation()").fetchone()[0]]
        for _ in range(3):
            fake.mutate({"orders": {"update": 20, "create": 5}, "catalog_items": {"update": 5},
                         "inventory_counts": {"update": 10}})
            runs.append(con.execute("SELECT squaresync.incremental()").fetchone()[0])
        con.close()
    finally:
        admin.execute("ALTER DATABASE postgres RESET default_transaction_isolation")
        admin.close()
    statuses = db.execute("SELECT status FROM squaresync.sync_runs WHERE id = ANY(%s) ORDER BY id", (runs,)).fetchall()
    assert [r[0] for r in statuses] == ["succeeded"] * 4, statuses
    assert_matches_fake(db, fake)


def test_a_foundation_asked_for_during_an_incremental_runs_after_it(db, fake, cluster):
    """An incremental call joins a run in progress of either kind; a foundation call does not join an
    incremental (it would not be a foundation: a daily pg_cron foundation firing while a 15-minute
    incremental runs). With wait => false it is refused, saying why; with wait => true it waits for
    the incremental to end, then runs its own foundation."""
    db.execute("SELECT squaresync.foundation()")
    other = cluster.connect()
    fake.fault(latency_ms=300)
    try:
        inc = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        with pytest.raises(psycopg.errors.ObjectInUse) as e:
            other.execute("SELECT squaresync.foundation(wait => false)")
        assert f"squaresync incremental run {inc} is in progress; a foundation does not join it" in str(e.value)
        assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (inc,)).fetchone()[0] == "running"
        f = other.execute("SELECT squaresync.foundation()").fetchone()[0]
        # And an incremental asked for while that foundation runs joins it.
        f2 = other.execute("SELECT squaresync.foundation(wait => false)").fetchone()[0]
        assert db.execute("SELECT squaresync.incremental()").fetchone()[0] == f2
    finally:
        fake.clear_faults()
        other.close()
    runs = {r[0]: r[1:] for r in db.execute(
        "SELECT id, kind, status, started_at, finished_at FROM squaresync.sync_runs WHERE id >= %s", (inc,)).fetchall()}
    assert sorted(runs) == [inc, f, f2], runs
    assert runs[inc][:2] == ("incremental", "succeeded") and runs[f][:2] == ("foundation", "succeeded")
    assert runs[f][2] >= runs[inc][3], "the foundation started before the incremental ended"
    assert runs[f2][:2] == ("foundation", "succeeded")


def test_notify_and_state_after_a_run(db, fake, cluster):
    listener = cluster.connect()
    notes = []
    listener.add_notify_handler(notes.append)
    listener.execute("LISTEN squaresync")
    run = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    listener.execute("SELECT 1")  # delivers what arrived meanwhile to the handler
    assert notes, "no NOTIFY squaresync after the run"
    payload = json.loads(notes[0].payload)
    assert payload["id"] == run and payload["status"] == "succeeded"
    state = db.execute("SELECT table_name, last_status, last_run_id, watermark IS NOT NULL"
                       " FROM squaresync.sync_state").fetchall()
    assert all(s[1] == "succeeded" and s[2] == run for s in state), state
    listener.close()
