#!/usr/bin/python3
# Fake Square API server (entry point): HTTP/1.1 + optional TLS serving of the /v2/ endpoints in
# routes.py over the data in dataset.py, the /__fake__/ control API (mutate, faults, stats, snapshot,
# reset) and carrying out the faults armed in faults.py.  Standard library + the openssl CLI only.
#
#   /usr/bin/python3 test/fake_square/server.py --host 127.0.0.1 --port 0 [--tls-dir DIR] [--token T]
#       [--dataset seed|demo] [--scale F] [--seed N] [--locations N]
# prints exactly one line "listening URL" on stdout when ready.
import argparse
import gzip
import json
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import routes  # noqa: E402
from dataset import Dataset, Clock, dumps  # noqa: E402
from faults import Faults  # noqa: E402

DEFAULT_TOKEN = "fake-square-token"


class State:
    def __init__(self, args):
        self.args = args
        self.start_ms = int(time.time() * 1000)
        self.clock = Clock()
        self.ds = self._build()
        self.faults = Faults()
        self.stats_lock = threading.Lock()
        self.reset_stats()

    def _build(self):
        ds = Dataset(self.args.dataset, self.args.scale, self.args.seed, self.args.locations, self.start_ms)
        ds.clock = self.clock      # one strictly increasing clock across resets
        return ds

    def reset(self):
        ds = self._build()
        self.ds = ds
        self.faults.clear()
        self.faults.reset_stats()
        self.reset_stats()

    def reset_stats(self):
        with self.stats_lock:
            self.requests = {}
            self.statuses = {}
            self.bytes_sent = 0
            self.control_requests = 0

    def count(self, template, status, nbytes):
        with self.stats_lock:
            self.requests[template] = self.requests.get(template, 0) + 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
            self.bytes_sent += nbytes

    def add_bytes(self, n):
        with self.stats_lock:
            self.bytes_sent += n


