"""test_ops.py: operations (issue 7): the built-in schedule, pg_cron for real, the health view's
figures and alerts, a dashboard role's grants, the token's secrecy, TLS verification."""
import os
import re
import tempfile
import threading
import time

import psycopg
import pytest

from fakesquare import FakeSquare, assert_matches_fake
from pgcluster import Cluster


def wait_for(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def concurrent_calls(cluster, watcher, sql, n):
    """n sessions call `sql` (a run function) at once while another session holds the staging
    tables, so that the run they start cannot end before every caller waits for a run (each polls
    with wait_event_type 'Extension'; one that started no run yet waits for the start lock or on
    the run's row, never so). -> (the run ids the calls returned, their errors)"""
    ids, errors = [], []

    def call():
        try:
            c = cluster.connect()
            ids.append(c.execute(sql).fetchone()[0])
            c.close()
        except Exception as e:  # reported by the caller's assertions
            errors.append(e)

    holder = cluster.connect(autocommit=False)
    holder.execute("LOCK TABLE squaresync.stage_locations IN ACCESS EXCLUSIVE MODE")
    threads = [threading.Thread(target=call) for _ in range(n)]
    try:
        for t in threads:
            t.start()
        wait_for(lambda: watcher.execute("SELECT count(*) = %s FROM pg_stat_activity WHERE query = %s"
                                         " AND wait_event_type = 'Extension'", (n, sql)).fetchone()[0],
                 60, f"the {n} callers to wait for a run")
    finally:
        holder.rollback()
        holder.close()
    for t in threads:
        t.join()
    return ids, errors


def set_and_reload(con, **settings):
    for k, v in settings.items():
        con.execute(f"ALTER SYSTEM SET squaresync.{k} = '{v}'")
    con.execute("SELECT pg_reload_conf()")


def reset_and_reload(con, *names):
    for k in names:
        con.execute(f"ALTER SYSTEM RESET squaresync.{k}")
    con.execute("SELECT pg_reload_conf()")


def wait_idle(con):
    wait_for(lambda: con.execute("SELECT count(*) = 0 FROM squaresync.sync_runs WHERE status = 'running'").fetchone()[0],
             60, "the running run to finish")


def test_builtin_interval_starts_runs_without_overlap(db, fake):
    """Runs longer than the interval: the next scheduled run starts only when the last has finished.
    (That missed intervals are not replayed in a burst is the schedule's decision, tested below.)"""
    db.execute("SELECT squaresync.foundation()")
    fake.fault(latency_ms=300)  # each run takes a few seconds: longer than the interval
    try:
        set_and_reload(db, sync_interval="1s", launcher_naptime="1s")
        wait_for(lambda: db.execute("SELECT count(*) >= 3 FROM squaresync.sync_runs WHERE triggered_by = 'schedule'"
                                    " AND status <> 'running'").fetchone()[0], 90, "three scheduled runs")
    finally:
        reset_and_reload(db, "sync_interval", "launcher_naptime")
        fake.clear_faults()
    wait_idle(db)
    # (A run the scheduler started before it read the reset may still be going: finished runs only.)
    runs = db.execute("SELECT id, kind, status, started_at, finished_at FROM squaresync.sync_runs"
                      " WHERE triggered_by = 'schedule' AND status <> 'running' ORDER BY id").fetchall()
    assert len(runs) >= 3 and all(r[1] == "incremental" and r[2] == "succeeded" for r in runs), runs
    # A scheduled run never started while another was in progress.
    for a, b in zip(runs, runs[1:]):
        assert b[3] >= a[4], f"run {b[0]} started before run {a[0]} finished"


def test_schedule_backs_off_after_failures_and_does_not_replay(db, fake):
    db.execute("SELECT squaresync.foundation()")
    # The schedule's decision, as the maintenance worker asks it.
    due = "SELECT squaresync._scheduled_run_due(interval '1h', %s)"
    assert db.execute(due, ("",)).fetchone()[0] is None  # just ran
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() - interval '5 hours'")
    assert db.execute(due, ("",)).fetchone()[0] == "incremental"  # one run, not five
    # Two consecutive failures: the interval doubles twice (4h), so 5 hours ago is due, 3 hours is not.
    db.execute("INSERT INTO squaresync.sync_runs (id, kind, status, started_at) VALUES"
               " (100, 'incremental', 'failed', now() - interval '4 hours'),"
               " (101, 'incremental', 'failed', now() - interval '3 hours')")
    assert db.execute(due, ("",)).fetchone()[0] is None
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() - interval '4 hours 1 minute' WHERE id = 101")
    assert db.execute(due, ("",)).fetchone()[0] == "incremental"
    # A daily foundation slot that has passed today and has no foundation since.
    db.execute("UPDATE squaresync.sync_runs SET started_at = started_at - interval '2 days' WHERE kind = 'foundation'")
    assert db.execute(due, ("00:00",)).fetchone()[0] == "foundation"
    db.execute("UPDATE squaresync.sync_runs SET started_at = now() WHERE kind = 'foundation'")
    assert db.execute(due, ("00:00",)).fetchone()[0] is None
    with pytest.raises(Exception, match="HH:MM"):
        db.execute("ALTER SYSTEM SET squaresync.foundation_at = '25:00'")


def test_health_view_figures_and_alerts(db, fake):
    first = db.execute("SELECT squaresync.foundation()").fetchone()[0]
    second = db.execute("SELECT squaresync.incremental()").fetchone()[0]
    h = {r[0]: r for r in db.execute(
        "SELECT table_name, stale, last_status, rows_changed, api_requests, error_rate_24h, alerts,"
        " median_duration_seconds, expected_rows, actual_rows, last_duration_seconds FROM squaresync.health").fetchall()}
    assert set(h) >= {"orders", "vendors", "catalog_items", "transactions"}
    durations = [r[0] for r in db.execute("SELECT extract(epoch FROM duration)::float8 FROM squaresync.sync_runs"
                                          " WHERE id IN (%s, %s)", (first, second)).fetchall()]
    orders = h["orders"]
    assert orders[1] is False and orders[2] == "succeeded" and orders[6] == []
    assert orders[3] == 0  # the last run (incremental, nothing changed) changed no row
    assert orders[4] == db.execute("SELECT api_requests FROM squaresync.sync_runs WHERE id = %s", (second,)).fetchone()[0]
    assert orders[5] == 0.0
    assert abs(orders[7] - sorted(durations)[0] - (sorted(durations)[1] - sorted(durations)[0]) / 2) < 1e-6
    assert orders[8] == orders[9] == db.execute("SELECT count(*) FROM square.orders").fetchone()[0]

    # Square retires an endpoint: that stream fails three times, the others go on.
    fake.fault(fault="410", path="/v2/vendors/search", count=100)
    for _ in range(3):
        with pytest.raises(Exception, match="partly failed"):
            db.execute("SELECT squaresync.incremental()")
    fake.clear_faults()
    v = db.execute("SELECT last_status, alerts, error_rate_24h FROM squaresync.health WHERE table_name = 'vendors'").fetchone()
    assert v[0] == "failed"
    assert "endpoint retired (410)" in v[1] and "failing repeatedly" in v[1], v
    assert abs(v[2] - 3 / 5) < 1e-9
    assert db.execute("SELECT alerts FROM squaresync.health WHERE table_name = 'orders'").fetchone()[0] == []

    # A row changed behind the sync's back shows as a divergence.
    db.execute("DELETE FROM square.payments WHERE id = (SELECT min(id) FROM square.payments)")
    assert "rows diverge from the last sync" in db.execute(
        "SELECT alerts FROM squaresync.health WHERE table_name = 'payments'").fetchone()[0]


def test_waiting_for_a_run_keeps_the_callers_memory_flat(db, fake, cluster):
    """foundation() with wait => true polls the run every 100 ms in one SPI connection; each poll
    frees what it allocated, so a caller waiting for an hour-long run holds no more than at its start:
    its memory contexts' grand total is the same after ~30 more polls (before, every poll kept its
    result: ~8 kB each, ~300 MB an hour)."""
    # The run waits for its first request (the locations, held back a minute) while the caller polls.
    fake.fault(fault="hang", path="/v2/locations", delay_ms=60000)
    waiter = cluster.connect()
    pid = waiter.execute("SELECT pg_backend_pid()").fetchone()[0]
    outcome = []

    def call():
        try:
            waiter.execute("SELECT squaresync.foundation()")
            outcome.append("returned")
        except psycopg.Error as e:
            outcome.append(str(e))

    done = threading.Thread(target=call)
    done.start()

    def memory():
        start = len(cluster.log_text())
        db.execute("SELECT pg_log_backend_memory_contexts(%s)", (pid,))
        m = wait_for(lambda: re.search(rf"\[{pid}\][^\n]*Grand total: (\d+) bytes", cluster.log_text()[start:]), 10,
                     "the waiting backend's memory contexts in the log")
        return int(m.group(1))

    try:
        wait_for(lambda: fake.fired("hang"), 30, "the run's locations request to hang")
        time.sleep(1.0)  # ~10 polls first, so that the first sample finds the caller's caches loaded
        # The least of three samples: one taken while a poll's query runs holds that query's memory.
        first = min(memory() for _ in range(3))
        time.sleep(3.0)  # ~30 polls
        second = min(memory() for _ in range(3))
        assert db.execute("SELECT 1 FROM squaresync.sync_runs WHERE status = 'running'").fetchone(), \
            "the run ended before the second measurement"
    finally:
        db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE backend_type = 'squaresync sync'")
        done.join(300)
        fake.clear_faults()
        waiter.close()
    assert outcome and "failed" in outcome[0], outcome  # the canceled run, reported to the waiting caller
    assert second <= first, f"the waiting backend's memory grew from {first} to {second} bytes"


def test_dashboard_role_reads_data_and_status_but_not_the_token(db, fake, cluster):
    db.execute("SELECT squaresync.foundation()")
    db.execute("DROP ROLE IF EXISTS dashboard")
    db.execute("CREATE ROLE dashboard LOGIN")
    # The grants docs/security in the README give a read-only dashboard role.
    db.execute("GRANT USAGE ON SCHEMA square, squaresync TO dashboard")
    db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA square TO dashboard")
    db.execute("GRANT SELECT ON squaresync.sync_state, squaresync.health, squaresync.sync_runs,"
               " squaresync.sync_run_streams TO dashboard")
    try:
        con = cluster.connect(user="dashboard")
        assert con.execute("SELECT count(*) FROM square.orders").fetchone()[0] > 0
        assert con.execute("SELECT count(*) FROM squaresync.sync_state").fetchone()[0] == 17
        assert con.execute("SELECT count(*) FROM squaresync.health").fetchone()[0] == 17
        # The launcher runs (preloaded): its alert must not fire for a role that cannot see other
        # roles' backend_type in pg_stat_activity.
        assert not con.execute("SELECT pg_has_role('pg_read_all_stats', 'MEMBER')").fetchone()[0]
        set_and_reload(db, sync_interval="1h")
        try:
            wait_for(lambda: con.execute("SHOW squaresync.sync_interval").fetchone()[0] == "1h", 10,
                     "the dashboard's session to see sync_interval")
            alerts = [a for (row,) in con.execute("SELECT alerts FROM squaresync.health").fetchall() for a in row]
            assert not [a for a in alerts if a.startswith("schedule inactive")], alerts
        finally:
            reset_and_reload(db, "sync_interval")
        for sql in ("SELECT access_token FROM squaresync.connection", "SELECT squaresync.incremental()",
                    "SELECT squaresync.connect('x')", "SELECT * FROM squaresync.changes"):
            with pytest.raises(Exception, match="permission denied"):
                con.execute(sql)
        con.close()
    finally:
        db.execute("DROP OWNED BY dashboard")
        db.execute("DROP ROLE dashboard")


def test_access_token_never_appears_in_logs_views_or_activity(cluster):
    """The token, passed as a literal (psql's simple protocol: the statement text holds it), is not in
    pg_stat_activity while connect() runs nor after, not in the errors of failing runs and connects,
    not in the server log at DEBUG1 (with the STATEMENT lines of errors), nor in any view, control
    table or setting."""
    token = "EAAAsecretTOKEN1234567890zyx"
    fake = FakeSquare(scale=0.01, token=token).start()
    con = cluster.connect()
    watcher = cluster.connect()
    texts, errors = [], []

    def connect(tok):  # no parameters: one Query message, the token in the statement's text
        return con.execute(f"SELECT squaresync.connect('{tok}', base_url => '{fake.url}')")

    try:
        con.execute("ALTER SYSTEM SET log_min_messages = 'debug1'")
        con.execute("ALTER SYSTEM SET log_min_error_statement = 'error'")
        con.execute("SELECT pg_reload_conf()")
        con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
        con.execute("CREATE EXTENSION squaresync")
        pid = con.execute("SELECT pg_backend_pid()").fetchone()[0]
        # While connect() waits for Square (1 s late), another session reads its activity. (Until
        # connect()'s first line, about a millisecond after the statement starts, PostgreSQL shows the
        # statement as sent: README, Security. The reader looks once connect() waits for Square.)
        fake.fault(latency_ms=1000)
        seen = []

        def read_activity():
            time.sleep(0.5)
            seen.append(wait_for(lambda: watcher.execute(
                "SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)).fetchone(), 10,
                "connect() to be running")[0])

        reader = threading.Thread(target=read_activity)
        reader.start()
        connect(token)
        reader.join(15)
        fake.clear_faults()
        assert seen == ["SELECT squaresync.connect(<access token redacted>)"], seen
        texts += seen
        texts.append(watcher.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0])
        con.execute("SELECT squaresync.foundation()")
        # Faults: Square echoing errors, retries, a rejected token, failed connects.
        fake.fault(fault="500", count=3)
        fake.fault(fault="429", count=2, retry_after=0)
        con.execute("SELECT squaresync.incremental()")
        fake.fault(fault="401", count=50)
        with pytest.raises(Exception, match="access token rejected") as e:
            con.execute("SELECT squaresync.incremental()")
        errors.append(e.value)
        with pytest.raises(Exception, match="access token rejected") as e:
            connect(token)
        errors.append(e.value)
        fake.clear_faults()
        with pytest.raises(Exception, match="access token rejected") as e:
            connect(token + "x")
        errors.append(e.value)
        texts += [str(x) + " " + str(getattr(x, "diag", None) and x.diag.message_hint) for x in errors]
        texts.append(cluster.log_text())
        for (name,) in con.execute("SELECT format('%I.%I', schemaname, viewname) FROM pg_views"
                                   " WHERE schemaname IN ('squaresync', 'square')").fetchall():
            texts.append(str(con.execute(f"SELECT * FROM {name}").fetchall()))
        for table in ("sync_runs", "sync_run_streams", "stream_state", "changes"):
            texts.append(str(con.execute(f"SELECT * FROM squaresync.{table}").fetchall()))
        texts.append(str(con.execute("SELECT * FROM pg_stat_activity").fetchall()))
        texts.append(str(con.execute("SELECT name, setting FROM pg_settings").fetchall()))
        log = cluster.log_text()
        assert "DEBUG" in log and "squaresync" in log, "the log was not written at DEBUG1"
        assert "STATEMENT:  SELECT squaresync.connect(<access token redacted>)" in log, \
            "the failed connect's STATEMENT line was not logged: the check below proves less than it says"
        for i, t in enumerate(texts):
            assert token not in t, f"the token leaked into text #{i}"
        # Only the owner may read it.
        assert con.execute("SELECT has_column_privilege('public', 'squaresync.connection', 'access_token', 'SELECT')"
                           ).fetchone()[0] is False
    finally:
        con.execute("ALTER SYSTEM RESET log_min_messages")
        con.execute("ALTER SYSTEM RESET log_min_error_statement")
        con.execute("SELECT pg_reload_conf()")
        fake.stop()
        watcher.close()


@pytest.mark.parametrize("protocol", ["simple", "extended"])
@pytest.mark.parametrize("settings", [{"log_min_duration_statement": "0"},
                                      {"log_min_duration_sample": "0", "log_statement_sample_rate": "1"},
                                      {"log_transaction_sample_rate": "1"}, {"log_statement": "'all'"}])
def test_connect_refuses_while_the_server_would_log_its_token(cluster, settings, protocol):
    """Logging that writes a statement's text or parameters when it ends would write the token:
    connect() refuses and stores nothing; from psql's simple protocol (the token a literal in one
    query message) nothing is logged at all. log_statement = 'all' logs the statement before
    connect() runs: connect() stores nothing and says so. (With the extended protocol PostgreSQL logs
    the parse and bind steps apart, before connect() runs: the message says to replace the token.)"""
    token = "EAAAloggedTOKEN" + "".join(k[4:8] for k in settings) + protocol
    already = "log_statement" in settings
    fake = FakeSquare(scale=0.01, token=token).start()
    con = cluster.connect()

    def connect():
        if protocol == "simple":  # no parameters: psycopg sends one Query message, as psql does
            return con.execute(f"SELECT squaresync.connect('{token}', base_url => '{fake.url}')")
        return con.execute("SELECT squaresync.connect(%s, base_url => %s)", (token, fake.url))

    try:
        con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
        con.execute("CREATE EXTENSION squaresync")
        log_start = len(cluster.log_text())
        for k, v in settings.items():
            con.execute(f"SET {k} = {v}")
        with pytest.raises(Exception, match="already written this statement" if already else "does not run while") as e:
            connect()
        assert next(iter(settings)) in str(e.value) and "not stored" in str(e.value) and token not in str(e.value)
        assert con.execute("SELECT count(*) FROM squaresync.connection").fetchone()[0] == 0
        for k in settings:
            con.execute(f"RESET {k}")
        assert connect().fetchone()[0]
        time.sleep(0.3)  # the logging collector's last lines
        if already:
            assert token in cluster.log_text()[log_start:]
        elif protocol == "simple":
            assert token not in cluster.log_text()[log_start:]
    finally:
        for k in settings:
            con.execute(f"RESET {k}")
        con.close()
        fake.stop()


def test_tls_verification_with_the_right_and_the_wrong_ca(cluster):
    tls_dir = tempfile.mkdtemp(prefix="squaresync-tls-")
    os.chmod(tls_dir, 0o755)
    fake = FakeSquare(scale=0.01, tls_dir=tls_dir).start()
    assert fake.url.startswith("https://127.0.0.1:")
    con = cluster.connect()
    try:
        os.chmod(os.path.join(tls_dir, "ca.pem"), 0o644)
        con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
        con.execute("CREATE EXTENSION squaresync")
        # Without the private CA, the system store does not trust the server: a clear error.
        with pytest.raises(Exception, match="(?i)certificate"):
            con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        con.execute("ALTER SYSTEM SET squaresync.ca_file = %s" % ("'" + os.path.join(tls_dir, "ca.pem") + "'"))
        con.execute("SELECT pg_reload_conf()")
        con.close()
        con = cluster.connect()
        con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        con.execute("SELECT squaresync.foundation()")
        assert_matches_fake(con, fake)
        # A wrong CA (another server's) fails the run with a certificate error.
        other = tempfile.mkdtemp(prefix="squaresync-tls-other-")
        os.chmod(other, 0o755)
        other_fake = FakeSquare(dataset="demo", tls_dir=other).start()
        other_fake.stop()
        os.chmod(os.path.join(other, "ca.pem"), 0o644)
        con.execute("ALTER SYSTEM SET squaresync.ca_file = %s" % ("'" + os.path.join(other, "ca.pem") + "'"))
        con.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        with pytest.raises(Exception, match="(?i)certificate"):
            con.execute("SELECT squaresync.incremental()")
    finally:
        con.execute("ALTER SYSTEM RESET squaresync.ca_file")
        con.execute("SELECT pg_reload_conf()")
        fake.stop()


def test_pg_cron_job_success_and_failure():
    """A real pg_cron: one job syncs successfully, another (its Square rejects the token) fails."""
    good, bad = FakeSquare(dataset="demo").start(), FakeSquare(dataset="demo").start()
    c = Cluster("cron", preload=("pg_cron", "squaresync"),
                settings={"cron.database_name": "'postgres'", "cron.use_background_workers": "on"}).init().start()
    try:
        con = c.connect()
        con.execute("CREATE DATABASE shop2")
        con.execute("CREATE EXTENSION pg_cron")
        con.execute("CREATE EXTENSION squaresync")
        con.execute("SELECT squaresync.connect(%s, base_url => %s)", (good.token, good.url))
        con2 = c.connect("shop2")
        con2.execute("CREATE EXTENSION squaresync")
        con2.execute("SELECT squaresync.connect(%s, base_url => %s)", (bad.token, bad.url))
        con2.close()
        bad.fault(fault="401", count=1000)
        con.execute("SELECT cron.schedule('square-sync', '* * * * *', 'SELECT squaresync.incremental()')")
        con.execute("SELECT cron.schedule_in_database('square-sync-2', '* * * * *',"
                    " 'SELECT squaresync.incremental()', 'shop2')")
        rows = wait_for(lambda: (lambda r: r if len({x[0] for x in r}) == 2 else None)(con.execute(
            "SELECT j.jobname, d.status, d.return_message FROM cron.job_run_details d JOIN cron.job j USING (jobid)"
            " WHERE d.status IN ('succeeded', 'failed')").fetchall()), 130, "both cron jobs to run")
        status = {r[0]: (r[1], r[2]) for r in rows}
        assert status["square-sync"][0] == "succeeded", status
        assert status["square-sync-2"][0] == "failed" and "access token rejected" in status["square-sync-2"][1], status
        run = con.execute("SELECT kind, status FROM squaresync.sync_runs ORDER BY id DESC LIMIT 1").fetchone()
        assert run == ("incremental", "succeeded")
        con.execute("SELECT cron.unschedule('square-sync')")
        con.execute("SELECT cron.unschedule('square-sync-2')")
        con.close()
    finally:
        c.destroy()
        good.stop()
        bad.stop()


def test_without_preloading_the_functions_work_and_the_schedule_says_what_it_needs(fake):
    c = Cluster("nopreload", preload=()).init().start()
    try:
        con = c.connect()
        con.execute("CREATE EXTENSION squaresync")
        con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
        run = con.execute("SELECT squaresync.foundation()").fetchone()[0]
        assert con.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0] == "succeeded"
        assert_matches_fake(con, fake)
        assert con.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'squaresync launcher'"
                           ).fetchone()[0] == 0
        con.execute("ALTER SYSTEM SET squaresync.sync_interval = '15min'")
        con.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)
        alerts = con.execute("SELECT alerts FROM squaresync.health WHERE table_name = 'orders'").fetchone()[0]
        assert "schedule inactive: squaresync is not in shared_preload_libraries" in alerts, alerts
        con.close()
    finally:
        c.destroy()


