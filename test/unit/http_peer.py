#!/usr/bin/python3
"""http_peer.py: a scripted HTTP(S) server for squaresync's HTTP client unit tests.

Started by test_http_client.cpp on port 0; prints "listening URL" on stdout. Behaviour by path:
  /page?n=N&cursor=K&ms=M&key=W   page K of N ({"items":[...],"cursor":"K+1"} until the last page)
  /hang?ms=M                      answers after M ms (counted in hangs_answered when it does)
  /status/CODE?retry_after=S&leak=1  CODE with a Square error envelope (leak=1: echoes Authorization in detail)
  /401 /403 /410                  those statuses with Square's envelopes
  /flaky/KEY?fail=F&status=S&mode=status|reset|hang&ms=M&retry_after=S
                                  the first F requests per KEY fail (status S, a reset, or a hang), then 200;
                                  their arrival times (monotonic seconds) in flaky_arrivals[KEY]
  /reset                          headers and part of the body, then a TCP RST (SO_LINGER 0)
  /redirect?to=URL                307 to URL
  /big?bytes=N&close=1            N bytes (close=1: no Content-Length, body ends at close)
  /gzip                           a JSON document, gzip-encoded when the client accepts gzip
  /echo                           {"method","path","headers" (lower-case names),"body"}
  /_stats, /_reset                counters (connections, requests, max_concurrent, ...); not counted themselves
Options: --tls-dir DIR (HTTPS with a certificate for 127.0.0.1 signed by a CA written to DIR/ca.pem),
         --watch-stdin (exit when stdin closes, so the peer never outlives the test).
"""
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


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        self.connections = 0
        self.requests = 0
        self.in_flight = 0
        self.max_concurrent = 0
        self.key_in_flight = {}
        self.key_max = {}
        self.paths = {}
        self.flaky = {}
        self.gzipped = 0
        self.hangs_answered = 0
        self.flaky_arrivals = {}

    def snapshot(self):
        return {"connections": self.connections, "requests": self.requests,
                "max_concurrent": self.max_concurrent, "key_max_concurrent": self.key_max,
                "paths": self.paths, "gzipped": self.gzipped,
                "hangs_answered": self.hangs_answered,
                "flaky_arrivals": self.flaky_arrivals}


STATE = State()

ENVELOPES = {
    400: ("INVALID_REQUEST_ERROR", "BAD_REQUEST", "The request is malformed."),
    401: ("AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized."),
    403: ("AUTHENTICATION_ERROR", "FORBIDDEN", "You are not allowed to access this resource."),
    404: ("INVALID_REQUEST_ERROR", "NOT_FOUND", "Resource not found."),
    410: ("INVALID_REQUEST_ERROR", "GONE", "This endpoint has been retired."),
    429: ("RATE_LIMIT_ERROR", "RATE_LIMITED", "Rate limit exceeded."),
    500: ("API_ERROR", "INTERNAL_SERVER_ERROR", "An internal error occurred."),
    503: ("API_ERROR", "SERVICE_UNAVAILABLE", "Service unavailable."),
}


