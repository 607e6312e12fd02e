"""test_audit.py: the audit trail end to end (issue 5): a run's rollback leaves every square table
exactly as before it and makes the next sync fetch the window again; cascade rolls back later runs
newest first; rollback refuses what it must with a clear message; diff reports what the fake
changed; pruning marks runs no longer roll-back-able; validate is all ok after a clean sync and
catches each kind of damage."""

import json

import psycopg
import pytest

from fakesquare import assert_matches_fake
from test_ops import wait_for

SELLERS_DAY = {
    "catalog_items": {"update": 3, "create": 2, "delete": 2},
    "catalog_variations": {"update": 4},
    "catalog_categories": {"update": 1, "create": 1},
    "inventory_counts": {"update": 6, "create": 2},
    "vendors": {"update": 1, "create": 1},
    "orders": {"update": 5, "create": 4},
    "payments": {"update": 2},
    "refunds": {"update": 1, "create": 1},
    "late_orders": 2,
}


def checksums(con):
    """One md5 per table of schema square (synced and derived), every column but synced_at."""
    out = {}
    tables = [r[0] for r in con.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'square' ORDER BY 1").fetchall()]
    for t in tables:
        cols = [r[0] for r in con.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
            " AND attname <> 'synced_at' ORDER BY attnum", (f"square.{t}",)).fetchall()]
        sel = ", ".join(f'"{c}"' for c in cols)
        out[t] = con.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))"
                             f" FROM (SELECT {sel} FROM square.{t}) x").fetchone()
    return out


def run(con, run_id):
    cur = con.execute("SELECT kind, status, reason, rollback_of, rolled_back_by FROM squaresync.sync_runs"
                      " WHERE id = %s", (run_id,))
    return dict(zip(("kind", "status", "reason", "rollback_of", "rolled_back_by"), cur.fetchone()))


def watermarks(con):
    return dict(con.execute("SELECT stream, watermark FROM squaresync.stream_state").fetchall())


def error_of(con, sql, params=()):
    with pytest.raises(psycopg.Error) as e:
        con.execute(sql, params)
    return e.value.diag.message_primary + " | " + (e.value.diag.message_hint or "")


def test_rollback_restores_every_table_and_the_next_sync_fetches_again(db, fake):
    db.execute("SELECT squaresync.foundation()")
    before = checksums(db)
    wm_before = watermarks(db)
    fake.mutate(SELLERS_DAY)
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    changed = checksums(db)
    assert changed != before
    assert watermarks(db) != wm_before

    rb = db.execute("SELECT squaresync.rollback(%s, 'bad import')", (inc,)).fetchone()[0]
    assert checksums(db) == before, {t: (before[t], v) for t, v in checksums(db).items() if before[t] != v}
    assert watermarks(db) == wm_before
    assert run(db, inc) == {"kind": "incremental", "status": "rolled_back", "reason": None,
                            "rollback_of": None, "rolled_back_by": rb}
    assert run(db, rb) == {"kind": "rollback", "status": "succeeded", "reason": "bad import",
                           "rollback_of": inc, "rolled_back_by": None}
    # The rollback is audited like a run: what it did is the mirror of what the run did.
    fwd = dict(db.execute("SELECT op, count(*) FROM squaresync.changes WHERE run_id = %s"
                          " AND (op <> 'delete' OR after IS NULL) GROUP BY op", (inc,)).fetchall())
    back = dict(db.execute("SELECT op, count(*) FROM squaresync.changes WHERE run_id = %s GROUP BY op",
                           (rb,)).fetchall())
    assert back.get("delete", 0) == fwd.get("insert", 0)
    assert back.get("insert", 0) == fwd.get("delete", 0)
    assert all(r[2] == "ok" for r in db.execute("SELECT * FROM squaresync.validate()").fetchall())

    # The watermarks went back: the next incremental fetches the window again.
    again = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert_matches_fake(db, fake)
    assert checksums(db)["orders"] == changed["orders"]
    assert db.execute("SELECT rows_inserted FROM squaresync.sync_runs WHERE id = %s", (again,)).fetchone()[0] > 0


