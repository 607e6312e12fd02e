# Every fault /__fake__/faults can arm behaves as documented, fires only on matching /v2/ requests,
# for `count` requests, and shows in /__fake__/stats.
import http.client
import json
import socket
import time

import pytest

from conftest import assert_square_error, TOKEN

H = {"Authorization": "Bearer " + TOKEN}


def arm(fake, **spec):
    st, body = fake.control("POST", "faults", spec)
    assert st == 200, body
    return body


@pytest.mark.parametrize("fault,status,code,category", [
    ("429", 429, "RATE_LIMITED", "RATE_LIMIT_ERROR"),
    ("500", 500, "INTERNAL_SERVER_ERROR", "API_ERROR"),
    ("502", 502, "BAD_GATEWAY", "API_ERROR"),
    ("503", 503, "SERVICE_UNAVAILABLE", "API_ERROR"),
    ("401", 401, "UNAUTHORIZED", "AUTHENTICATION_ERROR"),
    ("410", 410, "GONE", "INVALID_REQUEST_ERROR"),
])
def test_status_faults(clean, schemas, fault, status, code, category):
    ans = arm(clean, fault=fault, path="/v2/locations", count=2)
    assert ans["armed"]["fault"] == fault and ans["armed"]["count"] == 2
    assert clean.call("GET", "/v2/merchants").status == 200          # other paths unaffected
    for _ in range(2):
        r = clean.call("GET", "/v2/locations")
        assert_square_error(r, status, code, category, schemas)
        assert r.header("Retry-After") is None
    assert clean.call("GET", "/v2/locations").status == 200
    st, stats = clean.control("GET", "stats")
    assert stats["faults_fired"][fault] == 2


def test_429_retry_after(clean):
    arm(clean, fault="429", retry_after=3)
    r = clean.call("GET", "/v2/locations")
    assert r.status == 429 and r.header("Retry-After") == "3"


def test_delay_and_latency(clean):
    arm(clean, fault="delay", delay_ms=400)
    t = time.time()
    assert clean.call("GET", "/v2/locations").status == 200
    assert time.time() - t >= 0.4
    ans = arm(clean, latency_ms=150)
    assert ans["latency_ms"] == 150
    t = time.time()
    for _ in range(2):
        clean.call("GET", "/v2/locations")
    assert time.time() - t >= 0.3
    clean.control("DELETE", "faults")
    st, state = clean.control("GET", "faults")
    assert st == 200 and state == {"armed": [], "latency_ms": 0}


def test_hang(clean):
    arm(clean, fault="hang", delay_ms=1500)
    with pytest.raises((socket.timeout, TimeoutError)):
        clean.call("GET", "/v2/locations", timeout=0.5)
    time.sleep(1.2)
    assert clean.call("GET", "/v2/locations").status == 200


def test_reset(clean):
    arm(clean, fault="reset")
    c = clean.conn()
    c.request("GET", "/v2/locations", headers=H)
    r = c.getresponse()
    assert r.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
        r.read()
    c.close()
    assert clean.call("GET", "/v2/locations").status == 200


def test_truncate(clean):
    full = clean.call("GET", "/v2/locations").raw
    arm(clean, fault="truncate")
    c = clean.conn()
    c.request("GET", "/v2/locations", headers=H)
    r = c.getresponse()
    body = r.read()
    assert r.status == 200 and int(r.getheader("Content-Length")) == len(body) == len(full) // 2
    with pytest.raises(ValueError):
        json.loads(body)
    c.close()


def test_malformed(clean):
    arm(clean, fault="malformed")
    r = clean.call("POST", "/v2/catalog/search", {})
    assert r.status == 200
    with pytest.raises(ValueError):
        json.loads(r.raw)


def test_wrong_shape(clean, schemas):
    arm(clean, fault="wrong_shape", path="/v2/orders/search")
    r = clean.call("POST", "/v2/orders/search", {"location_ids": ["x"]})
    assert r.status == 200
    assert not schemas.is_valid("SearchOrdersResponse", r.json)
    assert r.json["orders"] == "x"


def test_invalid_cursor_only_hits_cursor_requests(clean, schemas):
    arm(clean, fault="invalid_cursor", path="/v2/catalog/search")
    p1 = clean.ok("POST", "/v2/catalog/search", {"limit": 5})       # no cursor: not consumed
    r = clean.call("POST", "/v2/catalog/search", {"limit": 5, "cursor": p1["cursor"]})
    assert_square_error(r, 400, "INVALID_CURSOR", "INVALID_REQUEST_ERROR", schemas)
    assert clean.ok("POST", "/v2/catalog/search", {"limit": 5, "cursor": p1["cursor"]})["objects"]


def test_repeat_cursor(clean):
    p1 = clean.ok("POST", "/v2/catalog/search", {"limit": 5})
    arm(clean, fault="repeat_cursor", count=3)
    for _ in range(3):
        p = clean.ok("POST", "/v2/catalog/search", {"limit": 5, "cursor": p1["cursor"]})
        assert p["cursor"] == p1["cursor"]
    p = clean.ok("POST", "/v2/catalog/search", {"limit": 5, "cursor": p1["cursor"]})
    assert p["cursor"] != p1["cursor"]


def test_redirect(clean):
    arm(clean, fault="redirect")
    r = clean.call("GET", "/v2/locations?x=1")
    assert r.status == 307
    assert r.header("Location") == "http://127.0.0.2:%d/v2/locations?x=1" % clean.port


def test_oversize_small_complete(clean):
    arm(clean, fault="oversize", bytes=3 * 1024 * 1024)
    c = clean.conn()
    c.request("POST", "/v2/catalog/search", body=b"{}", headers=H)
    r = c.getresponse()
    assert int(r.getheader("Content-Length")) == 3 * 1024 * 1024
    body = r.read()
    assert len(body) == 3 * 1024 * 1024
    assert len(json.loads(body)["objects"]) > 10000
    c.close()


def test_oversize_default_client_hangs_up(clean):
    ans = arm(clean, fault="oversize")
    assert ans["armed"]["bytes"] == 200 * 1024 * 1024
    c = clean.conn()
    c.request("GET", "/v2/locations", headers=H)
    r = c.getresponse()
    assert int(r.getheader("Content-Length")) == 200 * 1024 * 1024
    r.read(1024 * 1024)
    c.close()
    time.sleep(0.3)
    assert clean.call("GET", "/v2/locations").status == 200


def test_bad_fault_spec(clean):
    st, body = clean.control("POST", "faults", {"fault": "explode"})
    assert st == 400 and "error" in body
    st, body = clean.control("GET", "faults")
    assert body["armed"] == []


def test_control_api_is_outside_v2_and_needs_no_auth(clean):
    arm(clean, fault="500", count=5)
    st, _ = clean.control("GET", "stats")
    assert st == 200                              # faults never hit /__fake__/
    clean.control("DELETE", "faults")
    clean.call("GET", "/v2/locations")
    st, stats = clean.control("GET", "stats")
    assert stats["requests"]["GET /v2/locations"] >= 1 and stats["bytes_sent"] > 0
