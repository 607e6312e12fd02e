"""test_faults.py: reliability under faults (issue 8). For each fault the run retries or fails with a
clear recorded error, committed data stays consistent, and the same run (after retries) or the next
one converges to exactly the fake's truth, with no row lost and none duplicated."""
import os
import random
import signal
import threading
import time

import pytest

from fakesquare import assert_matches_fake
from test_ops import wait_for
from test_sync import definitions, upkeep


def last_run(con):
    return con.execute("SELECT id, status, error, retries, rate_limited FROM squaresync.sync_runs"
                       " ORDER BY id DESC LIMIT 1").fetchone()


def stream_errors(con, run_id):
    return {r[0]: (r[1], r[2], r[3]) for r in con.execute(
        "SELECT stream, status, error, error_code FROM squaresync.sync_run_streams WHERE run_id = %s", (run_id,))}


def day_of_changes(fake):
    return fake.mutate({"orders": {"update": 4, "create": 2}, "catalog_items": {"update": 2},
                        "inventory_counts": {"update": 5}, "payments": {"update": 1}})


@pytest.fixture
def synced(db, fake):
    """A database after a foundation, and a seller's day of changes in the fake."""
    db.execute("SELECT squaresync.foundation()")
    day_of_changes(fake)
    yield db
    fake.clear_faults()


# Faults a run survives by retrying: the same run succeeds and converges.
@pytest.mark.parametrize("fault", [
    dict(fault="429", count=6),
    dict(fault="429", count=6, retry_after=1),
    dict(fault="500", count=3),
    dict(fault="502", count=3),
    dict(fault="503", count=3),
    dict(fault="reset", count=3),
    dict(fault="truncate", count=3),
    dict(fault="malformed", count=3),
    dict(fault="wrong_shape", count=2),
    dict(fault="hang", count=1, delay_ms=4000),
], ids=lambda f: f["fault"] + ("+retry_after" if "retry_after" in f else ""))
def test_transient_fault_is_retried_and_the_run_converges(synced, fake, fault):
    db = synced
    if fault["fault"] == "hang":
        db.execute("ALTER SYSTEM SET squaresync.request_timeout = '1s'")
        db.execute("SELECT pg_reload_conf()")
    try:
        fake.fault(**fault)
        run = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    finally:
        db.execute("ALTER SYSTEM RESET squaresync.request_timeout")
        db.execute("SELECT pg_reload_conf()")
    _, status, error, retries, rate_limited = last_run(db)
    assert status == "succeeded", (status, error, stream_errors(db, run))
    fired = fake.stats().get("faults_fired", {})
    assert fired, "the fault never fired: the test proves nothing"
    assert retries >= 1
    if fault["fault"] == "429":
        assert rate_limited >= fault["count"]
    assert_matches_fake(db, fake)


@pytest.fixture
def paged(cluster):
    """A dataset where the deprecated Transactions API (50 a page) needs several pages per location."""
    from fakesquare import FakeSquare
    fake = FakeSquare(scale=0.3).start()
    con = cluster.connect()
    con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
    con.execute("CREATE EXTENSION squaresync")
    con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
    yield con, fake
    con.close()
    fake.stop()


def test_expired_cursor_restarts_the_walk_and_the_run_succeeds(paged):
    """Two expired cursors on later pages: each walk starts again from its first page and the run
    succeeds with every row (that the first page is built from the watermark again is shown by the unit
    test StreamFailures.InvalidCursorAfterTheFirstPageRestarts)."""
    db, fake = paged
    fake.fault(fault="invalid_cursor", path="/v2/locations/", count=2)
    run = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    assert fake.stats().get("faults_fired"), "the fault never fired: the test proves nothing"
    assert last_run(db)[1] == "succeeded", stream_errors(db, run)
    assert_matches_fake(db, fake)


