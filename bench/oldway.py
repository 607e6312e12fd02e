#!/usr/bin/python3
"""oldway.py: the baseline squaresync replaces (issue 9, item 6): what a seller's daily job does
today. In one transaction it clears every square table and reloads everything from Square's list
endpoints with plain sequential HTTP (urllib, one request at a time, no compression, a fresh
connection per request as urllib does), maps each object to rows in Python with the same column
descriptions as the extension (tables.hpp, dumped by floor_download --dump-tables), and loads each
table with COPY (one COPY per table per stream, parents before children). The derived availability
table is rebuilt with the extension's own SQL. It is fair to the old way: COPY, not row-by-row
INSERTs, and the same requests (page sizes, endpoints) as a foundation.

    /usr/bin/python3 bench/oldway.py --dsn DSN --url URL --token T --tables tables.json
prints a JSON object with the total seconds and where they went (http, parse+map, copy).
"""
import argparse
import json
import time
import urllib.parse
import urllib.request

EARLIEST = "2009-01-01T00:00:00Z"


# ---- the column path language of src/core/tables.hpp, in Python -------------------------------
def _split(s, sep):
    parts, cur, depth = [], "", 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def _walk(j, path):
    for p in path:
        if not isinstance(j, dict):
            return None
        j = j.get(p)
        if j is None:
            return None
    return j


def _scalar(v, typ):
    if typ == "jsonb":
        return json.dumps(v, separators=(",", ":"))
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v, separators=(",", ":"))


def _array_literal(items):
    return "{" + ",".join('"' + i.replace("\\", "\\\\").replace('"', '\\"') + '"' for i in items) + "}"


def compile_expr(src, typ):
    """Returns f(element, parent, index) -> text or None."""
    alts = _split(src, "|")
    if len(alts) > 1:
        fs = [compile_expr(a, typ) for a in alts]

        def alt(e, p, i):
            for f in fs:
                v = f(e, p, i)
                if v is not None:
                    return v
            return None
        return alt
    if src == "$":
        return lambda e, p, i: json.dumps(e, separators=(",", ":"))
    if src == "@index":
        return lambda e, p, i: str(i)
    if src == "#":
        return lambda e, p, i: "#" + str(i)
    if src.startswith("any(") or src.startswith("if("):
        args = _split(src[src.index("(") + 1:-1], ",")
        if src.startswith("any("):
            tests = [_truthy(a) for a in args]
            return lambda e, p, i: "true" if any(t(e, p) for t in tests) else "false"
        test, val = _truthy(args[0]), compile_expr(args[1], typ)
        return lambda e, p, i: val(e, p, i) if test(e, p) else None
    parent = src.startswith("^")
    path = src[1:] if parent else src
    if "[]" in path:
        arr_path, rest = path.split("[]", 1)
        arr_path = arr_path.split(".")
        elem = rest[1:].split(".") if rest else []

        def arr(e, p, i):
            a = _walk(p if parent else e, arr_path)
            if a is None:
                return None
            items = []
            for el in a:
                v = _walk(el, elem) if elem else el
                if v is not None:
                    items.append(_scalar(v, "text"))
            return _array_literal(items)
        return arr
    parts = path.split(".")

    def plain(e, p, i):
        v = _walk(p if parent else e, parts)
        return None if v is None else _scalar(v, typ)
    return plain


def _truthy(src):
    parent = src.startswith("^")
    parts = (src[1:] if parent else src).split(".")
    return lambda e, p: _walk(p if parent else e, parts) is True


class Mapper:
    def __init__(self, tdef):
        self.name = tdef["name"]
        self.columns = [c["name"] for c in tdef["columns"]]
        self.exprs = [compile_expr(c["source"], c["type"]) for c in tdef["columns"]]
        self.array_path = tdef["array_path"].split(".") if tdef["array_path"] else None

    def rows(self, obj):
        if self.array_path is None:
            yield [f(obj, None, 0) for f in self.exprs]
            return
        arr = _walk(obj, self.array_path) or []
        for i, el in enumerate(arr):
            yield [f(el, obj, i) for f in self.exprs]


# ---- the endpoints (the same requests a foundation sends, see src/core/streams.cpp) ------------
# (stream, method, path, list key, scope, routes: [(object type or None, table, [child tables])])
STREAMS = [
    ("catalog", "POST", "/v2/catalog/search", "objects", "once",
     [("CATEGORY", "catalog_categories", []), ("ITEM", "catalog_items", []),
      ("ITEM_VARIATION", "catalog_variations", ["catalog_vendor_info"])]),
    ("inventory", "POST", "/v2/inventory/counts/batch-retrieve", "counts", "once", [(None, "catalog_inventory", [])]),
    ("vendors", "POST", "/v2/vendors/search", "vendors", "once", [(None, "vendors", [])]),
    ("orders", "POST", "/v2/orders/search", "orders", "ten",
     [(None, "orders", ["order_line_items", "order_fulfillments", "order_refunds", "order_returns", "tenders"])]),
    ("payments", "GET", "/v2/payments", "payments", "each", [(None, "payments", [])]),
    ("refunds", "GET", "/v2/refunds", "refunds", "once", [(None, "payment_refunds", [])]),
    ("transactions", "GET", "/v2/locations/{location_id}/transactions", "transactions", "each",
     [(None, "transactions", [])]),
]


