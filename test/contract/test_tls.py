# HTTPS mode: the server's certificate (127.0.0.1 and localhost SANs) verifies against DIR/ca.pem.
import http.client
import json
import os
import ssl

import pytest

from conftest import start_server, stop_server, TOKEN


@pytest.fixture(scope="module")
def tls_fake(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    f = start_server("--dataset", "demo", tls_dir=d)
    yield f
    stop_server(f)


def test_url_is_https(tls_fake):
    assert tls_fake.url.startswith("https://127.0.0.1:")
    assert os.path.exists(os.path.join(tls_fake.tls_dir, "ca.pem"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_with_written_ca(tls_fake, host):
    ctx = ssl.create_default_context(cafile=os.path.join(tls_fake.tls_dir, "ca.pem"))
    c = http.client.HTTPSConnection(host, tls_fake.port, context=ctx, timeout=30)
    try:
        for _ in range(2):     # keep-alive over TLS
            c.request("GET", "/v2/locations", headers={"Authorization": "Bearer " + TOKEN})
            r = c.getresponse()
            assert r.status == 200
            assert len(json.loads(r.read())["locations"]) == 3
    finally:
        c.close()


def test_tls_rejected_without_ca(tls_fake):
    ctx = ssl.create_default_context()
    c = http.client.HTTPSConnection("127.0.0.1", tls_fake.port, context=ctx, timeout=30)
    with pytest.raises(ssl.SSLCertVerificationError):
        c.request("GET", "/v2/locations")
    c.close()