def test_a_cursor_that_keeps_expiring_fails_the_stream_after_three_restarts(paged):
    db, fake = paged
    fake.fault(fault="invalid_cursor", path="/v2/locations/", count=1000)
    with pytest.raises(Exception, match="partly failed"):
        db.execute("SELECT squaresync.foundation()")
    run, status, *_ = last_run(db)
    errors = stream_errors(db, run)
    assert errors["transactions"][0] == "failed" and errors["transactions"][2] == "INVALID_CURSOR", errors
    assert "three times" in errors["transactions"][1]
    assert errors["orders"][0] == "succeeded"
    fake.clear_faults()
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_repeating_cursor_is_detected_not_looped(paged):
    db, fake = paged
    fake.fault(fault="repeat_cursor", path="/v2/locations/", count=1000)
    with pytest.raises(Exception, match="partly failed"):
        db.execute("SELECT squaresync.foundation()")
    run, status, *_ = last_run(db)
    errors = stream_errors(db, run)
    assert errors["transactions"][0] == "failed" and "same page cursor" in errors["transactions"][1], errors
    assert errors["transactions"][2] == "REPEATED_CURSOR", errors
    assert errors["orders"][0] == "succeeded"
    fake.clear_faults()
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_rate_limit_storm_beyond_the_budget_fails_clearly_and_keeps_progress(synced, fake):
    db = synced
    db.execute("ALTER SYSTEM SET squaresync.retry_budget = 5")
    db.execute("ALTER SYSTEM SET squaresync.retry_max_delay = '100ms'")
    db.execute("SELECT pg_reload_conf()")
    try:
        fake.fault(fault="429", path="/v2/refunds", count=1000)
        with pytest.raises(Exception, match="partly failed"):
            db.execute("SELECT squaresync.incremental()")
    finally:
        for k in ("retry_budget", "retry_max_delay"):
            db.execute(f"ALTER SYSTEM RESET squaresync.{k}")
        db.execute("SELECT pg_reload_conf()")
        fake.clear_faults()
    run, status, error, retries, rate_limited = last_run(db)
    errors = stream_errors(db, run)
    assert status == "partial" and errors["refunds"][0] == "failed", errors
    assert "429" in errors["refunds"][1] and rate_limited > 0, errors["refunds"]
    # Progress kept: the streams that finished were applied (orders changed in the fake).
    assert errors["orders"][0] == "succeeded"
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_401_fails_the_run_at_once_without_a_retry_storm(synced, fake):
    db = synced
    fake.fault(fault="401", count=1000)
    with pytest.raises(Exception, match="access token rejected"):
        db.execute("SELECT squaresync.incremental()")
    run, status, error, retries, _ = last_run(db)
    assert status == "failed" and "access token rejected" in error and retries == 0
    reqs = db.execute("SELECT api_requests FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0]
    assert reqs <= 1, f"{reqs} requests were sent with a rejected token"
    # Every stream fails with the rejected token's error.
    errors = stream_errors(db, run)
    assert {v[0] for v in errors.values()} == {"failed"}, errors
    assert errors["locations"][2] == "UNAUTHORIZED" and "access token rejected" in errors["locations"][1], errors
    assert all(errors["locations"][1] in v[1] for v in errors.values()), errors
    # The built-in schedule backs off: with a 1 hour interval, one failure makes the next run due
    # after 2 hours, not 1.
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() - interval '3 hours' WHERE id <> %s", (run,))
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() - interval '90 minutes' WHERE id = %s", (run,))
    assert db.execute("SELECT squaresync._scheduled_run_due(interval '1 hour', '')").fetchone()[0] is None
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() - interval '121 minutes' WHERE id = %s", (run,))
    assert db.execute("SELECT squaresync._scheduled_run_due(interval '1 hour', '')").fetchone()[0] == "incremental"
    fake.clear_faults()
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_410_fails_that_stream_only(synced, fake):
    db = synced
    fake.fault(fault="410", path="/v2/locations/", count=1000)  # the deprecated Transactions API
    with pytest.raises(Exception, match="partly failed"):
        db.execute("SELECT squaresync.incremental()")
    run, status, *_ = last_run(db)
    errors = stream_errors(db, run)
    assert status == "partial"
    assert errors["transactions"][0] == "failed" and errors["transactions"][2] == "GONE", errors
    assert all(v[0] == "succeeded" for k, v in errors.items() if k != "transactions"), errors
    assert "endpoint retired (410)" in db.execute(
        "SELECT alerts FROM squaresync.health WHERE table_name = 'transactions'").fetchone()[0]
    fake.clear_faults()
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_a_stream_a_later_run_marked_failed_is_left_alone_when_its_own_fetch_then_fails(synced, fake):
    """A run whose worker a later run took for dead: that run marked its streams failed (fail_stale_runs)
    and may have staged pages of its own since. When the first run's own fetch of such a stream then
    fails, it records nothing over the later run's verdict and leaves the staging alone."""
    db = synced
    db.execute("ALTER SYSTEM SET squaresync.request_timeout = '1s'")
    db.execute("ALTER SYSTEM SET squaresync.retry_max_attempts = 3")
    db.execute("SELECT pg_reload_conf()")
    try:
        before = db.execute("SELECT last_run_id, last_status FROM squaresync.stream_state"
                            " WHERE stream = 'refunds'").fetchone()
        # Every refunds request times out: the stream fails after 3 attempts (~3 s).
        fake.fault(fault="hang", path="/v2/refunds", count=1000, delay_ms=3000)
        run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        wait_for(lambda: fake.fired("hang"), 30, "the refunds request to hang")
        # What the later run did: the stream marked failed, then a page of its own staged.
        marked = db.execute("UPDATE squaresync.sync_run_streams SET status = 'failed', error = 'run interrupted'"
                            " WHERE run_id = %s AND stream = 'refunds' AND status = 'running'", (run,)).rowcount
        assert marked == 1, "the refunds stream was no longer running: the test proves nothing"
        db.execute("INSERT INTO squaresync.stage_payment_refunds SELECT r.*, -7, 1 FROM square.payment_refunds r LIMIT 1")
        wait_for(lambda: db.execute("SELECT status <> 'running' FROM squaresync.sync_runs WHERE id = %s",
                                    (run,)).fetchone()[0], 60, "the run to finish")
    finally:
        db.execute("ALTER SYSTEM RESET squaresync.request_timeout")
        db.execute("ALTER SYSTEM RESET squaresync.retry_max_attempts")
        db.execute("SELECT pg_reload_conf()")
        fake.clear_faults()
    assert fake.fired("hang") >= 3, "the refunds fetch did not fail by timing out"
    _, status, error, retries, _ = last_run(db)
    errors = stream_errors(db, run)
    assert status == "partial", (status, error, errors)
    assert errors["refunds"] == ("failed", "run interrupted", None), errors
    assert all(v[0] == "succeeded" for k, v in errors.items() if k != "refunds"), errors
    assert db.execute("SELECT count(*) FROM squaresync.stage_payment_refunds WHERE _batch = -7").fetchone()[0] == 1
    assert db.execute("SELECT last_run_id, last_status FROM squaresync.stream_state"
                      " WHERE stream = 'refunds'").fetchone() == before
    # The next run empties the staging first and converges.
    db.execute("SELECT squaresync.incremental()")
    assert db.execute("SELECT count(*) FROM squaresync.stage_payment_refunds").fetchone()[0] == 0
    assert_matches_fake(db, fake)


def test_redirect_is_not_followed_and_oversize_is_capped(synced, fake):
    db = synced
    fake.fault(fault="redirect", path="/v2/vendors/search", count=1000)
    fake.fault(fault="oversize", path="/v2/refunds", count=1000)
    db.execute("ALTER SYSTEM SET squaresync.max_response_size = '8MB'")
    db.execute("SELECT pg_reload_conf()")
    try:
        with pytest.raises(Exception, match="partly failed"):
            db.execute("SELECT squaresync.incremental()")
    finally:
        db.execute("ALTER SYSTEM RESET squaresync.max_response_size")
        db.execute("SELECT pg_reload_conf()")
        fake.clear_faults()
    run, status, *_ = last_run(db)
    errors = stream_errors(db, run)
    assert errors["vendors"][0] == "failed" and "redirect" in errors["vendors"][1].lower(), errors["vendors"]
    assert errors["vendors"][2] == "redirect", errors["vendors"]
    assert errors["refunds"][0] == "failed" and errors["refunds"][2] == "too_large", errors["refunds"]
    assert status == "partial" and last_run(db)[3] == 0, "a redirect or an oversized body was retried"
    assert "too large" in errors["refunds"][1].lower() or "larger than" in errors["refunds"][1].lower(), errors["refunds"]
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def worker_pid(con, timeout=30):
    return wait_for(lambda: (con.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'squaresync sync'")
                             .fetchone() or [None])[0], timeout, "the sync worker")


def wait_gone(con, pid, what, timeout=30):
    """Waits until backend `pid` has left pg_stat_activity (`what`: for the timeout's message)."""
    wait_for(lambda: not con.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone(), timeout, what)


def wait_crash_restart(cluster, log_start):
    """After a backend was killed: waits until the postmaster has reinitialized and accepts
    connections again (a connection made before it notices the death would be cut)."""
    def restarted():
        log = cluster.log_text()[log_start:]
        i = log.find("all server processes terminated; reinitializing")
        return i >= 0 and "database system is ready to accept connections" in log[i:]
    wait_for(restarted, 60, "the server to restart after the crash")


@pytest.mark.parametrize("phase", ["fetching", "applying"])
def test_sigkill_of_the_worker_then_the_next_run_converges(db, fake, cluster, phase):
    holder = None
    log_start = len(cluster.log_text())
    if phase == "fetching":
        fake.fault(latency_ms=200)
    else:
        # The worker reaches the orders apply and waits there for this lock, inside its transaction.
        holder = cluster.connect(autocommit=False)
        holder.execute("LOCK TABLE square.order_line_items IN ACCESS EXCLUSIVE MODE")
    db.execute("SELECT squaresync.foundation(wait => false)")
    pid = worker_pid(db)
    if phase == "applying":
        # The process applying the orders: the apply worker (or the sync worker, without a free slot).
        pid = wait_for(lambda: (db.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                           " AND backend_type IN ('squaresync sync', 'squaresync apply')"
                                           " AND query LIKE 'squaresync: applying orders%%'").fetchone() or [None])[0],
                       60, "a worker to wait inside the orders apply")
    else:
        time.sleep(1.0)
    os.kill(pid, signal.SIGKILL)
    if holder is not None:
        try:
            holder.close()
        except Exception:
            pass
    fake.clear_faults()
    wait_crash_restart(cluster, log_start)
    con = cluster.connect()
    # The killed run is marked failed (by the maintenance worker or the next run), never left running.
    con.execute("SELECT squaresync.foundation()")
    statuses = [r[0] for r in con.execute("SELECT status FROM squaresync.sync_runs ORDER BY id").fetchall()]
    assert statuses[0] == "failed" and statuses[-1] == "succeeded", statuses
    assert "stopped before the run finished" in con.execute(
        "SELECT error FROM squaresync.sync_runs ORDER BY id LIMIT 1").fetchone()[0]
    assert_matches_fake(con, fake)
    con.close()