def envelope(code, detail=None):
    category, ecode, text = ENVELOPES.get(code, ("API_ERROR", "UNKNOWN", "HTTP %d" % code))
    return {"errors": [{"category": category, "code": ecode, "detail": detail or text}]}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "http_peer"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms delayed-ACK stalls
    counted = False

    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except Exception:  # client went away: aborted transfer, timeout, TLS failure
            pass

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def dispatch(self):
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        n = int(self.headers.get("Content-Length") or 0)
        self.req_body = self.rfile.read(n) if n else b""
        if url.path.startswith("/_"):
            if url.path == "/_reset":
                with STATE.lock:
                    STATE.reset()
                return self.reply(200, {"reset": True})
            with STATE.lock:
                snap = json.loads(json.dumps(STATE.snapshot()))
            return self.reply(200, snap)

        key = q.get("key", "")
        with STATE.lock:
            if not self.counted:
                self.counted = True
                STATE.connections += 1
            STATE.requests += 1
            STATE.paths[url.path] = STATE.paths.get(url.path, 0) + 1
            STATE.in_flight += 1
            STATE.max_concurrent = max(STATE.max_concurrent, STATE.in_flight)
            if key:
                STATE.key_in_flight[key] = STATE.key_in_flight.get(key, 0) + 1
                STATE.key_max[key] = max(STATE.key_max.get(key, 0), STATE.key_in_flight[key])
        done = [False]

        def leave():  # called before the answer is written, so the client cannot see overlap that is not there
            if done[0]:
                return
            done[0] = True
            with STATE.lock:
                STATE.in_flight -= 1
                if key:
                    STATE.key_in_flight[key] -= 1
        self.leave = leave
        try:
            self.route(url.path, q)
        finally:
            leave()

    def reply(self, status, obj=None, headers=(), raw=None):
        body = raw if raw is not None else json.dumps(obj).encode()
        if getattr(self, "leave", None):
            self.leave()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def fail_status(self, code, q):
        headers = []
        if "retry_after" in q:
            headers.append(("Retry-After", q["retry_after"]))
        detail = None
        if q.get("leak"):
            detail = "got " + str(self.headers.get("Authorization"))
        self.reply(code, envelope(code, detail), headers)

    def route(self, path, q):
        ms = int(q.get("ms", 0))
        if path == "/page":
            n, cursor = int(q.get("n", 3)), int(q.get("cursor", 0))
            time.sleep(ms / 1000)
            out = {"items": [{"id": "%s-%d" % (q.get("key", "item"), cursor)}]}
            if cursor + 1 < n:
                out["cursor"] = str(cursor + 1)
            return self.reply(200, out)
        if path == "/hang":
            time.sleep(ms / 1000)
            with STATE.lock:
                STATE.hangs_answered += 1
            return self.reply(200, {"slept": ms})
        if path.startswith("/status/"):
            return self.fail_status(int(path[len("/status/"):]), q)
        if path in ("/401", "/403", "/410"):
            return self.fail_status(int(path[1:]), q)
        if path.startswith("/flaky/"):
            fkey = path[len("/flaky/"):]
            with STATE.lock:
                seen = STATE.flaky.get(fkey, 0)
                STATE.flaky[fkey] = seen + 1
                STATE.flaky_arrivals.setdefault(fkey, []).append(time.monotonic())
            if seen < int(q.get("fail", 1)):
                mode = q.get("mode", "status")
                if mode == "reset":
                    return self.reset()
                if mode == "hang":
                    time.sleep(ms / 1000)
                    return self.reply(200, {"late": True})
                return self.fail_status(int(q.get("status", 503)), q)
            return self.reply(200, {"ok": True, "key": fkey, "attempt": seen + 1})
        if path == "/reset":
            return self.reset()
        if path == "/redirect":
            return self.reply(307, {}, [("Location", q.get("to", "https://example.invalid/"))])
        if path == "/big":
            size = int(q.get("bytes", 1 << 20))
            if q.get("close"):
                self.leave()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                chunk = b"x" * 65536
                while size > 0:
                    self.wfile.write(chunk[:size])
                    size -= len(chunk)
                return
            return self.reply(200, raw=b"x" * size)
        if path == "/gzip":
            doc = json.dumps({"compressed": True, "data": "squaresync " * 2000}).encode()
            if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                with STATE.lock:
                    STATE.gzipped += 1
                return self.reply(200, headers=[("Content-Encoding", "gzip")], raw=gzip.compress(doc))
            return self.reply(200, raw=doc)
        if path == "/echo":
            return self.reply(200, {"method": self.command, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": self.req_body.decode("utf-8", "replace")})
        return self.fail_status(404, q)

    def reset(self):
        self.leave()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"items": [')
        self.wfile.flush()
        time.sleep(0.05)
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.rfile.close()
        self.wfile.close()
        sock.close()  # linger 0: RST instead of FIN


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


def make_tls_context(d):
    os.makedirs(d, exist_ok=True)

    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=squaresync test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    ossl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(d, "server.pem"), os.path.join(d, "server.key"))
    return ctx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--tls-dir")
    ap.add_argument("--watch-stdin", action="store_true")
    args = ap.parse_args()

    server = Server(("127.0.0.1", args.port), Handler)
    scheme = "http"
    if args.tls_dir:
        ctx = make_tls_context(args.tls_dir)
        # The handshake happens on first read, in the connection's thread, not in accept().
        server.socket = ctx.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        scheme = "https"
    if args.watch_stdin:
        def watch():
            sys.stdin.buffer.read()
            os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    print("listening %s://127.0.0.1:%d" % (scheme, server.server_address[1]), flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
