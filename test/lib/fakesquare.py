"""fakesquare.py: starts the project's fake Square server (test/fake_square/server.py) as a
subprocess and drives its control API; compares the database with its snapshot."""
import datetime
import decimal
import json
import os
import subprocess
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER = os.path.join(ROOT, "test", "fake_square", "server.py")


class FakeSquare:
    def __init__(self, dataset="seed", scale=None, locations=None, seed=None, tls_dir=None, token="fake-square-token"):
        self.args = ["--host", "127.0.0.1", "--port", "0", "--dataset", dataset, "--token", token]
        if scale is not None:
            self.args += ["--scale", str(scale)]
        if locations is not None:
            self.args += ["--locations", str(locations)]
        if seed is not None:
            self.args += ["--seed", str(seed)]
        if tls_dir is not None:
            self.args += ["--tls-dir", tls_dir]
        self.token = token
        self.proc = None
        self.url = None

    def start(self):
        self.proc = subprocess.Popen(["/usr/bin/python3", SERVER] + self.args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening "):
            raise RuntimeError(f"fake Square did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        return self

    def stop(self):
        if self.proc:
            self.proc.kill()
            self.proc.wait()

    def _call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={"Content-Type": "application/json"})
        ctx = None
        if self.url.startswith("https://"):
            import ssl
            ctx = ssl.create_default_context(cafile=self.args[self.args.index("--tls-dir") + 1] + "/ca.pem")
        with urllib.request.urlopen(req, timeout=120, context=ctx) as r:
            return json.loads(r.read() or b"null")

    def reset(self):
        return self._call("POST", "/__fake__/reset", {})

    def mutate(self, spec):
        return self._call("POST", "/__fake__/mutate", spec)

    def fault(self, **spec):
        return self._call("POST", "/__fake__/faults", spec)

    def clear_faults(self):
        return self._call("DELETE", "/__fake__/faults")

    def stats(self):
        return self._call("GET", "/__fake__/stats")

    def fired(self, fault):
        """How many requests an armed `fault` (e.g. "hang") has taken since the last reset."""
        return self.stats().get("faults_fired", {}).get(fault, 0)

    def snapshot(self):
        return self._call("GET", "/__fake__/snapshot")


def _norm(v):
    """One comparable form for a value from the snapshot (JSON) or the database (psycopg)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return v
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (decimal.Decimal, float)):
        return str(decimal.Decimal(str(v)).normalize())
    if isinstance(v, str):
        # Timestamps and decimal strings from the snapshot.
        if len(v) >= 20 and v[4] == "-" and v[10] == "T":
            try:
                t = datetime.datetime.fromisoformat(v.replace("Z", "+00:00"))
                return t.astimezone(datetime.timezone.utc).isoformat(timespec="microseconds")
            except ValueError:
                return v
        return v
    return v


def _norm_quantity(v):
    if v is None:
        return None
    return str(decimal.Decimal(str(v)).normalize())


def table_diff(con, snapshot, table):
    """Rows in the fake's truth and not in the table, and the reverse (as sets of tuples)."""
    spec = snapshot["tables"][table]
    cols = spec["key"] + spec["columns"]
    numeric = {"quantity"}

    def norm_row(row):
        return tuple(_norm_quantity(v) if c in numeric else _norm(v) for c, v in zip(cols, row))

    want = {norm_row(r) for r in spec["rows"]}
    q = "SELECT {} FROM square.{} WHERE merchant_id = %s".format(", ".join(f'"{c}"' for c in cols), table)
    got = {norm_row(r) for r in con.execute(q, (snapshot["merchant_id"],)).fetchall()}
    return want - got, got - want


def assert_matches_fake(con, fake, tables=None):
    snap = fake.snapshot()
    problems = []
    for table in tables or snap["tables"]:
        missing, extra = table_diff(con, snap, table)
        if missing or extra:
            problems.append(f"{table}: {len(missing)} rows missing or different, {len(extra)} extra;"
                            f" e.g. missing {sorted(missing, key=str)[:2]} extra {sorted(extra, key=str)[:2]}")
    assert not problems, "database differs from the fake's truth:\n" + "\n".join(problems)
    return snap