def fresh_extension(con, fake):
    """The extension dropped and created again, connected to the fake: its tables empty."""
    con.execute("DROP EXTENSION squaresync CASCADE")
    con.execute("CREATE EXTENSION squaresync")
    con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))


def test_sigkill_at_random_moments_of_first_loads_and_incrementals_loses_nothing(db, fake, cluster):
    """SIGKILL of the sync or the apply worker at a random moment, alternately of a foundation into
    empty tables (whose streams drop and make again their indexes and foreign keys) and of an
    incremental after a day of changes; each time the server restarts (crash recovery), every index
    and foreign key is still there, and the next run succeeds and equals the fake."""
    rng = random.Random(20261130)
    expected = definitions(upkeep(db))
    started = time.time()
    db.execute("SELECT squaresync.foundation()")
    took = time.time() - started
    con, crashes = db, 0
    try:
        for k in range(8):
            if k % 2 == 0:
                fresh_extension(con, fake)
                con.execute("SELECT squaresync.foundation(wait => false)")
                delay = rng.uniform(0, took)
            else:
                fake.mutate({"orders": {"update": 8, "create": 3}, "catalog_items": {"update": 2},
                             "inventory_counts": {"update": 4}})
                con.execute("SELECT squaresync.incremental(wait => false)")
                delay = rng.uniform(0, 0.3)
            pids = [worker_pid(con)]
            log_start = len(cluster.log_text())
            time.sleep(delay)
            pids += [r[0] for r in con.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'squaresync apply'")]
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
            except ProcessLookupError:
                continue  # the run had ended
            con.close()
            # (A worker that was exiting when it was killed leaves no crash: its run had ended.)
            time.sleep(2)
            if "terminated by signal 9" in cluster.log_text()[log_start:]:
                crashes += 1
                wait_crash_restart(cluster, log_start)
            con = cluster.connect()
            assert definitions(upkeep(con)) == expected, k
            nxt = con.execute("SELECT squaresync.incremental()").fetchone()[0]
            status, error = con.execute("SELECT status, error FROM squaresync.sync_runs WHERE id = %s", (nxt,)).fetchone()
            assert status == "succeeded", (k, status, error)
            assert not con.execute("SELECT id FROM squaresync.sync_runs WHERE status = 'running'").fetchall(), k
            assert_matches_fake(con, fake)
    finally:
        if con is not db:
            con.close()
    assert crashes >= 3, f"only {crashes} of 8 kills found a worker still running"


# Where a run is when its worker is signalled, and how it is held there: another session holds a
# table the worker needs (locked before the run starts, or once it has started), and Square answers
# each request late. "start": emptying the staging tables; "staging": staging the locations' page;
# "apply": applying it; "fetch": waiting for Square (its first request, the locations, hangs).
HOLDS = {"start": ("squaresync.stage_locations", True, "squaresync: waiting"),
         "staging": ("squaresync.stage_locations", False, "squaresync: locations page 1"),
         "apply": ("square.locations", True, "squaresync: applying locations"),
         "fetch": (None, False, None)}


@pytest.mark.parametrize("where", ["fetch", "start", "staging", "apply"])
@pytest.mark.parametrize("signal_fn", ["pg_cancel_backend", "pg_terminate_backend"])
def test_a_canceled_or_stopped_run_is_recorded_failed_by_its_own_worker(synced, fake, cluster, where, signal_fn):
    """pg_cancel_backend or pg_terminate_backend of the sync worker stops the whole run (inside a
    statement too, not just the stream it was staging or applying: a SIGTERM there is served as a
    cancel, not as PostgreSQL's FATAL exit on the spot), and the worker itself records it failed
    before it exits: no later run is needed to mark it."""
    db = synced
    table, before, activity = HOLDS[where]
    holder = cluster.connect(autocommit=False) if table else None
    if where == "fetch":
        fake.fault(fault="hang", path="/v2/locations", delay_ms=60000)
    elif where == "staging":
        fake.fault(fault="delay", path="/v2/locations", delay_ms=3000)
    else:
        fake.fault(latency_ms=300)
    try:
        if holder and before:
            holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        pid = worker_pid(db)
        if holder and not before:
            # The run's first request has arrived (so the worker is past emptying the staging
            # tables) and is answered 3 s late: the locations' page is staged after the lock.
            wait_for(lambda: fake.fired("delay"), 30, "the locations request")
            holder.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        if holder:
            wait_for(lambda: db.execute("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                                        (pid,)).fetchone()[0], 30, f"the sync worker to wait in its {where}")
            if activity != "squaresync: waiting":
                assert db.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0] == activity
        else:
            wait_for(lambda: fake.fired("hang"), 30, "the sync worker's locations request to hang")
        db.execute(f"SELECT {signal_fn}(%s)", (pid,))
        wait_gone(db, pid, "the sync worker to exit")
    finally:
        if holder:
            holder.rollback()
            holder.close()
        fake.clear_faults()
    status, error = db.execute("SELECT status, error FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()
    assert status == "failed", (status, error)
    assert "asked to stop" in error and "next run resumes" in error, error
    streams = stream_errors(db, run)
    # What was applied before the signal stays applied; nothing else is left running.
    applied = {s for s, (st, _, _) in streams.items() if st == "succeeded"}
    assert applied <= ({"locations", "catalog", "inventory", "vendors"} if where == "fetch" else set()), streams
    assert all(st == "failed" for s, (st, _, _) in streams.items() if s not in applied), streams
    # The next run converges.
    nxt = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (nxt,)).fetchone()[0] == "succeeded"
    assert_matches_fake(db, fake)


def _terminate_sync_worker_while_its_apply_worker_waits(db, fake, cluster, where, sync_worker_there):
    """Starts an incremental run whose apply worker waits on a lock another session holds on
    square.catalog_items, waits until the sync worker is `where` (sync_worker_there(run) holds),
    SIGTERMs the sync worker and waits until both workers have left (the
    lock is still held: nothing but the sync worker's request stops the apply worker). -> run id"""
    holder = cluster.connect(autocommit=False)
    holder.execute("LOCK TABLE square.catalog_items IN ACCESS EXCLUSIVE MODE")
    try:
        run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        applier = wait_for(lambda: (db.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'squaresync apply'"
                                               " AND wait_event_type = 'Lock'").fetchone() or [None])[0],
                           60, "the apply worker to wait inside the catalog apply")
        wait_for(lambda: sync_worker_there(run), 60, "the sync worker to be " + where)
        syncer = worker_pid(db)
        db.execute("SELECT pg_terminate_backend(%s)", (syncer,))

        # Both leave, the apply worker first: the sync worker waits for it before it exits (and
        # releases the run lock), so no sample finds the sync worker gone and the apply worker not.
        def both_gone():
            present = {r[0] for r in db.execute("SELECT pid FROM pg_stat_activity WHERE pid IN (%s, %s)",
                                                (applier, syncer))}
            assert not (syncer not in present and applier in present), "the sync worker left before its apply worker"
            return not present
        wait_for(both_gone, 30, "both workers to stop")
    finally:
        holder.rollback()
        holder.close()
    return run


def _next_run_converges(db, fake, run):
    nxt = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    assert nxt != run
    assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0] == "failed"
    assert_matches_fake(db, fake)
    assert db.execute("SELECT count(*) FROM square.square_item_library_export").fetchone()[0] == db.execute(
        "SELECT count(*) FROM squaresync._item_library_rows((SELECT merchant_id FROM squaresync.connection))").fetchone()[0]


