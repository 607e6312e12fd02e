#!/usr/bin/env python3
# ab_builds.py: an interleaved A/B of two builds of squaresync.so on the benchmark's incrementals
# (issue 9, targets 3 and 4). One cluster and one fake (seed dataset); each round runs both builds,
# in alternating order, each on a freshly reset fake and a fresh extension: the server restarted with
# that build, a foundation, one incremental to warm up, two with nothing changed, two after a day's
# changes (bench.py's DAY), then with 100 ms added to every request one with nothing changed and one
# after a day. Prints each round and the medians, with the API requests. Interleaving is the point:
# this VM's speed moves by up to half within minutes. The installed files are put back at the end.
#
#   /usr/bin/python3 bench/ab_builds.py --a OLD.so --b NEW.so [--a-sql OLD.sql --b-sql NEW.sql] [--rounds 6]
#
# Build each library with `make` (the file is ./squaresync.so) and copy it aside, and with a change
# of the SQL its install script too (./squaresync--<version>.sql): each round installs the build's
# script before it creates the extension. Needs write access to PostgreSQL's pkglibdir and sharedir
# (root here) and nothing else using the installed extension meanwhile.
import argparse
import os
import shutil
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "lib"))
sys.path.insert(0, HERE)
from pgcluster import Cluster  # noqa: E402
from fakesquare import FakeSquare, assert_matches_fake  # noqa: E402
import bench  # noqa: E402

FIGURES = ("nothing", "day", "nothing_latency", "day_latency")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--a", required=True, help="the first build's squaresync.so")
    ap.add_argument("--b", required=True, help="the second build's squaresync.so")
    ap.add_argument("--a-sql", help="the first build's install script (squaresync--<version>.sql)")
    ap.add_argument("--b-sql", help="the second build's install script")
    ap.add_argument("--rounds", type=int, default=6)
    a = ap.parse_args()
    if bool(a.a_sql) != bool(a.b_sql):
        ap.error("--a-sql and --b-sql go together")

    def pg_config(opt):
        return subprocess.run(["pg_config", opt], capture_output=True, text=True, check=True).stdout.strip()

    lib = os.path.join(pg_config("--pkglibdir"), "squaresync.so")
    script = os.path.join(pg_config("--sharedir"), "extension", os.path.basename(a.a_sql or "none"))
    if a.a_sql and os.path.basename(a.a_sql) != os.path.basename(a.b_sql):
        ap.error("both install scripts must be of the same version (the same file name)")
    installed = [(lib, {"a": a.a, "b": a.b})]
    if a.a_sql:
        installed.append((script, {"a": a.a_sql, "b": a.b_sql}))
    for path, _ in installed:
        shutil.copy(path, path + ".ab-saved")
    builds = {"a": a.a, "b": a.b}

    def use(build):
        for path, files in installed:
            shutil.copy(files[build], path + ".ab-tmp")
            os.rename(path + ".ab-tmp", path)  # a new file: running processes keep the one they mapped

    res = {b: {k: [] for k in FIGURES + ("requests_nothing", "requests_day")} for b in builds}
    cluster = Cluster("abbuilds", preload=("squaresync",), settings={})
    fake = None
    try:
        cluster.init().start()
        fake = FakeSquare(dataset="seed").start()
        for r in range(a.rounds):
            for b in (("a", "b") if r % 2 == 0 else ("b", "a")):
                use(b)
                cluster.restart()
                con = cluster.connect()
                fake.reset()
                bench.fresh_extension(con, fake)
                bench.run_sync(cluster, con, "foundation", watch=False)
                bench.run_sync(cluster, con, "incremental", watch=False)
                got = {k: [] for k in res[b]}
                for label, day in (("nothing", False), ("nothing", False), ("day", True), ("day", True)):
                    if day:
                        fake.mutate(bench.DAY)
                    x = bench.run_sync(cluster, con, "incremental", watch=False)
                    if x["status"] != "succeeded":
                        raise RuntimeError(f"build {b}: run {x['run_id']} {x['status']}: {x['error']}")
                    got[label].append(x["wall_seconds"])
                    got["requests_" + label].append(x["api_requests"])
                fake.fault(latency_ms=100)
                for label, day in (("nothing_latency", False), ("day_latency", True)):
                    if day:
                        fake.mutate(bench.DAY)
                    got[label].append(bench.run_sync(cluster, con, "incremental", watch=False)["wall_seconds"])
                fake.clear_faults()
                assert_matches_fake(con, fake)
                con.close()
                for k, v in got.items():
                    res[b][k] += v
                print(f"round {r + 1} build {b}: " + ", ".join(
                    f"{k} {'/'.join(f'{x:.3f}' if isinstance(x, float) else str(x) for x in v)}"
                    for k, v in got.items()), flush=True)
        for b in builds:
            print(f"build {b} ({builds[b]}), medians: " + ", ".join(
                f"{k} {statistics.median(v):.3f}" if k in FIGURES else f"{k} {statistics.median(v):g}"
                for k, v in res[b].items()))
    finally:
        if fake:
            fake.stop()
        cluster.destroy()
        for path, _ in installed:
            os.rename(path + ".ab-saved", path)


if __name__ == "__main__":
    main()