def make_certs(tls_dir):
    """CA (DIR/ca.pem) and a server certificate for 127.0.0.1 / localhost signed by it."""
    os.makedirs(tls_dir, exist_ok=True)
    p = lambda n: os.path.join(tls_dir, n)  # noqa: E731
    with open(p("server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run = lambda *a: subprocess.run(["openssl"] + list(a), check=True, stdout=subprocess.DEVNULL,  # noqa: E731
                                    stderr=subprocess.PIPE)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", p("ca.key"), "-out", p("ca.pem"),
        "-days", "3650", "-subj", "/CN=squaresync fake Square test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", p("server.key"), "-out", p("server.csr"),
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
        "-out", p("server.pem"), "-days", "825", "-sha256", "-extfile", p("server.ext"))
    return p("server.pem"), p("server.key")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    allow_reuse_address = True

    def finish_request(self, request, client_address):
        if self.ssl_ctx is not None:
            try:
                request.settimeout(30)
                request = self.ssl_ctx.wrap_socket(request, server_side=True)
                request.settimeout(None)
            except (ssl.SSLError, OSError):
                return
        self.RequestHandlerClass(request, client_address, self)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY each keep-alive response would
    # wait ~40 ms for the delayed ACK (Nagle), which is the fake's cost, not a client's.
    disable_nagle_algorithm = True
    server_version = "FakeSquare/1.0"
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.state.args.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    # ------------------------------------------------------------------ plumbing
    def _read_body(self):
        te = self.headers.get("Transfer-Encoding", "")
        if "chunked" in te.lower():
            out = []
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out.append(self.rfile.read(n))
                self.rfile.readline()
            return b"".join(out)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, body, headers=None, template=None, compress=True):
        use_gzip = compress and "gzip" in (self.headers.get("Accept-Encoding") or "").lower() and len(body) > 256
        if use_gzip:
            body = gzip.compress(body, compresslevel=1)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if use_gzip:
            self.send_header("Content-Encoding", "gzip")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # Counted before the body goes out, so a client that reads /__fake__/stats right after its
        # response always finds the request there.
        if template is not None:
            self.server.state.count(template, status, len(body))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status, obj):
        self._send(status, json.dumps(obj, indent=None).encode())

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def _dispatch(self, method):
        try:
            body = self._read_body()
            url = urlsplit(self.path)
            if url.path.startswith("/__fake__/") or url.path == "/__fake__":
                self._control(method, url, body)
            else:
                self._api(method, url, body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError, socket.timeout):
            self.close_connection = True

    # ------------------------------------------------------------------ control API
    def _control(self, method, url, body):
        st = self.server.state
        with st.stats_lock:
            st.control_requests += 1
        name = url.path[len("/__fake__/"):].strip("/")
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError:
            return self._json(400, {"error": "body is not valid JSON"})
        if name == "mutate" and method == "POST":
            res, err = st.ds.mutate(data)
            if err:
                return self._json(400, {"error": err})
            return self._json(200, res)
        if name == "faults":
            if method == "POST":
                ans, err = st.faults.arm(data)
                if err:
                    return self._json(400, {"error": err})
                return self._json(200, ans)
            if method == "DELETE":
                st.faults.clear()
                return self._json(200, {"cleared": True})
            if method == "GET":
                return self._json(200, st.faults.state())
        if name == "stats" and method == "GET":
            with st.stats_lock:
                out = {"requests": dict(st.requests), "statuses": dict(st.statuses), "bytes_sent": st.bytes_sent,
                       "requests_total": sum(st.requests.values()), "control_requests": st.control_requests}
            with st.faults.lock:
                out["faults_fired"] = dict(st.faults.fired)
            return self._json(200, out)
        if name == "snapshot" and method == "GET":
            return self._send(200, dumps(st.ds.snapshot()))
        if name == "reset" and method == "POST":
            st.reset()
            return self._json(200, {"reset": True})
        if name == "info" and method == "GET":
            ds = st.ds
            return self._json(200, {"merchant_id": ds.merchant_id, "main_location_id": ds.main_location_id,
                                    "location_ids": ds.loc_ids, "token": st.args.token, "dataset": ds.kind,
                                    "scale": ds.scale, "seed": ds.seed, "anchor": routes.ts(ds.anchor_ms),
                                    "sizes": ds.sizes})
        return self._json(404, {"error": "unknown control endpoint %s %s" % (method, url.path)})

    # ------------------------------------------------------------------ /v2/
    def _api(self, method, url, raw):
        st = self.server.state
        path = url.path
        query = parse_qs(url.query, keep_blank_values=True)
        try:
            template = routes.match(method, path)[0]
        except routes.ApiError:
            template = "unmatched"
        if st.faults.latency_ms:
            time.sleep(st.faults.latency_ms / 1000.0)
        cursor_in = routes.q1(query, "cursor")
        if cursor_in is None and method == "POST":
            try:
                b = json.loads(raw) if raw.strip() else {}
                if isinstance(b, dict) and isinstance(b.get("cursor"), str):
                    cursor_in = b["cursor"]
            except ValueError:
                pass
        ctx = routes.Ctx()
        ctx.cursor_in = cursor_in
        fault = st.faults.take(path, cursor_in is not None) if path.startswith("/v2/") else None
        if fault and self._early_fault(fault, template, method):
            return
        if fault and fault["fault"] in ("hang", "delay"):
            time.sleep(fault["delay_ms"] / 1000.0)
        if fault and fault["fault"] == "repeat_cursor":
            ctx.repeat_cursor = True
        status, body, headers = self._run(method, path, query, raw, ctx, st)
        if fault and fault["fault"] == "truncate":
            cut = body[: max(1, len(body) // 2)]
            return self._send(200, cut, template=template, compress=False)
        if fault and fault["fault"] == "reset":
            return self._reset(body, template)
        self._send(status, body, headers, template=template)

    def _run(self, method, path, query, raw, ctx, st):
        try:
            template, fn, args = routes.match(method, path)
            routes.check_auth(self.headers, st.args.token)
            body = routes.parse_body(method, raw)
            ds = st.ds
            with ds.lock:
                out = fn(ds, ctx, query, body, *args)
            return 200, out, {}
        except routes.ApiError as e:
            return e.status, e.body(), e.headers

    def _early_fault(self, fault, template, method):
        f = fault["fault"]
        api_err = {"429": (429, "RATE_LIMIT_ERROR", "RATE_LIMITED", "Rate limited."),
                   "500": (500, "API_ERROR", "INTERNAL_SERVER_ERROR", "A general server error occurred."),
                   "502": (502, "API_ERROR", "BAD_GATEWAY", "Bad Gateway - a general error occurred."),
                   "503": (503, "API_ERROR", "SERVICE_UNAVAILABLE", "Service Unavailable - a general error occurred."),
                   "401": (401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized."),
                   "410": (410, "INVALID_REQUEST_ERROR", "GONE", "The target resource is no longer available."),
                   "invalid_cursor": (400, "INVALID_REQUEST_ERROR", "INVALID_CURSOR",
                                      "The pagination cursor included in the request is invalid.")}
        if f in api_err:
            status, cat, code, detail = api_err[f]
            headers = {}
            if f == "429" and fault.get("retry_after") is not None:
                headers["Retry-After"] = str(fault["retry_after"])
            field = "cursor" if f == "invalid_cursor" else None
            self._send(status, routes.error_body(status, cat, code, detail, field), headers, template=template)
            return True
        if f == "malformed":
            self._send(200, b'{"errors":[],"objects":[{"type":"ITEM","id":"X" "version": }', template=template,
                       compress=False)
            return True
        if f == "wrong_shape":
            key = routes.LIST_KEYS.get(template, "objects")
            self._send(200, json.dumps({key: "x", "cursor": 42}).encode(), template=template)
            return True
        if f == "redirect":
            scheme = "https" if self.server.ssl_ctx is not None else "http"
            loc = "%s://127.0.0.2:%d%s" % (scheme, self.server.server_address[1], self.path)
            self._send(307, b'{"errors":[]}', {"Location": loc}, template=template)
            return True
        if f == "oversize":
            self._oversize(fault["bytes"], template)
            return True
        return False

    def _oversize(self, total, template):
        prefix, suffix = b'{"objects":[', b"]}"
        unit = b'{"type":"ITEM","id":"OVERSIZEOVERSIZEOVERSIZ","is_deleted":false,"version":1},'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(total))
        self.end_headers()
        sent = 0
        block = unit * 1024
        try:
            self.wfile.write(prefix)
            sent += len(prefix)
            body_room = total - len(prefix) - len(suffix)
            n_units = body_room // len(unit)
            done = 0
            while done < n_units:
                k = min(1024, n_units - done)
                chunk = block if k == 1024 else unit * k
                if done + k == n_units:
                    chunk = chunk[:-1] + b" "       # no trailing comma
                self.wfile.write(chunk)
                sent += len(chunk)
                done += k
            pad = body_room - n_units * len(unit)
            self.wfile.write(b" " * pad + suffix)
            sent += pad + len(suffix)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, ssl.SSLError, OSError):
            self.close_connection = True
        self.server.state.count(template, 200, sent)

    def _reset(self, body, template):
        half = body[: max(1, len(body) // 2)]
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(half)
        self.server.state.count(template, 200, len(half))
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.close_connection = True
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
            self.wfile.close()
        except OSError:
            pass
        try:
            if isinstance(conn, ssl.SSLSocket):
                # close the raw fd without a TLS close_notify so the peer sees a reset
                os.close(conn.detach())
            else:
                conn.close()
        except OSError:
            pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="Fake Square API server for squaresync tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-dir", default=None, help="serve HTTPS; writes DIR/ca.pem (the CA to trust)")
    ap.add_argument("--token", default=DEFAULT_TOKEN, help="the bearer token to accept (default %(default)s)")
    ap.add_argument("--dataset", choices=["seed", "demo"], default="seed")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--locations", type=int, default=None)
    ap.add_argument("--verbose", action="store_true", help="log every request on stderr")
    args = ap.parse_args(argv)
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    if args.locations is not None and args.locations < 1:
        ap.error("--locations must be >= 1")
    state = State(args)
    srv = Server((args.host, args.port), Handler)
    srv.state = state
    srv.ssl_ctx = None
    scheme = "http"
    if args.tls_dir:
        cert, key = make_certs(args.tls_dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.ssl_ctx = ctx
        scheme = "https"
    host, port = srv.server_address[:2]
    sys.stdout.write("listening %s://%s:%d\n" % (scheme, host, port))
    sys.stdout.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