def test_sigterm_of_the_sync_worker_waiting_for_its_apply_worker_stops_both_and_the_next_run_converges(db, fake, cluster):
    log_start = len(cluster.log_text())
    db.execute("SELECT squaresync.foundation()")
    before = db.execute("SELECT count(*), max(updated_at) FROM square.catalog_items").fetchone()
    fake.mutate({"catalog_items": {"update": 3}, "inventory_counts": {"update": 4}, "orders": {"update": 5}})
    # The sync worker has applied the sales side and waits for the apply worker: the SIGTERM, served
    # as a cancel, ends that wait; the sync worker asks the apply worker to stop, waits for it, then
    # records the run failed itself.
    run = _terminate_sync_worker_while_its_apply_worker_waits(
        db, fake, cluster, "waiting for the apply worker", lambda run: db.execute(
            "SELECT 1 FROM pg_stat_activity WHERE backend_type = 'squaresync sync'"
            " AND query = 'squaresync: waiting for the apply worker'").fetchone())
    # Nothing of the catalog side was applied, nor the export rebuilt; the orders stay applied.
    status, error = db.execute("SELECT status, error FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()
    assert status == "failed" and "asked to stop" in error, (status, error)
    streams = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT stream, status, error FROM squaresync.sync_run_streams WHERE run_id = %s", (run,))}
    for s in ("catalog", "inventory", "vendors"):
        assert streams[s][0] == "failed" and "asked to stop" in streams[s][1], streams
    assert streams["orders"] == ("succeeded", None), streams
    assert db.execute("SELECT count(*), max(updated_at) FROM square.catalog_items").fetchone() == before
    assert db.execute("SELECT derived_at FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0] is None
    _next_run_converges(db, fake, run)
    assert "terminated by signal" not in cluster.log_text()[log_start:]


def test_sigterm_of_the_sync_worker_during_its_fetch_stops_its_apply_worker_and_records_the_run_failed(db, fake, cluster):
    """The sync worker is still fetching (the orders search hangs) when the SIGTERM comes: it
    stops its transfers, asks the apply worker to stop and waits for it, then records the run
    failed itself, none of its streams left 'running'."""
    log_start = len(cluster.log_text())
    db.execute("SELECT squaresync.foundation()")
    before = db.execute("SELECT count(*), max(updated_at) FROM square.catalog_items").fetchone()
    fake.mutate({"catalog_items": {"update": 3}, "inventory_counts": {"update": 4}, "orders": {"update": 5}})
    # One transfer at a time: the catalog side's walks, then the orders' first search, which hangs.
    db.execute("ALTER SYSTEM SET squaresync.max_concurrency = 1")
    db.execute("SELECT pg_reload_conf()")
    fake.fault(fault="hang", path="/v2/orders/search", delay_ms=60000)
    try:
        # The apply worker waits inside the catalog apply (so the catalog side was handed over, its
        # pages all staged) and the hanging search is the one transfer: the sync worker waits for it.
        # (Each catalog-side stream of this small day has one page: none waits behind the hang.)
        run = _terminate_sync_worker_while_its_apply_worker_waits(
            db, fake, cluster, "waiting for the orders' first page",
            lambda run: fake.fired("hang"))
    finally:
        fake.clear_faults()
        db.execute("ALTER SYSTEM RESET squaresync.max_concurrency")
        db.execute("SELECT pg_reload_conf()")
    status, error = db.execute("SELECT status, error FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()
    assert status == "failed" and "asked to stop" in error, (status, error)
    streams = dict(db.execute("SELECT stream, status FROM squaresync.sync_run_streams WHERE run_id = %s",
                              (run,)).fetchall())
    assert set(streams.values()) <= {"failed", "succeeded"}, streams
    assert streams["catalog"] == streams["orders"] == "failed", streams
    assert db.execute("SELECT count(*), max(updated_at) FROM square.catalog_items").fetchone() == before
    _next_run_converges(db, fake, run)
    assert "terminated by signal" not in cluster.log_text()[log_start:]


def test_a_first_load_stopped_at_random_moments_keeps_its_tables_whole_and_the_next_foundation_converges(
        db, fake, cluster):
    """A foundation into empty tables (a first load: their secondary indexes and foreign keys dropped
    and made again inside each stream's transaction) gets a SIGTERM or a cancel at a random moment,
    eight times: each time its own worker records it failed (or it had already finished), the
    tables keep every index and foreign key, validated, and a foundation then equals the fake."""
    rng = random.Random(20261130)
    expected = definitions(upkeep(db))
    started = time.time()
    db.execute("SELECT squaresync.foundation()")
    took = time.time() - started
    stopped = 0
    for k in range(8):
        fresh_extension(db, fake)
        run = db.execute("SELECT squaresync.foundation(wait => false)").fetchone()[0]
        time.sleep(rng.uniform(0, took))
        signal_fn = ("pg_terminate_backend", "pg_cancel_backend")[k % 2]
        stopped += len(db.execute(f"SELECT {signal_fn}(worker_pid) FROM squaresync.sync_runs"
                                  " WHERE id = %s AND status = 'running'", (run,)).fetchall())
        wait_for(lambda: db.execute("SELECT status <> 'running' FROM squaresync.sync_runs WHERE id = %s",
                                    (run,)).fetchone()[0], 60, "the run to end")
        status, error = db.execute("SELECT status, error FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()
        assert status == "succeeded" or (status == "failed" and "asked to stop" in error), (k, status, error)
        assert definitions(upkeep(db)) == expected, k
        nxt = db.execute("SELECT squaresync.foundation()").fetchone()[0]
        assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (nxt,)).fetchone()[0] == "succeeded"
        assert_matches_fake(db, fake)
    assert stopped >= 1, "no foundation was still running when its signal came"


def test_immediate_shutdown_mid_run_then_restart_converges(db, fake, cluster):
    fake.fault(latency_ms=200)
    db.execute("SELECT squaresync.foundation(wait => false)")
    worker_pid(db)
    time.sleep(1.0)
    cluster.stop("immediate")
    fake.clear_faults()
    cluster.start()
    con = cluster.connect()
    con.execute("SELECT squaresync.incremental()")
    statuses = [r[0] for r in con.execute("SELECT status FROM squaresync.sync_runs ORDER BY id").fetchall()]
    assert statuses == ["failed", "succeeded"], statuses
    assert_matches_fake(con, fake)
    con.close()


def test_drop_extension_during_a_run_completes_and_the_worker_leaves(db, fake, cluster):
    """The DROP never waits on the run: with each request a second late the run takes far longer
    than the DROP's lock_timeout (3 s), which would fail it had it waited on a lock the run holds."""
    log_start = len(cluster.log_text())
    fake.fault(latency_ms=1000)
    fake.fault(fault="hang", path="/v2/locations", delay_ms=5000)
    db.execute("SELECT squaresync.foundation(wait => false)")
    pid = worker_pid(db)
    # The worker waits for its first request: no transaction of its is open.
    wait_for(lambda: fake.fired("hang"), 30, "the locations request to hang")
    other = cluster.connect()
    other.execute("SET lock_timeout = '3s'")
    other.execute("DROP EXTENSION squaresync CASCADE")
    wait_gone(db, pid, "the worker to leave")
    fake.clear_faults()
    assert "terminated by signal" not in cluster.log_text()[log_start:]
    other.close()


def test_drop_extension_at_random_moments_of_a_run_never_deadlocks_and_the_workers_leave(db, fake, cluster):
    """DROP EXTENSION at a random moment of an incremental run (fetching, staging, applying in either
    worker, recording): the DROP waits at most for the transaction in progress, never deadlocks with
    it (each worker transaction holds the extension, which the DROP locks before the tables), and
    both workers leave saying why, not with a missing relation."""
    rng = random.Random(20261130)
    interrupted = 0
    other = cluster.connect()
    other.execute("SET lock_timeout = '10s'")
    try:
        for k in range(12):
            db.execute("SELECT squaresync.foundation()")
            fake.mutate({"orders": {"update": 5}, "catalog_items": {"update": 2}, "inventory_counts": {"update": 4}})
            log_start = len(cluster.log_text())
            db.execute("SELECT squaresync.incremental(wait => false)")
            pid = worker_pid(db)
            time.sleep(rng.uniform(0, 0.35))
            other.execute("DROP EXTENSION squaresync CASCADE")  # (a deadlock would fail it)
            wait_gone(db, pid, "the sync worker to leave")
            wait_for(lambda: not db.execute("SELECT FROM pg_stat_activity WHERE backend_type"
                                            " IN ('squaresync sync', 'squaresync apply')").fetchall(),
                     30, "the apply worker to leave")
            log = cluster.log_text()[log_start:]
            assert "terminated by signal" not in log and "does not exist" not in log, (k, log[-2000:])
            said = [line for line in log.splitlines() if ("squaresync sync" in line or "squaresync apply" in line)
                    and ("WARNING" in line or "ERROR" in line or "FATAL" in line or " stopped: " in line)]
            for line in said:
                assert "the squaresync extension was dropped while the run was in progress" in line or \
                    "terminating background worker" in line, (k, line)
            interrupted += bool(said)
            db.execute("CREATE EXTENSION squaresync")
            db.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
            fake.reset()
    finally:
        other.close()
    assert interrupted >= 3, f"only {interrupted} of 12 runs were still going when the DROP came"


def test_drop_database_during_a_run_completes_and_the_worker_leaves(cluster, fake):
    """DROP DATABASE ... WITH (FORCE) terminates the worker, and PostgreSQL itself fails the DROP
    ("being accessed by other users") unless every backend of the database has left within its own
    wait of a few seconds: the DROP succeeding is the check."""
    log_start = len(cluster.log_text())
    admin = cluster.connect()
    admin.execute("DROP DATABASE IF EXISTS shopdrop")
    admin.execute("CREATE DATABASE shopdrop")
    con = cluster.connect("shopdrop")
    con.execute("CREATE EXTENSION squaresync")
    con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
    fake.fault(latency_ms=150)
    con.execute("SELECT squaresync.foundation(wait => false)")
    pid = worker_pid(con)
    con.close()
    admin.execute("DROP DATABASE shopdrop WITH (FORCE)")
    wait_gone(admin, pid, "the worker to leave", 20)
    fake.clear_faults()
    assert "terminated by signal" not in cluster.log_text()[log_start:]
    admin.close()


def test_drop_database_elsewhere_does_not_wait_for_a_run_that_waits_for_square(db, fake, cluster):
    """DROP DATABASE of another database waits until every backend of the cluster has absorbed its
    ProcSignalBarrier (PostgreSQL 15 and later): a sync worker waiting for Square absorbs it at
    once, so the DROP returns while the run still waits for its request. The request hangs 60 s from
    before the DROP starts, and the DROP is bounded by a 20 s statement_timeout: had the worker
    absorbed the barrier only once the request was answered, the DROP would fail."""
    if db.info.server_version < 150000:
        pytest.skip("DROP DATABASE emits a ProcSignalBarrier from PostgreSQL 15 on")
    db.execute("SELECT squaresync.foundation()")
    admin = cluster.connect()
    admin.execute("DROP DATABASE IF EXISTS shopgone")
    admin.execute("CREATE DATABASE shopgone")
    fake.fault(fault="hang", path="/v2/locations", delay_ms=60000)
    try:
        run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        pid = worker_pid(db)
        wait_for(lambda: fake.fired("hang"), 30, "the locations request to hang")
        admin.execute("SET statement_timeout = '20s'")
        admin.execute("DROP DATABASE shopgone")
        # The run was still waiting for Square when the DROP returned.
        assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0] == "running"
        assert db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        db.execute("SELECT pg_cancel_backend(%s)", (pid,))
        wait_gone(db, pid, "the sync worker to exit")
    finally:
        fake.clear_faults()
        admin.close()
    assert db.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0] == "failed"
    assert db.execute("SELECT squaresync.incremental()").fetchone()[0] > run
    assert_matches_fake(db, fake)


def incremental_under_lock(db, cluster, lock):
    """An incremental run while another session holds `lock` (a LOCK TABLE statement) for longer than
    squaresync.lock_timeout (1 s here): the run must end partly failed."""
    db.execute("ALTER SYSTEM SET squaresync.lock_timeout = '1s'")
    db.execute("SELECT pg_reload_conf()")
    holder = cluster.connect(autocommit=False)
    holder.execute(lock)
    try:
        with pytest.raises(Exception, match="partly failed"):
            db.execute("SELECT squaresync.incremental()")
    finally:
        holder.rollback()
        holder.close()
        db.execute("ALTER SYSTEM RESET squaresync.lock_timeout")
        db.execute("SELECT pg_reload_conf()")


def test_a_lock_held_on_a_data_table_fails_the_stream_clearly(synced, fake, cluster):
    db = synced
    incremental_under_lock(db, cluster, "LOCK TABLE square.orders IN ACCESS EXCLUSIVE MODE")
    run, *_ = last_run(db)
    errors = stream_errors(db, run)
    assert errors["orders"][0] == "failed" and "lock_timeout" in errors["orders"][1], errors["orders"]
    assert errors["orders"][2] == "55P03", errors["orders"]
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)