def test_cascade_rolls_back_later_runs_newest_first(db, fake):
    db.execute("SELECT squaresync.foundation()")
    before = checksums(db)
    # Every vendor changes in both runs: the second run changes rows the first one changed.
    fake.mutate({"vendors": {"update": 100}, "orders": {"create": 2}})
    a = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    fake.mutate({"vendors": {"update": 100}, "catalog_items": {"update": 1}})
    b = db.execute("SELECT squaresync.incremental()").fetchone()[0]

    msg = error_of(db, "SELECT squaresync.rollback(%s, 'x')", (a,))
    assert f"run {a} cannot be rolled back: later runs changed the same rows, or rows a foreign key ties to them: {b}" in msg
    assert "cascade => true" in msg

    rb_a = db.execute("SELECT squaresync.rollback(%s, 'undo both', cascade => true)", (a,)).fetchone()[0]
    rb_b = run(db, b)["rolled_back_by"]
    assert rb_b is not None and rb_b < rb_a, "the later run must be rolled back first"
    assert run(db, rb_b)["rollback_of"] == b and run(db, rb_a)["rollback_of"] == a
    assert run(db, a)["status"] == "rolled_back" and run(db, b)["status"] == "rolled_back"
    assert checksums(db) == before


def test_a_later_run_tied_to_the_run_by_a_foreign_key_is_found(db, fake):
    """Run a inserts an item and its variations; after a store opens, run b derives their
    availability at the new location without changing any row a changed. Undoing a alone would
    delete variations b's rows name (the foreign key's error at commit, before): refused, naming b;
    cascade undoes both."""
    db.execute("SELECT squaresync.foundation()")
    before = checksums(db)
    fake.mutate({"catalog_items": {"create": 1}})
    a = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    new_loc = fake.mutate({"new_locations": 1})["locations"]["created"][0]
    b = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert not db.execute("SELECT EXISTS (SELECT FROM squaresync.changes c1 JOIN squaresync.changes c2"
                          " USING (table_name, pk) WHERE c1.run_id = %s AND c2.run_id = %s)", (a, b)).fetchone()[0]
    tied = db.execute("SELECT count(*) FROM square.catalog_location_availability av"
                      " JOIN squaresync.changes c ON c.run_id = %s AND c.table_name = 'catalog_variations'"
                      "  AND c.op = 'insert' AND c.pk ->> 'id' = av.variation_id"
                      " WHERE av.location_id = %s", (a, new_loc)).fetchone()[0]
    assert tied > 0

    msg = error_of(db, "SELECT squaresync.rollback(%s, 'x')", (a,))
    assert f"run {a} cannot be rolled back: later runs changed the same rows, or rows a foreign key ties to them: {b}" in msg
    db.execute("SELECT squaresync.rollback(%s, 'undo both', cascade => true)", (a,))
    assert run(db, a)["status"] == "rolled_back" and run(db, b)["status"] == "rolled_back"
    assert checksums(db) == before
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_a_rollback_gives_each_stream_back_its_last_standing_success(db, fake):
    """stream_state.last_success_run_id / last_success_at (sync_state's last sync) name the latest
    sync of the stream that still stands after a rollback, or nothing when none does."""
    def last_success():
        return dict((s, (r, at)) for s, r, at in db.execute(
            "SELECT stream, last_success_run_id, last_success_at FROM squaresync.stream_state").fetchall())
    f = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    after_f = last_success()
    assert {r for r, _ in after_f.values()} == {f}
    fake.mutate({"vendors": {"update": 2}})
    a = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert all(r == a for r, _ in last_success().values())
    db.execute("SELECT squaresync.rollback(%s, 'x')", (a,))
    assert last_success() == after_f
    assert db.execute("SELECT DISTINCT last_sync_version FROM squaresync.sync_state").fetchall() == [(f,)]
    db.execute("SELECT squaresync.rollback(%s, 'x')", (f,))
    assert all(v == (None, None) for v in last_success().values()), last_success()


