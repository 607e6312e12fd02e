"""test_soak.py: a soak (issue 8): consecutive incremental runs against a fake that mutates between
runs and injects a random mix of faults; now and then a run is canceled or its worker terminated at a
random moment, or a run that succeeded is rolled back. Afterwards the tables equal the fake's truth, the audit
trail accounts for every change each run reported, the workers' peak memory did not grow, and no
PostgreSQL process crashed. `make test` runs SOAK_RUNS=12; the full soak is
`SOAK_RUNS=200 /usr/bin/python3 -m pytest -q test/e2e/test_soak.py` (SOAK_SEED=N for another mix
of faults and changes)."""
import os
import random
import time

from fakesquare import assert_matches_fake

RUNS = int(os.environ.get("SOAK_RUNS", "12"))
SEED = int(os.environ.get("SOAK_SEED", "20261125"))
FAULTS = [
    dict(fault="429", count=3),
    dict(fault="429", count=2, retry_after=1),
    dict(fault="500", count=2),
    dict(fault="502", count=1),
    dict(fault="503", count=2),
    dict(fault="reset", count=2),
    dict(fault="truncate", count=1),
    dict(fault="malformed", count=1),
    dict(fault="wrong_shape", count=1),
    dict(fault="delay", count=3, delay_ms=300),
]
# In every six runs: one whose sync worker is terminated and one whose sync worker is canceled, each
# at a random moment of the run (0 to 0.4 s in), one whose apply worker is terminated (0 to 50 ms
# after it appears; the sync worker then applies what it left), and one rolled back once it has
# succeeded.
SYNC_WORKER = "SELECT worker_pid FROM squaresync.sync_runs WHERE id = %(run)s AND status = 'running'"
APPLY_WORKER = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'squaresync apply'"
STOPS = {2: ("pg_terminate_backend", SYNC_WORKER), 4: ("pg_cancel_backend", SYNC_WORKER),
         1: ("pg_terminate_backend", APPLY_WORKER)}
ROLLBACK = 5
PATHS = [None, "/v2/orders/search", "/v2/catalog/search", "/v2/payments", "/v2/inventory/counts/batch-retrieve",
         "/v2/refunds", "/v2/vendors/search", "/v2/locations"]


def peak_rss_kib(con, run_id):
    """Polls the run's worker until it exits; returns its peak private resident memory (RssAnon) in
    KiB. VmHWM would also count the shared buffers the worker touched, which grow with the data."""
    peak = 0
    pid = None
    deadline = time.time() + 300
    while time.time() < deadline:
        row = con.execute("SELECT status, worker_pid FROM squaresync.sync_runs WHERE id = %s", (run_id,)).fetchone()
        if row is not None:
            pid = row[1]
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("RssAnon:"):
                            peak = max(peak, int(line.split()[1]))
            except (FileNotFoundError, ProcessLookupError):
                pass
            if row[0] != "running":
                return peak
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} did not finish")


def test_soak(db, fake, cluster):
    rng = random.Random(SEED)
    log_start = len(cluster.log_text())
    db.execute("SELECT squaresync.foundation()")
    peaks = []
    stopped = rolled_back = appliers_stopped = 0
    for i in range(RUNS):
        fake.mutate({"orders": {"update": rng.randint(1, 6), "create": rng.randint(0, 4)},
                     "catalog_items": {"update": rng.randint(0, 2), "create": rng.randint(0, 1),
                                       "delete": rng.randint(0, 1)},
                     "inventory_counts": {"update": rng.randint(1, 8)},
                     "payments": {"update": rng.randint(0, 2)},
                     "vendors": {"update": rng.randint(0, 1)},
                     "late_orders": rng.randint(0, 1)})
        for _ in range(rng.randint(0, 2)):
            f = dict(rng.choice(FAULTS))
            path = rng.choice(PATHS)
            if path:
                f["path"] = path
            fake.fault(**f)
        stop, target = STOPS.get(i % 6, (None, None))
        run = db.execute("SELECT squaresync.incremental(wait => false)").fetchone()[0]
        if target == APPLY_WORKER:
            deadline = time.time() + 1
            while time.time() < deadline and not db.execute(APPLY_WORKER).fetchall():
                time.sleep(0.005)
            time.sleep(rng.uniform(0, 0.05))
            appliers_stopped += len(db.execute(f"SELECT {stop}(pid) FROM ({target}) w(pid)").fetchall())
            stop = None  # the run itself goes on: the sync worker applies what the apply worker left
        elif stop:
            time.sleep(rng.uniform(0, 0.4))
            stopped += len(db.execute(f"SELECT {stop}(pid) FROM ({target}) w(pid)", {"run": run}).fetchall())
        peaks.append(peak_rss_kib(db, run))
        status, error = db.execute("SELECT status, error FROM squaresync.sync_runs WHERE id = %s", (run,)).fetchone()
        if stop and status == "failed":
            # Whatever it was doing, the worker recorded why the run ended; the next run resumes.
            assert "asked to stop" in error, (i, stop, error)
        else:
            assert status in ("succeeded", "partial"), (i, status, error)
        if status == "partial":
            assert error, "a partial run must say what failed"
        fake.clear_faults()
        if status == "succeeded" and i % 6 == ROLLBACK:
            db.execute("SELECT squaresync.rollback(%s, 'soak')", (run,))
            rolled_back += 1
    db.execute("SELECT squaresync.incremental()")
    assert_matches_fake(db, fake)

    # The audit trail accounts for every change each run reported, table by table.
    mismatches = db.execute("""
        SELECT r.id, t.key, (t.value ->> 'inserted')::bigint + (t.value ->> 'updated')::bigint
                             + (t.value ->> 'deleted')::bigint AS reported,
               (SELECT count(*) FROM squaresync.changes c WHERE c.run_id = r.id AND c.table_name = t.key) AS audited
        FROM squaresync.sync_runs r, jsonb_each(r.tables) t
        WHERE r.kind <> 'rollback'""").fetchall()
    bad = [m for m in mismatches if m[2] != m[3]]
    assert mismatches and not bad, bad[:5]

    # Each run is a fresh worker; its peak private memory does not grow over the soak.
    first, last = max(peaks[:3]), max(peaks[-3:])
    assert last <= first * 1.5 + 8192, f"worker peak memory grew: {peaks}"
    assert "terminated by signal" not in cluster.log_text()[log_start:]
    print(f"soak: {RUNS} runs, seed {SEED}, {stopped} stopped, {appliers_stopped} apply workers stopped,"
          f" {rolled_back} rolled back")
