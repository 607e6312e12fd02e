#!/usr/bin/python3
"""bench.py: the squaresync benchmark (issue 9). Run through bench/run.sh (make bench).

Against the project's fake Square on loopback, on a fresh cluster, it measures:
  1. foundation: wall time, worker peak memory (VmHWM, peak RssAnon), worker CPU, per-stream
     fetch/apply breakdown;
  2. the floor: (a) floor_download (the foundation's requests with the same HttpClient settings,
     bodies discarded; also with JSON parse, and with parse + map), (b) COPY of every table's final
     rows into empty copies with the same indexes; foundation / (download + copy);
  3. incremental with nothing changed, and after a day's changes: wall, API requests, rows written;
  4. the same with 100 ms latency per request against the sequential latency sum;
  5. scale 10: foundation time and memory against the seed's;
  6. the old way (bench/oldway.py): clear the tables and reload everything;
and, unless --no-profile, one more foundation under pg_stat_statements (track = all) and a
system-wide perf profile, to show where the time goes. Writes a JSON file of every figure and
prints a Markdown report (the body of docs/benchmarks.md). Timing targets are reported, never
asserted.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "lib"))

from pgcluster import Cluster  # noqa: E402
from fakesquare import FakeSquare  # noqa: E402

import oldway  # noqa: E402
import report  # noqa: E402

DAY = {  # a seller's day (issue 9): 1% of orders (their parts change with them), 2% of inventory, 1% of catalog
    "orders": {"update": 0.01},
    "inventory_counts": {"update": 0.02},
    "catalog_items": {"update": 0.01},
    "catalog_variations": {"update": 0.01},
    "catalog_categories": {"update": 0.01},
}


class NoDelayFake(FakeSquare):
    """The fake, started through bench/fake_nodelay.py (TCP_NODELAY on its sockets)."""

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", os.path.join(HERE, "fake_nodelay.py")] + self.args,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            raise RuntimeError(f"fake Square did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        return self


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0])  # kB
    return out


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime, seconds


class WorkerWatch(threading.Thread):
    """Finds the sync worker (pg_stat_activity backend_type 'squaresync sync') and polls its
    /proc status every 20 ms until it exits: the last VmHWM read is its peak RSS. The apply worker
    that applies the catalog side meanwhile ('squaresync apply') is found and polled the same way."""

    def __init__(self, cluster, period=0.02):
        super().__init__(daemon=True)
        self.cluster, self.period = cluster, period
        self.pid = None
        self.hwm_kb = self.anon_peak_kb = self.shmem_at_peak_kb = 0
        self.cpu_s = 0.0
        self.samples = []
        self.apply = {"pid": None, "hwm_kb": 0, "anon_peak_kb": 0, "cpu_s": 0.0}
        self.done = threading.Event()
        self.stop_flag = False
        self.started = time.perf_counter()

    def run(self):
        con = self.cluster.connect()
        try:
            while not self.stop_flag and self.pid is None:
                r = con.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'squaresync sync'").fetchone()
                if r:
                    self.pid = r[0]
                else:
                    time.sleep(0.005)
            while self.pid is not None:
                try:
                    st = proc_status(self.pid)
                    cpu = proc_cpu(self.pid)
                except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                    break
                self.hwm_kb = max(self.hwm_kb, st.get("VmHWM", 0))
                if st.get("RssAnon", 0) > self.anon_peak_kb:
                    self.anon_peak_kb = st["RssAnon"]
                    self.shmem_at_peak_kb = st.get("RssShmem", 0)
                self.cpu_s = cpu
                self.samples.append((round(time.perf_counter() - self.started, 3), st.get("VmRSS", 0),
                                     st.get("RssAnon", 0)))
                self._watch_apply(con)
                time.sleep(self.period)
        finally:
            con.close()
        self.done.set()

    def _watch_apply(self, con):
        a = self.apply
        if a["pid"] is None:
            r = con.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'squaresync apply'").fetchone()
            if not r:
                return
            a["pid"] = r[0]
        try:
            st = proc_status(a["pid"])
            a["cpu_s"] = proc_cpu(a["pid"])
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            return
        a["hwm_kb"] = max(a["hwm_kb"], st.get("VmHWM", 0))
        a["anon_peak_kb"] = max(a["anon_peak_kb"], st.get("RssAnon", 0))


def run_sync(cluster, con, kind, watch=True):
    """Runs squaresync.<kind>() and returns its figures (wall time from the client's call)."""
    w = WorkerWatch(cluster) if watch else None
    if w:
        w.start()
    av = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'"
    av0 = con.execute(av).fetchone()[0]
    t0 = time.perf_counter()
    run_id = con.execute(f"SELECT squaresync.{kind}()").fetchone()[0]
    wall = time.perf_counter() - t0
    av1 = con.execute(av).fetchone()[0]
    if w:
        w.stop_flag = True
        w.join(5)
    r = con.execute("""SELECT status, extract(epoch FROM duration)::float8, api_requests, bytes_received,
                              rows_inserted, rows_updated, rows_deleted, rows_unchanged, error, tables,
                              extract(epoch FROM started_at)::float8, extract(epoch FROM derived_at - started_at)::float8
                       FROM squaresync.sync_runs WHERE id = %s""", (run_id,)).fetchone()
    streams = {}
    for s in con.execute("""SELECT stream, status, pages, rows_staged, apply_seconds,
                                   extract(epoch FROM applied_at)::float8
                            FROM squaresync.sync_run_streams WHERE run_id = %s""", (run_id,)):
        streams[s[0]] = {"status": s[1], "pages": s[2], "rows_staged": s[3], "apply_seconds": s[4],
                         "apply_start": (s[5] - r[10]) if s[5] is not None else None}
    audit = con.execute("SELECT count(*) FROM squaresync.changes WHERE run_id = %s", (run_id,)).fetchone()[0]
    out = {"run_id": run_id, "kind": kind, "status": r[0], "wall_seconds": wall, "run_seconds": r[1],
           "api_requests": r[2], "bytes_received": r[3], "inserted": r[4], "updated": r[5], "deleted": r[6],
           "unchanged": r[7], "rows_written": r[4] + r[5] + r[6], "audit_rows": audit, "error": r[8],
           "tables": r[9], "streams": streams, "derived_seconds": r[11],
           "autovacuum_workers_before_after": [av0, av1]}
    if w:
        out["apply_worker"] = {"pid": w.apply["pid"], "peak_rss_mib": w.apply["hwm_kb"] / 1024,
                               "peak_rss_anon_mib": w.apply["anon_peak_kb"] / 1024, "cpu_seconds": w.apply["cpu_s"]}
        out["worker"] = {"pid": w.pid, "peak_rss_mib": w.hwm_kb / 1024, "peak_rss_anon_mib": w.anon_peak_kb / 1024,
                         "rss_shmem_at_anon_peak_mib": w.shmem_at_peak_kb / 1024, "cpu_seconds": w.cpu_s,
                         "samples": len(w.samples)}
        out["_samples"] = w.samples
    # Whether the catalog side went to an apply worker (the benchmark never runs out of worker slots).
    out["parallel_apply"] = con.execute("SHOW squaresync.parallel_apply").fetchone()[0] == "on"
    out["run_seconds"] = r[1]
    report.windows(out)
    if r[0] != "succeeded":
        log(f"WARNING: {kind} run {run_id} ended {r[0]}: {r[8]}")
    return out


def fresh_extension(con, fake):
    con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
    con.execute("DROP SCHEMA IF EXISTS bench_copy CASCADE")
    con.execute("CREATE EXTENSION squaresync")
    con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))


