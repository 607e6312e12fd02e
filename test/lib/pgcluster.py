"""pgcluster.py: throwaway PostgreSQL clusters for the end-to-end tests, the demo and the benchmark.

PostgreSQL refuses to run as root, so when we are root every server command runs as the `postgres`
OS user (runuser) in a directory that user owns, under /tmp (a CI clone may sit where postgres
cannot enter). Connections use TCP on 127.0.0.1 with trust authentication.
"""
import os
import shutil
import socket
import subprocess
import time

PG_BIN = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
# pg_config may be the client's; the server binaries sit in /usr/lib/postgresql/<major>/bin on Debian.
if not os.path.exists(os.path.join(PG_BIN, "initdb")):
    major = subprocess.run(["pg_config", "--version"], capture_output=True, text=True).stdout.split()[1].split(".")[0]
    PG_BIN = f"/usr/lib/postgresql/{major}/bin"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd, **kw):
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, **kw)


class Cluster:
    def __init__(self, name, preload=("squaresync",), settings=None, root="/tmp/squaresync-clusters"):
        self.dir = os.path.join(root, f"{name}-{os.getpid()}")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "server.log")
        self.port = free_port()
        self.preload = list(preload)
        self.settings = dict(settings or {})

    def init(self):
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)
        os.makedirs(self.dir)
        os.chmod(os.path.dirname(self.dir), 0o777)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        _as_postgres([os.path.join(PG_BIN, "initdb"), "-D", self.data, "--auth=trust", "-U", "postgres",
                      "--no-sync", "-E", "UTF8", "--locale=C"], check=True, capture_output=True)
        conf = {
            "port": self.port,
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.dir}'",
            "fsync": "off",
            "max_worker_processes": 16,
            "log_line_prefix": "'%m [%p] %b '",
            "shared_preload_libraries": "'" + ",".join(self.preload) + "'",
        }
        conf.update(self.settings)
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            for k, v in conf.items():
                f.write(f"{k} = {v}\n")
        return self

    def start(self):
        _as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60", "start"],
                     check=True, capture_output=True)
        return self

    def stop(self, mode="fast"):
        _as_postgres([os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"],
                     capture_output=True)

    def restart(self, mode="fast"):
        self.stop(mode)
        self.start()

    def set(self, **settings):
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            for k, v in settings.items():
                f.write(f"{k} = {v}\n")

    def dsn(self, dbname="postgres", user="postgres"):
        return f"host=127.0.0.1 port={self.port} dbname={dbname} user={user}"

    def connect(self, dbname="postgres", user="postgres", autocommit=True, wait=30):
        """A connection; retried while the server is starting up or recovering from a crash."""
        import psycopg
        deadline = time.time() + wait
        while True:
            try:
                return psycopg.connect(self.dsn(dbname, user), autocommit=autocommit)
            except psycopg.OperationalError as e:
                transient = any(m in str(e) for m in ("not yet accepting connections", "starting up",
                                                      "in recovery mode", "shutting down", "Connection refused"))
                if not transient or time.time() > deadline:
                    raise
                time.sleep(0.2)

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