def test_rolling_back_an_earlier_run_then_a_later_one_keeps_the_earlier_watermark(db, fake):
    """Two runs that changed different rows, rolled back earlier first (no cascade needed): each
    rollback leaves the catalog's watermark where the earlier run found it, so the next sync fetches
    both windows again."""
    db.execute("SELECT squaresync.foundation()")
    w0 = watermarks(db)["catalog"]
    fake.mutate({"catalog_items": {"create": 1}})
    a = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    fake.mutate({"catalog_items": {"create": 1}})
    b = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert watermarks(db)["catalog"] != w0
    db.execute("SELECT squaresync.rollback(%s, 'earlier first')", (a,))
    assert watermarks(db)["catalog"] == w0
    db.execute("SELECT squaresync.rollback(%s, 'then the later')", (b,))
    assert watermarks(db)["catalog"] == w0, "the second rollback moved the watermark forward"
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_a_rollback_in_a_savepoint_keeps_the_expected_row_counts(db, fake):
    """rollback() called in a subtransaction (a savepoint here; a PL/pgSQL EXCEPTION block alike)
    moves the expected row counts by what it did: validate()'s row counts stay ok."""
    db.execute("SELECT squaresync.foundation()")
    fake.mutate(SELLERS_DAY)
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    with db.transaction():
        with db.transaction():  # a savepoint
            db.execute("SELECT squaresync.rollback(%s, 'in a savepoint')", (inc,))
    bad = [r for r in db.execute("SELECT * FROM squaresync.validate()").fetchall() if r[0] == "row count" and r[2] != "ok"]
    assert not bad, bad


def test_a_rollback_in_another_time_zone_lists_only_what_it_changed(db, fake):
    """The audit images are written in the worker's TimeZone; a rollback from a session in another
    zone compares rows, not their text: an order's untouched timestamps are not listed as changed."""
    db.execute("SELECT squaresync.foundation()")
    fake.mutate({"orders": {"update": 3}})
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    before = checksums(db)
    db.execute("SET TimeZone = 'Asia/Tokyo'")
    try:
        rb = db.execute("SELECT squaresync.rollback(%s, 'from Tokyo')", (inc,)).fetchone()[0]
    finally:
        db.execute("RESET TimeZone")
    listed = {k for (after,) in db.execute("SELECT after FROM squaresync.changes WHERE run_id = %s"
                                           " AND table_name = 'orders' AND op = 'update'", (rb,)).fetchall()
              for k in after}
    assert listed and "created_at" not in listed, listed
    assert checksums(db) != before


def test_rollback_refusals(db, fake, cluster):
    msg = error_of(db, "SELECT squaresync.rollback(424242, 'x')")
    assert "squaresync run 424242 does not exist" in msg and "squaresync.sync_runs" in msg

    db.execute("SELECT squaresync.foundation()")
    fake.mutate({"orders": {"create": 1}})
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert "needs a reason" in error_of(db, "SELECT squaresync.rollback(%s, '')", (inc,))

    # While a sync holds the run lock.
    other = cluster.connect()
    other.execute("SELECT pg_advisory_lock(1397838681, 1)")
    other.execute("INSERT INTO squaresync.sync_runs (id, kind, status) VALUES (999999, 'incremental', 'running')")
    try:
        assert "a sync run is in progress" in error_of(db, "SELECT squaresync.rollback(%s, 'x')", (inc,))
    finally:
        other.execute("DELETE FROM squaresync.sync_runs WHERE id = 999999")
        other.execute("SELECT pg_advisory_unlock(1397838681, 1)")
        other.close()

    rb = db.execute("SELECT squaresync.rollback(%s, 'x')", (inc,)).fetchone()[0]
    msg = error_of(db, "SELECT squaresync.rollback(%s, 'x')", (rb,))
    assert f"run {rb} is a rollback (of run {inc}) and cannot be rolled back" in msg
    assert "squaresync.incremental()" in msg
    assert f"run {inc} was already rolled back by run {rb}" in error_of(db, "SELECT squaresync.rollback(%s, 'x')", (inc,))
    # Nothing of the refused calls stayed.
    assert db.execute("SELECT count(*) FROM squaresync.sync_runs WHERE kind = 'rollback'").fetchone()[0] == 1