def test_no_free_worker_slot_is_a_clear_error(cluster, fake):
    from pgcluster import Cluster
    # The launcher and the logical replication launcher take two of the three slots (no maintenance
    # worker: its database does not exist), leaving one for a sync.
    c = Cluster("slots", settings={"max_worker_processes": 3, "squaresync.database": "'none'"}).init().start()
    try:
        con = c.connect()
        con.execute("CREATE EXTENSION squaresync")
        con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        # Fill the remaining slot with a run that takes a while, then ask for another database's run.
        fake.fault(latency_ms=300)
        con.execute("CREATE DATABASE other")
        o = c.connect("other")
        o.execute("CREATE EXTENSION squaresync")
        o.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        first = con.execute("SELECT squaresync.foundation(wait => false)").fetchone()[0]
        with pytest.raises(Exception, match="max_worker_processes"):
            o.execute("SELECT squaresync.incremental()")
        fake.clear_faults()
        # The sync worker holds the last slot, so no apply worker can start for the catalog side: it
        # applies it itself, and the run succeeds all the same (joined here: one run at a time).
        assert con.execute("SELECT squaresync.foundation()").fetchone()[0] == first
        assert con.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (first,)).fetchone()[0] == "succeeded"
        assert_matches_fake(con, fake)
        o.close()
        con.close()
        assert "terminated by signal" not in c.log_text()
    finally:
        c.destroy()


def test_concurrent_incremental_calls_from_several_sessions_make_one_run(synced, fake, cluster):
    from test_ops import concurrent_calls
    ids, errors = concurrent_calls(cluster, synced, "SELECT squaresync.incremental()", 6)
    assert not errors and len(ids) == 6 and len(set(ids)) == 1, (ids, errors)
    assert synced.execute("SELECT count(*) FROM squaresync.sync_runs WHERE kind = 'incremental'").fetchone()[0] == 1
