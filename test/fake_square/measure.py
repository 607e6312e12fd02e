#!/usr/bin/python3
# Throughput check for the fake Square server: starts it (seed dataset unless told otherwise), walks
# every page of every list endpoint over one keep-alive connection, prints MB/s and pages/s.
#   /usr/bin/python3 test/fake_square/measure.py [--dataset seed|demo] [--scale F] [--gzip]
import argparse
import http.client
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOKEN = "fake-square-token"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="seed")
    ap.add_argument("--scale", default="1")
    ap.add_argument("--gzip", action="store_true")
    a = ap.parse_args()
    t0 = time.time()
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--dataset", a.dataset,
                             "--scale", a.scale], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().split()
        print("startup %.1fs" % (time.time() - t0))
        host, port = line[1].split("//")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port))
        hdr = {"Authorization": "Bearer " + TOKEN, "Square-Version": "2025-08-20", "Content-Type": "application/json"}
        if a.gzip:
            hdr["Accept-Encoding"] = "gzip"
        stats = {"pages": 0, "bytes": 0}

        def call(method, path, body=None):
            conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=hdr)
            r = conn.getresponse()
            data = r.read()
            stats["pages"] += 1
            stats["bytes"] += len(data)
            if r.status != 200:
                raise SystemExit("%s %s -> %d %s" % (method, path, r.status, data[:300]))
            if r.getheader("Content-Encoding") == "gzip":
                import gzip
                data = gzip.decompress(data)
            return json.loads(data)

        def walk_post(path, body):
            cur = None
            while True:
                b = dict(body)
                if cur:
                    b["cursor"] = cur
                cur = call("POST", path, b).get("cursor")
                if not cur:
                    return

        def walk_get(path):
            cur = None
            while True:
                sep = "&" if "?" in path else "?"
                cur = call("GET", path + (sep + "cursor=" + cur if cur else "")).get("cursor")
                if not cur:
                    return

        t1 = time.time()
        locs = [l["id"] for l in call("GET", "/v2/locations")["locations"]]
        call("GET", "/v2/merchants")
        walk_post("/v2/catalog/search", {"object_types": ["ITEM", "ITEM_VARIATION", "CATEGORY"],
                                         "include_deleted_objects": True, "limit": 1000})
        walk_get("/v2/catalog/list?types=ITEM,CATEGORY")
        walk_post("/v2/inventory/counts/batch-retrieve", {"limit": 1000})
        walk_post("/v2/vendors/search", {"filter": {"status": ["ACTIVE", "INACTIVE"]}})
        for i in range(0, len(locs), 10):
            walk_post("/v2/orders/search", {"location_ids": locs[i:i + 10], "limit": 1000,
                                            "query": {"sort": {"sort_field": "UPDATED_AT", "sort_order": "ASC"}}})
        for lid in locs:
            walk_get("/v2/payments?begin_time=2000-01-01T00:00:00Z&location_id=" + lid)
            walk_get("/v2/locations/%s/transactions?begin_time=2000-01-01T00:00:00Z" % lid)
        walk_get("/v2/refunds?begin_time=2000-01-01T00:00:00Z")
        dt = time.time() - t1
        print("walked %d pages, %.1f MB in %.2fs: %.1f MB/s, %.0f pages/s%s"
              % (stats["pages"], stats["bytes"] / 1e6, dt, stats["bytes"] / 1e6 / dt, stats["pages"] / dt,
                 " (gzip)" if a.gzip else ""))
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    main()