def first_request(stream, locs):
    if stream == "catalog":
        return {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"], "include_deleted_objects": True, "limit": 1000}
    if stream == "inventory":
        return {"limit": 1000}
    if stream == "vendors":
        return {"filter": {"status": ["ACTIVE", "INACTIVE"]}}
    if stream == "orders":
        return {"location_ids": locs, "limit": 1000,
                "query": {"sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}}
    if stream == "payments":
        return {"location_id": locs[0], "begin_time": EARLIEST, "limit": "100"}
    if stream == "refunds":
        return {"begin_time": EARLIEST, "limit": "100"}
    if stream == "transactions":
        return {"begin_time": EARLIEST}
    raise ValueError(stream)


class Client:
    def __init__(self, url, token):
        self.url, self.token = url, token
        self.requests = self.bytes = 0
        self.seconds = 0.0

    def call(self, method, path, body=None, query=None):
        t0 = time.perf_counter()
        target = self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(target, data=data, method=method, headers={
            "Authorization": "Bearer " + self.token, "Square-Version": "2025-08-20",
            "Content-Type": "application/json", "Accept": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            raw = r.read()
        self.requests += 1
        self.bytes += len(raw)
        self.seconds += time.perf_counter() - t0
        return raw


def reload_everything(con, url, token, tables_json, schema="square"):
    tdefs = {t["name"]: t for t in json.load(open(tables_json))}
    mappers = {n: Mapper(t) for n, t in tdefs.items()}
    client = Client(url, token)
    merchant = con.execute("SELECT merchant_id FROM squaresync.connection").fetchone()[0]
    t_map = t_copy = 0.0
    counts = {}
    t0 = time.perf_counter()

    def load(table, rows):
        nonlocal t_copy
        t = time.perf_counter()
        cols = ", ".join(f'"{c}"' for c in ["merchant_id"] + mappers[table].columns)
        with con.cursor().copy(f'COPY {schema}."{table}" ({cols}) FROM STDIN') as cp:
            for r in rows:
                cp.write_row([merchant] + r)
        counts[table] = counts.get(table, 0) + len(rows)
        t_copy += time.perf_counter() - t

    with con.transaction():
        con.execute("TRUNCATE " + ", ".join(f'{schema}."{t}"' for t in list(tdefs) + ["catalog_location_availability"])
                    + " CASCADE")
        # Locations first (the others need their ids).
        raw = client.call("GET", "/v2/locations")
        t = time.perf_counter()
        locs = json.loads(raw)["locations"]
        rows = [r for o in locs for r in mappers["locations"].rows(o)]
        t_map += time.perf_counter() - t
        load("locations", rows)
        loc_ids = sorted(l["id"] for l in locs)

        for stream, method, path, key, scope, routes in STREAMS:
            if scope == "once":
                groups = [loc_ids]
            elif scope == "ten":
                groups = [loc_ids[i:i + 10] for i in range(0, len(loc_ids), 10)]
            else:
                groups = [[l] for l in loc_ids]
            out = {}
            for rt in routes:
                out[rt[1]] = []
                for c in rt[2]:
                    out[c] = []
            for g in groups:
                req = first_request(stream, g)
                p = path.replace("{location_id}", g[0]) if "{location_id}" in path else path
                while True:
                    if method == "POST":
                        raw = client.call("POST", p, body=req)
                    else:
                        raw = client.call("GET", p, query=req)
                    t = time.perf_counter()
                    page = json.loads(raw)
                    for obj in page.get(key) or []:
                        for typ, table, children in routes:
                            if typ is not None and obj.get("type") != typ:
                                continue
                            out[table].extend(mappers[table].rows(obj))
                            for c in children:
                                out[c].extend(mappers[c].rows(obj))
                    t_map += time.perf_counter() - t
                    cur = page.get("cursor")
                    if not cur:
                        break
                    req = dict(req, cursor=cur)
            for table, rows in out.items():
                load(table, rows)
        # The derived availability, with the extension's own SQL.
        t = time.perf_counter()
        con.execute("SELECT squaresync._stage_availability(%s)", (merchant,))
        cols = [r[0] for r in con.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'square.catalog_location_availability'::regclass"
            " AND attnum > 0 AND NOT attisdropped AND attname <> 'synced_at' ORDER BY attnum")]
        cl = ", ".join(f'"{c}"' for c in cols)
        n = con.execute(f"INSERT INTO {schema}.catalog_location_availability ({cl})"
                        f" SELECT {cl} FROM squaresync.stage_catalog_location_availability").rowcount
        con.execute("TRUNCATE squaresync.stage_catalog_location_availability")
        counts["catalog_location_availability"] = n
        t_copy += time.perf_counter() - t
    total = time.perf_counter() - t0
    return {"seconds": total, "http_seconds": client.seconds, "parse_map_seconds": t_map, "copy_seconds": t_copy,
            "commit_and_other_seconds": total - client.seconds - t_map - t_copy,
            "requests": client.requests, "bytes": client.bytes, "rows": sum(counts.values()), "tables": counts}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dsn", required=True)
    ap.add_argument("--url", required=True)
    ap.add_argument("--token", default="fake-square-token")
    ap.add_argument("--tables", required=True, help="floor_download --dump-tables output")
    a = ap.parse_args()
    import psycopg
    with psycopg.connect(a.dsn, autocommit=True) as con:
        print(json.dumps(reload_everything(con, a.url, a.token, a.tables)))


if __name__ == "__main__":
    main()