def square_tables(con):
    return [r[0] for r in con.execute(
        "SELECT table_name FROM squaresync.synced_tables ORDER BY apply_order")]


def copy_floor(cluster, con):
    """COPY every table's final rows out to a file, then time COPY FROM into empty copies
    (CREATE TABLE ... (LIKE ... INCLUDING ALL): same columns, defaults, indexes; no foreign keys)."""
    con.execute("DROP SCHEMA IF EXISTS bench_copy CASCADE")
    con.execute("CREATE SCHEMA bench_copy")
    d = os.path.join(cluster.dir, "copy")
    os.makedirs(d, exist_ok=True)
    shutil.chown(d, "postgres", "postgres") if os.geteuid() == 0 else None
    per, out_s, rows = {}, 0.0, 0
    tables = square_tables(con)
    for t in tables:
        con.execute(f'CREATE TABLE bench_copy."{t}" (LIKE square."{t}" INCLUDING ALL)')
        t0 = time.perf_counter()
        n = con.execute(f"""COPY square."{t}" TO '{d}/{t}.copy'""").rowcount
        out_s += time.perf_counter() - t0
        rows += n
    con.execute("CHECKPOINT")
    t_all = time.perf_counter()
    with con.transaction():
        for t in tables:
            t0 = time.perf_counter()
            con.execute(f"""COPY bench_copy."{t}" FROM '{d}/{t}.copy'""")
            per[t] = time.perf_counter() - t0
        t_commit = time.perf_counter()
    commit = time.perf_counter() - t_commit
    total = time.perf_counter() - t_all
    size = con.execute("""SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
                          WHERE c.relnamespace = 'bench_copy'::regnamespace AND c.relkind = 'r'""").fetchone()[0]
    con.execute("DROP SCHEMA bench_copy CASCADE")
    shutil.rmtree(d, ignore_errors=True)
    return {"seconds": total, "commit_seconds": commit, "copy_out_seconds": out_s, "rows": rows,
            "bytes_on_disk": int(size or 0), "tables": per}