def test_a_run_asked_for_in_a_rollbacks_transaction_is_refused_and_under_a_snapshot_goes_ahead(db, fake, cluster):
    """A run asked for in the transaction of a rollback (which holds the run lock the worker needs
    until it commits) is refused at once, with or without wait, and no worker is started. Under a
    transaction snapshot (REPEATABLE READ, SERIALIZABLE) a run goes ahead as in READ COMMITTED: the
    call reads the worker's commits with snapshots of its own."""
    db.execute("SELECT squaresync.foundation()")
    fake.mutate({"orders": {"create": 1}})
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    runs = db.execute("SELECT count(*) FROM squaresync.sync_runs").fetchone()[0]
    calls = ("incremental()", "incremental(wait => false)", "foundation()", "foundation(wait => false)")

    def refused(con, call):
        con.execute("SAVEPOINT ask")
        try:
            return error_of(con, f"SELECT squaresync.{call}")
        finally:
            con.execute("ROLLBACK TO SAVEPOINT ask")

    con = cluster.connect(autocommit=False)
    rb = con.execute("SELECT squaresync.rollback(%s, 'x')", (inc,)).fetchone()[0]
    for call in calls:
        msg = refused(con, call)
        assert "this transaction holds squaresync's run lock" in msg and "Commit" in msg, (call, msg)
    con.commit()
    assert db.execute("SELECT count(*) FROM squaresync.sync_runs").fetchone()[0] == runs + 1  # the rollback's
    assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (rb,)).fetchone()[0] == "succeeded"
    assert not db.execute("SELECT 1 FROM pg_stat_activity WHERE backend_type = 'squaresync sync'").fetchone()
    # Once committed, the run goes ahead and fetches the rolled-back window again, under each
    # isolation level: each call starts a run and, with wait, returns once it has succeeded.
    for level in ("READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"):
        for call in calls:
            fake.mutate({"orders": {"create": 1}})
            con.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
            run = con.execute(f"SELECT squaresync.{call}").fetchone()[0]
            con.commit()
            if "wait => false" in call:
                wait_for(lambda: db.execute("SELECT status <> 'running' FROM squaresync.sync_runs WHERE id = %s",
                                            (run,)).fetchone()[0], 60, f"run {run} to end")
            status = db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0]
            assert status == "succeeded", (level, call, status)
            assert_matches_fake(db, fake)
    con.close()


def test_rollback_of_a_foundation_empties_what_it_loaded(db, fake):
    f = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    db.execute("SELECT squaresync.rollback(%s, 'start over')", (f,))
    for t, (n, _) in checksums(db).items():
        assert n == 0, t
    assert all(w is None for w in watermarks(db).values())
    assert all(r[2] == "ok" for r in db.execute("SELECT * FROM squaresync.validate()").fetchall())
    db.execute("SELECT squaresync.foundation()")
    assert_matches_fake(db, fake)


