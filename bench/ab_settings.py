#!/usr/bin/env python3
# ab_settings.py: an interleaved A/B of a PostgreSQL setting on the scale test of the benchmark
# (issue 9, target 5: the foundation at scale 10 against the seed's). One cluster, one fake at the
# seed's size and one at --scale; for each value of the setting in turn (the server restarted with
# it), `--rounds` times: the seed's foundation, the scaled foundation, the seed's again, each on a
# fresh extension, with the ratio of the scaled one to the mean of the two seed ones, and what the
# server did meanwhile (checkpoints, buffers written by checkpoints and by backends, WAL written).
# Interleaving is the point: this VM's speed moves by up to half within minutes.
#
#   /usr/bin/python3 bench/ab_settings.py --setting shared_buffers=128MB,2GB [--rounds 2] [--scale 10]
#
# Needs the extension installed (`make install`); takes about 3 minutes per foundation pair at scale 10.
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "lib"))
sys.path.insert(0, HERE)
from pgcluster import Cluster  # noqa: E402
from fakesquare import FakeSquare  # noqa: E402
import bench  # noqa: E402

SERVER = """SELECT checkpoints_req + checkpoints_timed, buffers_checkpoint, buffers_backend, pg_current_wal_lsn()
            FROM pg_stat_bgwriter"""


def foundation(cluster, db, fake):
    con = cluster.connect(db)
    bench.fresh_extension(con, fake)
    a = con.execute(SERVER).fetchone()
    wall = bench.run_sync(cluster, con, "foundation", watch=False)["wall_seconds"]
    b = con.execute(SERVER).fetchone()
    wal = float(con.execute("SELECT pg_wal_lsn_diff(%s, %s)", (b[3], a[3])).fetchone()[0])
    con.close()
    return {"seconds": wall, "checkpoints": b[0] - a[0], "buffers_checkpoint": b[1] - a[1],
            "buffers_backend": b[2] - a[2], "wal_mb": wal / 1e6}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--setting", required=True, help="NAME=VALUE1,VALUE2,... (each value in turn, every round)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--scale", type=float, default=10.0)
    a = ap.parse_args()
    name, values = a.setting.split("=", 1)
    values = values.split(",")
    cluster = Cluster("ab", preload=("squaresync",), settings={})
    fakes = []
    try:
        cluster.init().start()
        con = cluster.connect()
        con.execute("CREATE DATABASE seedref")
        con.close()
        big = FakeSquare(dataset="seed", scale=a.scale).start()
        seed = FakeSquare(dataset="seed").start()
        fakes = [big, seed]
        ratios = {v: [] for v in values}
        for r in range(a.rounds):
            for v in values:
                con = cluster.connect()
                con.execute(f"ALTER SYSTEM SET {name} = '" + v.replace("'", "''") + "'")
                con.close()
                cluster.restart()
                s1 = foundation(cluster, "seedref", seed)
                big_run = foundation(cluster, "postgres", big)
                s2 = foundation(cluster, "seedref", seed)
                ratio = big_run["seconds"] / ((s1["seconds"] + s2["seconds"]) / 2)
                ratios[v].append(ratio)
                print(f"round {r + 1} {name}={v}: seed {s1['seconds']:.2f} s, scale {a.scale:g} "
                      f"{big_run['seconds']:.2f} s, seed {s2['seconds']:.2f} s: {ratio:.2f}x", flush=True)
                for label, x in (("seed", s1), (f"scale {a.scale:g}", big_run), ("seed", s2)):
                    print(f"    {label}: {x['checkpoints']} checkpoints, {x['buffers_checkpoint']} buffers written by "
                          f"checkpoints, {x['buffers_backend']} by backends, {x['wal_mb']:.0f} MB of WAL", flush=True)
        for v in values:
            print(f"{name}={v}: " + ", ".join(f"{x:.2f}x" for x in ratios[v]))
    finally:
        for f in fakes:
            f.stop()
        cluster.destroy()


if __name__ == "__main__":
    main()