def floor_download(binary, fake, concurrency, passes):
    r = subprocess.run([binary, "--url", fake.url, "--token", fake.token, "--concurrency", str(concurrency),
                        "--passes", passes], capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError("floor_download failed: " + r.stderr)
    return json.loads(r.stdout)


def fake_cpu(fake):
    return proc_cpu(fake.proc.pid)


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    pg = subprocess.run(["pg_config", "--version"], capture_output=True, text=True).stdout.strip()
    curl = subprocess.run(["curl-config", "--version"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("curl-config") else "?"
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "os": _os_name(), "postgresql": pg, "libcurl": curl,
            "python": platform.python_version()}


def _os_name():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def pgss_top(con, limit=25):
    rows = con.execute("""SELECT calls, total_exec_time / 1000, rows, regexp_replace(left(query, 160), '\\s+', ' ', 'g')
                          FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s""", (limit,)).fetchall()
    return [{"calls": r[0], "seconds": r[1], "rows": r[2], "query": r[3]} for r in rows]


def profiled_foundation(cluster, con, fake, perf_seconds_cap, outdir):
    """A foundation under pg_stat_statements (track = all) and perf record -a -g."""
    con.execute("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
    con.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    fresh_extension(con, fake)
    con.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    con.execute("SELECT pg_stat_statements_reset()")
    perf = None
    perf_data = os.path.join(outdir, "perf.data")
    if shutil.which("perf"):
        perf = subprocess.Popen(["perf", "record", "-a", "-g", "-F", "499", "-o", perf_data, "--",
                                 "sleep", str(perf_seconds_cap)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
    cpu0 = fake_cpu(fake)
    res = run_sync(cluster, con, "foundation")
    res["fake_cpu_seconds"] = fake_cpu(fake) - cpu0
    if perf:
        perf.send_signal(2)
        perf.wait(60)
    res["pgss_top"] = pgss_top(con)
    con.execute("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
    con.execute("SELECT pg_reload_conf()")
    if perf and os.path.exists(perf_data):
        res["perf"] = perf_summary(perf_data, res["worker"]["pid"], outdir)
    return res


def perf_summary(perf_data, worker_pid, outdir):
    """Samples by process (whole machine), and the worker's samples by shared object and symbol
    (relative to the worker). The installed postgres has no debug symbols and squaresync.so may
    have been reinstalled since, so symbols are partial; the shares by object are reliable."""
    def report(*args):
        r = subprocess.run(["perf", "report", "-i", perf_data, "--stdio", "--no-children", "-g", "none"] + list(args),
                           capture_output=True, text=True, timeout=600)
        return r.stdout

    def lines(txt):
        return [l.rstrip() for l in txt.splitlines() if "%" in l and not l.startswith("#")]

    by_comm = report("--sort", "comm")
    by_pid = report("--sort", "pid")
    worker = report("--pid", str(worker_pid), "--sort", "dso,sym", "--percentage", "relative")
    for name, txt in (("perf_by_command.txt", by_comm), ("perf_by_process.txt", by_pid), ("perf_worker.txt", worker)):
        with open(os.path.join(outdir, name), "w") as f:
            f.write(txt)
    dso = {}
    for l in lines(worker):
        parts = l.split()
        try:
            dso[parts[1]] = dso.get(parts[1], 0.0) + float(parts[0].rstrip("%"))
        except (IndexError, ValueError):
            pass
    return {"by_process": lines(by_comm)[:8] + ["(by pid)"] + lines(by_pid)[:6],
            "worker_dso": [f"{v:6.1f}%  {k}" for k, v in sorted(dso.items(), key=lambda kv: -kv[1]) if v >= 0.1],
            "worker_symbols": lines(worker)[:30]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small smoke run (scale 0.05): no scale 10, no profile")
    ap.add_argument("--scale", type=float, default=None, help="dataset scale of the main run (default 1 = seed)")
    ap.add_argument("--scale10", type=float, default=10.0, help="scale of the scale test")
    ap.add_argument("--skip-scale10", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-oldway", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="seed foundations and floor copies measured (the median is reported)")
    ap.add_argument("--fake-nodelay", action="store_true",
                    help="run the fake with TCP_NODELAY (bench/fake_nodelay.py): no ~40 ms Nagle stall per request")
    ap.add_argument("--floor-bin", required=True)
    ap.add_argument("--tables-json", required=True)
    ap.add_argument("--out", required=True, help="directory for results.json, perf output, report.md")
    ap.add_argument("--command", default="bash bench/run.sh")
    a = ap.parse_args()
    if a.quick:
        a.repeat = 1
        a.scale = a.scale or 0.05
        a.skip_scale10 = True
        a.no_profile = True
    scale = a.scale or 1.0
    os.makedirs(a.out, exist_ok=True)

    res = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": a.command, "machine": machine(), "scale": scale, "quick": a.quick,
           "fake_nodelay": a.fake_nodelay,
           "git": subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                                 text=True).stdout.strip()}
    settings = {"pg_stat_statements.track": "'none'", "pg_stat_statements.max": 1000}
    cluster = Cluster("bench", preload=("squaresync", "pg_stat_statements"), settings=settings)
    fake = None
    try:
        log(f"fresh cluster; fake Square, seed dataset at scale {scale}")
        cluster.init().start()
        con = cluster.connect()
        res["pg_settings"] = dict(con.execute(
            "SELECT name, setting FROM pg_settings WHERE name IN ('shared_buffers','work_mem','maintenance_work_mem',"
            "'fsync','synchronous_commit','wal_level','max_wal_size','squaresync.max_concurrency')").fetchall())
        t0 = time.perf_counter()
        Fake = NoDelayFake if a.fake_nodelay else FakeSquare
        fake = Fake(dataset="seed", scale=scale if scale != 1.0 else None).start()
        res["fake_startup_seconds"] = time.perf_counter() - t0
        fresh_extension(con, fake)

        # 1. Foundation, and 2b. the floor's COPY: a.repeat of each, interleaved (a foundation on a
        # fresh extension, then the COPY of its rows), so that both see the same minutes of this
        # VM, whose speed moves by a fifth to a half from one minute to the next. The medians by
        # wall time are reported, the peak memory the highest of them. The last foundation's
        # tables stay for what follows.
        log(f"foundation and floor (b), COPY into empty copies, interleaved (x{a.repeat})")
        runs, copies = [], []
        for i in range(a.repeat):
            if i:
                fresh_extension(con, fake)
            cpu0 = fake_cpu(fake)
            f = run_sync(cluster, con, "foundation")
            f["fake_cpu_seconds"] = fake_cpu(fake) - cpu0
            runs.append(f)
            copies.append(copy_floor(cluster, con))
            log(f"  foundation {f['wall_seconds']:.2f} s, {f['api_requests']} requests, peak RSS "
                f"{f['worker']['peak_rss_mib']:.0f} MiB; COPY {copies[-1]['seconds']:.2f} s")
        f = sorted(runs, key=lambda x: x["wall_seconds"])[len(runs) // 2]
        f["all_wall_seconds"] = [x["wall_seconds"] for x in runs]
        for who in ("worker", "apply_worker"):
            f[who] = max((x[who] for x in runs), key=lambda w: w.get("peak_rss_mib") or 0)
        res["foundation"] = f
        res["row_counts"] = {t: con.execute(f'SELECT count(*) FROM square."{t}"').fetchone()[0]
                             for t in square_tables(con)}

        # 2. The floor.
        res["floor_copy"] = sorted(copies, key=lambda c: c["seconds"])[len(copies) // 2]
        res["floor_copy"]["all_seconds"] = [c["seconds"] for c in copies]
        log("floor (a): floor_download")
        conc = int(con.execute("SHOW squaresync.max_concurrency").fetchone()[0])
        cpu0 = fake_cpu(fake)
        res["floor_download"] = floor_download(a.floor_bin, fake, conc, "raw,parse,map,raw,parse")
        res["floor_download"]["fake_cpu_seconds_all_passes"] = fake_cpu(fake) - cpu0
        fd = res["floor_download"]
        log(f"  raw {fd['raw']['seconds']:.2f} s, parse {fd['parse']['seconds']:.2f} s, map {fd['map']['seconds']:.2f} s")
        res["floor_download_seq"] = floor_download(a.floor_bin, fake, 1, "raw")
        res["floor_ratio"] = f["wall_seconds"] / (fd["raw"]["seconds"] + res["floor_copy"]["seconds"])

        # 3. Incremental.
        log("incremental, nothing changed (x3)")
        # Incrementals are not watched: polling pg_stat_activity every 20 ms would take a good part of
        # the CPU a run of a few tenths of a second has (peak memory is the foundation's figure).
        res["incr_nothing"] = [run_sync(cluster, con, "incremental", watch=False) for _ in range(3)]
        log("  " + ", ".join(f"{r['wall_seconds']:.3f} s" for r in res["incr_nothing"]))
        res["incr_day"], res["day_mutations"] = [], []
        for i in range(3):
            m = fake.mutate(DAY)
            res["day_mutations"].append({k: {kk: len(vv) for kk, vv in v.items()} for k, v in m.items()
                                         if isinstance(v, dict)})
            res["incr_day"].append(run_sync(cluster, con, "incremental", watch=False))
        log("incremental after a day's changes (x3): " + ", ".join(f"{r['wall_seconds']:.3f} s" for r in res["incr_day"]))

        # 6. The old way (after the incrementals: it clears the square tables).
        if not a.skip_oldway:
            log("the old way: clear and reload with bench/oldway.py (x3)")
            runs = []
            for _ in range(3):
                cpu0 = fake_cpu(fake)
                runs.append(oldway.reload_everything(con, fake.url, fake.token, a.tables_json))
                runs[-1]["fake_cpu_seconds"] = fake_cpu(fake) - cpu0
            # The median of three, as for the foundation: this VM's speed moves from minute to minute.
            res["oldway"] = sorted(runs, key=lambda x: x["seconds"])[1]
            res["oldway"]["all_seconds"] = [x["seconds"] for x in runs]
            ow_counts = res["oldway"]["tables"]
            res["oldway"]["matches_foundation_counts"] = all(
                ow_counts.get(t, 0) >= n * 0.99 for t, n in res["row_counts"].items())
            log(f"  {res['oldway']['seconds']:.2f} s")

        # Profile: one more foundation (fresh extension) under pg_stat_statements and perf.
        if not a.no_profile:
            log("profiled foundation (pg_stat_statements track=all, perf record -a -g)")
            fake.reset()
            res["profile"] = profiled_foundation(cluster, con, fake, 600, a.out)
            log(f"  {res['profile']['wall_seconds']:.2f} s")

        # 4. Latency.
        if not a.skip_latency:
            log("latency 100 ms: foundation, incremental (nothing changed), incremental (a day)")
            fake.reset()
            fresh_extension(con, fake)
            fake.fault(latency_ms=100)
            lat = {"foundation": run_sync(cluster, con, "foundation"),
                   "incr_nothing": run_sync(cluster, con, "incremental", watch=False)}
            fake.mutate(DAY)
            lat["incr_day"] = run_sync(cluster, con, "incremental", watch=False)
            fake.clear_faults()
            res["latency"] = lat
            log("  " + ", ".join(f"{k} {v['wall_seconds']:.2f} s ({v['api_requests']} req)" for k, v in lat.items()))
        con.close()
    finally:
        if fake:
            fake.stop()
        cluster.destroy()

    # 5. Scale 10, on its own fresh cluster.
    if not a.skip_scale10:
        log(f"scale {a.scale10}: fresh cluster, fake Square at scale {a.scale10} (generation takes a while)")
        cluster = Cluster("bench10", preload=("squaresync",), settings={})
        fake = None
        try:
            cluster.init().start()
            con = cluster.connect()
            t0 = time.perf_counter()
            fake = Fake(dataset="seed", scale=a.scale10).start()
            s10 = {"fake_startup_seconds": time.perf_counter() - t0}
            # The seed's foundation again, just before and just after this one, on this cluster (in a
            # database of its own, seedref): the target compares the two sizes, and this VM's speed
            # moves too much from one minute to the next for the main run's seed figure, taken
            # minutes earlier, to be the reference.
            seed_fake = Fake(dataset="seed", scale=scale if scale != 1.0 else None).start()
            con.execute("CREATE DATABASE seedref")
            ref = cluster.connect("seedref")

            def seed_reference():
                fresh_extension(ref, seed_fake)
                return run_sync(cluster, ref, "foundation", watch=False)["wall_seconds"]

            s10["seed_before_seconds"] = seed_reference()
            fresh_extension(con, fake)
            cpu0 = fake_cpu(fake)
            s10["foundation"] = run_sync(cluster, con, "foundation")
            s10["foundation"]["fake_cpu_seconds"] = fake_cpu(fake) - cpu0
            s10["seed_after_seconds"] = seed_reference()
            ref.close()
            seed_fake.stop()
            s10["row_counts"] = {t: con.execute(f'SELECT count(*) FROM square."{t}"').fetchone()[0]
                                 for t in square_tables(con)}
            log(f"  foundation {s10['foundation']['wall_seconds']:.1f} s, "
                f"peak RSS {s10['foundation']['worker']['peak_rss_mib']:.0f} MiB; the seed's just before and after: "
                f"{s10['seed_before_seconds']:.2f} s, {s10['seed_after_seconds']:.2f} s")
            s10["floor_copy"] = copy_floor(cluster, con)
            s10["floor_download"] = floor_download(a.floor_bin, fake, conc, "raw")
            s10["incr_nothing"] = run_sync(cluster, con, "incremental", watch=False)
            res["scale10"] = s10
            con.close()
        finally:
            if fake:
                fake.stop()
            cluster.destroy()

    samples = {}
    for k in ("foundation",):
        samples[k] = res[k].pop("_samples", None)
    for k in ("incr_nothing", "incr_day"):
        for r in res.get(k, []):
            r.pop("_samples", None)
    for sect in ("latency",):
        for r in (res.get(sect) or {}).values():
            r.pop("_samples", None)
    if "profile" in res:
        res["profile"].pop("_samples", None)
    if "scale10" in res:
        samples["scale10"] = res["scale10"]["foundation"].pop("_samples", None)
        res["scale10"]["incr_nothing"].pop("_samples", None)
    with open(os.path.join(a.out, "memory_samples.json"), "w") as fh:
        json.dump(samples, fh)
    with open(os.path.join(a.out, "results.json"), "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    import report
    md = report.render(res)
    with open(os.path.join(a.out, "report.md"), "w") as fh:
        fh.write(md)
    print(md)


if __name__ == "__main__":
    main()