def test_diff_matches_what_mutate_changed(db, fake):
    db.execute("SELECT squaresync.foundation()")
    changed = fake.mutate(SELLERS_DAY)
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    rows = db.execute("SELECT table_name, pk, op, column_name, before, after FROM squaresync.diff(%s)",
                      (inc,)).fetchall()
    got = {}
    for table, pk, op, col, b, a in rows:
        key = ":".join(pk[k] for k in ("catalog_object_id", "location_id", "state")) \
            if table == "catalog_inventory" else pk.get("id")
        got.setdefault((table, op), set()).add(key)
        if op == "update":
            assert b != a, (table, pk, col)
        if op == "insert":
            assert b is None and col != "raw"
    table_of = {"catalog_items": "catalog_items", "catalog_variations": "catalog_variations",
                "catalog_categories": "catalog_categories", "inventory_counts": "catalog_inventory",
                "vendors": "vendors", "orders": "orders", "payments": "payments", "refunds": "payment_refunds"}
    for kind, table in table_of.items():
        want = changed[kind]
        created, deleted = set(want["created"]), set(want["deleted"])
        assert got.get((table, "insert"), set()) == created, kind
        assert got.get((table, "delete"), set()) == deleted, kind
        assert got.get((table, "update"), set()) == set(want["updated"]) - created - deleted, kind
    # An update shows exactly the changed columns, e.g. an item's new name.
    item = next(iter(set(changed["catalog_items"]["updated"]) - set(changed["catalog_items"]["created"])))
    cols = {r[3] for r in rows if r[0] == "catalog_items" and r[1] == {"id": item}}
    assert {"version", "updated_at", "raw"} <= cols and "merchant_id" not in cols and "synced_at" not in cols
    # The raw JSON is kept apart from the images, as stored: the item's before and after raw are the
    # fake's objects before and after the day, and no image carries a raw key.
    before_raw, after_raw, before, after = db.execute(
        "SELECT before_raw, after_raw, before, after FROM squaresync.changes"
        " WHERE run_id = %s AND table_name = 'catalog_items' AND pk = jsonb_build_object('id', %s::text)",
        (inc, item)).fetchone()
    assert before_raw["id"] == after_raw["id"] == item and before_raw["version"] < after_raw["version"]
    assert after_raw == db.execute("SELECT raw FROM square.catalog_items WHERE id = %s", (item,)).fetchone()[0]
    assert "raw" not in before and "raw" not in after and before["version"] == before_raw["version"]
    assert db.execute("SELECT count(*) FROM squaresync.changes WHERE run_id = %s AND (before ? 'raw' OR after ? 'raw')",
                      (inc,)).fetchone()[0] == 0
    assert "does not exist" in error_of(db, "SELECT * FROM squaresync.diff(424242)")


def test_pruned_runs_are_no_longer_roll_back_able(db, fake):
    f = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    fake.mutate({"orders": {"create": 1}})
    inc = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    # The foundation finished 100 days ago: older than the default retention (90 days).
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() - interval '100 days',"
               " finished_at = now() - interval '100 days' + interval '1 minute' WHERE id = %s", (f,))
    n_f = db.execute("SELECT count(*) FROM squaresync.changes WHERE run_id = %s", (f,)).fetchone()[0]
    n_inc = db.execute("SELECT count(*) FROM squaresync.changes WHERE run_id = %s", (inc,)).fetchone()[0]
    assert db.execute("SELECT squaresync._prune_audit()").fetchone()[0] == n_f
    assert db.execute("SELECT count(*) FROM squaresync.changes WHERE run_id = %s", (inc,)).fetchone()[0] == n_inc
    assert db.execute("SELECT audit_pruned_at IS NOT NULL FROM squaresync.sync_runs WHERE id = %s",
                      (f,)).fetchone()[0]
    assert db.execute("SELECT squaresync._prune_audit()").fetchone()[0] == 0
    msg = error_of(db, "SELECT squaresync.rollback(%s, 'x')", (f,))
    assert f"run {f} can no longer be rolled back: its audit trail was pruned" in msg
    assert "was pruned" in error_of(db, "SELECT * FROM squaresync.diff(%s)", (f,))
    # The newer run still can.
    db.execute("SELECT squaresync.rollback(%s, 'x')", (inc,))
    # Validation's expectations do not depend on the audit trail.
    assert all(r[2] == "ok" for r in db.execute("SELECT * FROM squaresync.validate()").fetchall())


def problems(con, deep=False):
    return {(r[0], r[1]): r[3] for r in con.execute("SELECT * FROM squaresync.validate(%s)", (deep,)).fetchall()
            if r[2] != "ok"}