def test_sync_role_runs_the_worker_with_only_the_privileges_it_needs(db, fake, cluster):
    db.execute("DROP ROLE IF EXISTS syncer")
    db.execute("CREATE ROLE syncer LOGIN")
    db.execute("SELECT squaresync.grant_sync_privileges('syncer')")
    db.execute("ALTER SYSTEM SET squaresync.sync_role = 'syncer'")
    db.execute("SELECT pg_reload_conf()")
    try:
        con = cluster.connect()
        fake.fault(latency_ms=100)
        run = con.execute("SELECT squaresync.foundation(wait => false)").fetchone()[0]
        who = wait_for(lambda: (con.execute("SELECT usename FROM pg_stat_activity WHERE backend_type = 'squaresync sync'")
                                .fetchone() or [None])[0], 30, "the sync worker")
        assert who == "syncer"
        fake.clear_faults()
        wait_idle(con)
        assert con.execute("SELECT status FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()[0] == "succeeded"
        con.execute("SELECT squaresync.incremental()")
        assert_matches_fake(con, fake)
        # The role can do what a sync does and nothing else.
        con.execute("CREATE TABLE public.elsewhere (x int)")
        con.execute("SET ROLE syncer")
        for sql in ("SELECT * FROM public.elsewhere", "SELECT * FROM pg_authid",
                    "INSERT INTO square.operating_seasons (merchant_id, name, starts_on, ends_on)"
                    " VALUES ('m', 'x', '2026-01-01', '2026-01-02')",
                    "SELECT squaresync.foundation()", "SELECT squaresync.connect('x')"):
            with pytest.raises(Exception, match="permission denied"):
                con.execute(sql)
        con.execute("RESET ROLE")
        con.execute("DROP TABLE public.elsewhere")
        # Without the grants, the worker cannot even read the token: proof it runs as that role.
        con.execute("REVOKE SELECT ON squaresync.connection FROM syncer")
        with pytest.raises(Exception, match="permission denied for table connection"):
            con.execute("SELECT squaresync.incremental()")
        con.close()
    finally:
        db.execute("ALTER SYSTEM RESET squaresync.sync_role")
        db.execute("SELECT pg_reload_conf()")
        db.execute("DROP OWNED BY syncer")
        db.execute("DROP ROLE syncer")
