"""conftest.py: fixtures for the end-to-end tests: a real PostgreSQL cluster preloading squaresync
(run as the postgres OS user), the project's fake Square server on loopback, and a fresh extension
connected to it for each test."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

from pgcluster import Cluster  # noqa: E402
from fakesquare import FakeSquare  # noqa: E402


@pytest.fixture(scope="session")
def cluster():
    c = Cluster("e2e").init().start()
    yield c
    c.destroy()


@pytest.fixture(scope="session")
def fake():
    f = FakeSquare(scale=0.02).start()
    yield f
    f.stop()


@pytest.fixture
def db(cluster, fake):
    """A freshly created extension, connected to the fake (reset to its generated dataset)."""
    fake.reset()
    con = cluster.connect()
    con.execute("DROP EXTENSION IF EXISTS squaresync CASCADE")
    con.execute("CREATE EXTENSION squaresync")
    con.execute("SELECT squaresync.connect(%s, base_url => %s)", (fake.token, fake.url))
    yield con
    con.close()