def test_validate_is_ok_after_a_clean_sync(db, fake):
    db.execute("SELECT squaresync.foundation()")
    fake.mutate(SELLERS_DAY)
    db.execute("SELECT squaresync.incremental()")
    rows = db.execute("SELECT * FROM squaresync.validate(true)").fetchall()
    assert {r[2] for r in rows} == {"ok"}, [r for r in rows if r[2] != "ok"]
    names = {r[0] for r in rows}
    assert {"references orders", "row count", "order totals", "one currency per order", "columns match raw",
            "deep: matches Square", "deep: deletes missed"} <= names


def test_validate_catches_an_order_deleted_without_its_line_items(db, fake):
    db.execute("SELECT squaresync.foundation()")
    oid = db.execute("SELECT order_id FROM square.order_line_items LIMIT 1").fetchone()[0]
    db.execute("ALTER TABLE square.orders DISABLE TRIGGER ALL")
    db.execute("DELETE FROM square.orders WHERE id = %s", (oid,))
    db.execute("ALTER TABLE square.orders ENABLE TRIGGER ALL")
    p = problems(db)
    assert oid in p[("references orders", "order_line_items")]
    assert ("row count", "orders") in p
    assert set(p) <= {("references orders", t) for t in
                      ("order_line_items", "order_fulfillments", "order_returns", "order_refunds", "tenders")} \
        | {("row count", "orders")}, p


def test_validate_catches_prices_changed_behind_the_syncs_back(db, fake):
    db.execute("SELECT squaresync.foundation()")
    vid = db.execute("SELECT id FROM square.catalog_variations WHERE NOT is_deleted ORDER BY id LIMIT 1").fetchone()[0]
    # The column alone: it no longer matches the stored object.
    db.execute("UPDATE square.catalog_variations SET price_amount = price_amount + 1 WHERE id = %s", (vid,))
    p = problems(db)
    assert set(p) == {("columns match raw", "catalog_variations")} and vid in p[("columns match raw", "catalog_variations")]
    # Column and object: only Square can tell (the sample covers the small test catalog).
    db.execute("UPDATE square.catalog_variations SET raw = jsonb_set(raw, '{item_variation_data,price_money,amount}',"
               " to_jsonb(price_amount)) WHERE id = %s", (vid,))
    assert problems(db) == {}
    p = problems(db, deep=True)
    assert set(p) == {("deep: matches Square", "catalog_variations")}, p
    assert vid in p[("deep: matches Square", "catalog_variations")] and "price_amount" in p[("deep: matches Square", "catalog_variations")]


def test_validate_accepts_inclusive_taxes_kept_in_gross_sales(db, fake):
    """An order taxed as in Europe or Australia: its tax INCLUSIVE and kept in the line items' gross
    sales, so their total adds no tax. The line item totals check accepts it; a total damaged on top
    of that is still caught."""
    db.execute("SELECT squaresync.foundation()")
    oid = db.execute("SELECT order_id FROM square.order_line_items WHERE total_tax_money_amount > 0"
                     " ORDER BY order_id LIMIT 1").fetchone()[0]
    db.execute("UPDATE square.orders SET raw = jsonb_set(raw, '{taxes,0,type}', '\"INCLUSIVE\"') WHERE id = %s", (oid,))
    db.execute("UPDATE square.order_line_items SET gross_sales_money_amount = gross_sales_money_amount"
               " + total_tax_money_amount WHERE order_id = %s", (oid,))
    assert ("line item totals", "order_line_items") not in problems(db)
    db.execute("UPDATE square.order_line_items SET total_money_amount = total_money_amount + 1"
               " WHERE order_id = %s AND uid = (SELECT min(uid) FROM square.order_line_items WHERE order_id = %s)",
               (oid, oid))
    assert oid in problems(db)[("line item totals", "order_line_items")]


