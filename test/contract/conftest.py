# Contract-test fixtures: start the fake Square server as a subprocess on port 0 (killed at the
# end), a tiny HTTP client, and JSON-schema validation against test/fake_square/schemas.json.
import copy
import gzip
import http.client
import json
import os
import select
import subprocess
import sys
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FAKE = os.path.join(ROOT, "test", "fake_square")
sys.path.insert(0, FAKE)
TOKEN = "fake-square-token"
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


class Resp:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw

    @property
    def json(self):
        return json.loads(self.raw)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


class Fake:
    def __init__(self, url, proc, tls_dir=None):
        self.url = url
        self.proc = proc
        self.tls_dir = tls_dir
        rest = url.split("//", 1)[1]
        self.host, port = rest.rsplit(":", 1)
        self.port = int(port)

    def conn(self, timeout=60):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def call(self, method, path, body=None, token=TOKEN, headers=None, timeout=60):
        h = {"Square-Version": "2025-08-20", "Content-Type": "application/json"}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}  # a header given as None is not sent
        c = self.conn(timeout)
        try:
            data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            if r.getheader("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            return Resp(r.status, r.getheaders(), raw)
        finally:
            c.close()

    def ok(self, method, path, body=None, **kw):
        r = self.call(method, path, body, **kw)
        assert r.status == 200, (method, path, r.status, r.raw[:500])
        return r.json

    def control(self, method, name, body=None):
        r = self.call(method, "/__fake__/" + name, body, token=None)
        return r.status, r.json

    def snapshot(self):
        st, snap = self.control("GET", "snapshot")
        assert st == 200
        return snap

    def walk(self, method, path, body=None, key=None, validate=None, max_pages=100000):
        """Follow cursors to the end; returns (items, pages)."""
        items, pages, cursor = [], [], None
        for _ in range(max_pages):
            if method == "POST":
                b = dict(body or {})
                if cursor:
                    b["cursor"] = cursor
                page = self.ok("POST", path, b)
            else:
                sep = "&" if "?" in path else "?"
                page = self.ok("GET", path + (sep + "cursor=" + cursor if cursor else ""))
            if validate:
                validate(page)
            pages.append(page)
            items.extend(page.get(key, []) if key else [])
            cursor = page.get("cursor")
            if not cursor:
                return items, pages
        raise AssertionError("did not reach the last page")


def start_server(*args, tls_dir=None):
    cmd = [PY, os.path.join(FAKE, "server.py"), "--host", "127.0.0.1", "--port", "0"] + list(args)
    if tls_dir:
        cmd += ["--tls-dir", tls_dir]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    line = b""
    while time.time() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            line = proc.stdout.readline()
            break
        if proc.poll() is not None:
            break
    if not line.startswith(b"listening "):
        proc.kill()
        raise RuntimeError("fake server did not start: %r %r" % (line, proc.stderr.read()[:2000]))
    return Fake(line.split()[1].decode(), proc, tls_dir)


def stop_server(fake):
    fake.proc.kill()
    fake.proc.wait()


@pytest.fixture(scope="session")
def fake():
    """seed dataset at scale 0.15 (9 locations, ~4.5k orders): big enough to page everywhere."""
    f = start_server("--dataset", "seed", "--scale", "0.15")
    yield f
    stop_server(f)


@pytest.fixture
def clean(fake):
    """The fake back at its generated dataset, no faults, fresh stats, before and after the test."""
    fake.control("POST", "reset")
    yield fake
    fake.control("DELETE", "faults")
    fake.control("POST", "reset")


@pytest.fixture(scope="session")
def demo():
    f = start_server("--dataset", "demo")
    yield f
    stop_server(f)


# ----------------------------------------------------------------------------- schemas
def _openapi_to_jsonschema(node):
    if isinstance(node, list):
        return [_openapi_to_jsonschema(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if k not in ("nullable", "readOnly", "format")}
    if node.get("nullable"):
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}]}
        elif "type" in out:
            out["type"] = [out["type"], "null"]
            if "enum" in out:
                out["enum"] = list(out["enum"]) + [None]
    return out


@pytest.fixture(scope="session")
def schemas():
    import jsonschema
    with open(os.path.join(FAKE, "schemas.json")) as f:
        raw = json.load(f)
    doc = _openapi_to_jsonschema(copy.deepcopy(raw))
    resolver_base = doc

    class S:
        spec = raw

        @staticmethod
        def validator(name):
            schema = {"$ref": "#/components/schemas/" + name}
            return jsonschema.Draft7Validator(schema, resolver=jsonschema.RefResolver("", resolver_base))

        @staticmethod
        def validate(name, instance):
            v = S.validator(name)
            errs = sorted(v.iter_errors(instance), key=lambda e: list(e.path))
            assert not errs, "%s: %s at %s" % (name, errs[0].message[:300], list(errs[0].path))

        @staticmethod
        def is_valid(name, instance):
            return S.validator(name).is_valid(instance)

        error_codes = set(raw["components"]["schemas"]["ErrorCode"]["enum"])
        error_categories = set(raw["components"]["schemas"]["ErrorCategory"]["enum"])

    return S


def assert_square_error(resp, status, code=None, category=None, schemas=None):
    assert resp.status == status, (resp.status, resp.raw[:400])
    body = resp.json
    assert isinstance(body.get("errors"), list) and body["errors"], body
    e = body["errors"][0]
    assert set(e) <= {"category", "code", "detail", "field"}
    if code:
        assert e["code"] == code, e
    if category:
        assert e["category"] == category, e
    if schemas is not None:
        assert e["code"] in schemas.error_codes
        assert e["category"] in schemas.error_categories
    return e
