"""demo.py: the body of `make demo` (see scripts/demo.sh)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "lib"))
from fakesquare import FakeSquare  # noqa: E402
from pgcluster import Cluster  # noqa: E402


def show(con, title, sql):
    cur = con.execute(sql)
    names = [d.name for d in cur.description]
    rows = [[("" if v is None else str(v)) for v in r] for r in cur.fetchall()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    print(f"\n{title}")
    print("  " + " | ".join(n.ljust(w) for n, w in zip(names, widths)))
    print("  " + "-+-".join("-" * w for w in widths))
    for r in rows:
        print("  " + " | ".join(v.ljust(w) for v, w in zip(r, widths)))


fake = FakeSquare(dataset="demo").start()
cluster = Cluster("demo").init().start()
try:
    print(f"fake Square (demo dataset) at {fake.url}; PostgreSQL on port {cluster.port}")
    con = cluster.connect()
    con.execute("CREATE EXTENSION squaresync")
    merchant = con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url)).fetchone()[0]
    print(f"connected to merchant {merchant}")
    t = time.time()
    run = con.execute("SELECT squaresync.foundation()").fetchone()[0]
    print(f"foundation run {run}: {time.time() - t:.2f} s")
    changed = fake.mutate({"orders": {"update": 5, "create": 3}, "catalog_items": {"update": 2},
                           "inventory_counts": {"update": 10}})
    print("a seller's day in the fake: " + ", ".join(
        f"{k} {sum(len(v) for v in d.values())}" for k, d in changed.items() if isinstance(d, dict)))
    t = time.time()
    run = con.execute("SELECT squaresync.incremental()").fetchone()[0]
    print(f"incremental run {run}: {time.time() - t:.2f} s")
    show(con, "squaresync.sync_runs", "SELECT id, kind, status, rows_inserted AS ins, rows_updated AS upd,"
              " rows_deleted AS del, rows_unchanged AS unchanged, api_requests,"
              " round(extract(epoch FROM duration)::numeric, 3) AS seconds FROM squaresync.sync_runs ORDER BY id")
    show(con, "squaresync.sync_state", "SELECT table_name, last_sync_timestamp, last_sync_version, records_synced,"
              " round(sync_duration_seconds::numeric, 3) AS sync_duration_seconds, watermark, last_status"
              " FROM squaresync.sync_state")
finally:
    cluster.destroy()
    fake.stop()