def test_validate_accepts_apportioned_service_charges_and_their_taxes(db, fake):
    """Square's total_service_charge_money sums the charges' applied_money: a charge apportioned to
    the line items (already in their totals) is counted there too, and an additive tax on a charge
    is not. The order totals check accepts both, and still catches a total damaged on top."""
    db.execute("SELECT squaresync.foundation()")
    a, b = [r[0] for r in db.execute(
        "SELECT id FROM square.orders o WHERE coalesce(total_service_charge_money_amount, 0) = 0"
        " AND NOT (raw ? 'service_charges') AND EXISTS (SELECT FROM square.order_line_items li"
        " WHERE li.order_id = o.id) ORDER BY id LIMIT 2").fetchall()]

    def charge(treatment, applied, total):
        return {"uid": "sc-" + treatment, "name": "Service charge", "treatment_type": treatment,
                "applied_money": {"amount": applied, "currency": "USD"},
                "total_money": {"amount": total, "currency": "USD"}}

    # a: 100 apportioned to one of its line items (its total and total_service_charge_money hold it).
    db.execute("UPDATE square.order_line_items SET total_service_charge_money_amount = coalesce("
               "total_service_charge_money_amount, 0) + 100, total_money_amount = total_money_amount + 100"
               " WHERE order_id = %s AND uid = (SELECT min(uid) FROM square.order_line_items WHERE order_id = %s)",
               (a, a))
    db.execute("UPDATE square.orders SET raw = jsonb_set(raw, '{service_charges}', %s::jsonb),"
               " total_service_charge_money_amount = 100, total_money_amount = total_money_amount + 100"
               " WHERE id = %s", (json.dumps([charge("APPORTIONED_TREATMENT", 100, 100)]), a))
    # b: a 200 charge on the total with 16 of additive tax: the order's total holds 216.
    db.execute("UPDATE square.orders SET raw = jsonb_set(raw, '{service_charges}', %s::jsonb),"
               " total_service_charge_money_amount = 200, total_money_amount = total_money_amount + 216"
               " WHERE id = %s", (json.dumps([charge("LINE_ITEM_TREATMENT", 200, 216)]), b))
    found = problems(db)
    assert ("order totals", "orders") not in found, found[("order totals", "orders")]
    assert ("line item totals", "order_line_items") not in found
    db.execute("UPDATE square.orders SET total_money_amount = total_money_amount + 1 WHERE id = ANY(%s)", ([a, b],))
    assert set(problems(db)[("order totals", "orders")].split("e.g. ")[1].split(", ")) == {a, b}


def test_validate_catches_money_and_currency_damage(db, fake):
    db.execute("SELECT squaresync.foundation()")
    oid = db.execute("SELECT order_id FROM square.order_line_items ORDER BY order_id LIMIT 1").fetchone()[0]
    tid = db.execute("SELECT order_id FROM square.tenders ORDER BY order_id LIMIT 1").fetchone()[0]
    db.execute("UPDATE square.orders SET total_money_amount = total_money_amount + 5,"
               " raw = jsonb_set(raw, '{total_money,amount}', to_jsonb(total_money_amount + 5)) WHERE id = %s", (oid,))
    db.execute("UPDATE square.tenders SET currency = 'EUR' WHERE order_id = %s", (tid,))
    db.execute("UPDATE square.order_line_items SET quantity = 0 WHERE order_id = %s"
               " AND uid = (SELECT min(uid) FROM square.order_line_items WHERE order_id = %s)", (tid, tid))
    p = problems(db)
    assert oid in p[("order totals", "orders")]
    assert tid in p[("one currency per order", "orders")]
    assert tid in p[("quantities", "order_line_items")]


def test_deep_validate_catches_deletes_the_sync_missed(db, fake):
    db.execute("SELECT squaresync.foundation()")
    purged = fake.mutate({"purge_items": 2})
    items, variations = purged["catalog_items"]["purged"], purged["catalog_variations"]["purged"]
    assert len(items) == 2 and variations
    db.execute("SELECT squaresync.incremental()")   # sees nothing: Square sent no tombstone
    p = problems(db, deep=True)
    for table, ids in (("catalog_items", items), ("catalog_variations", variations)):
        assert str(len(ids)) + " live rows Square's catalog no longer has" in p[("deep: deletes missed", table)]
        assert all(i in p[("deep: deletes missed", table)] for i in ids[:5])
    assert ("deep: inserts missed", "catalog_items") not in p
