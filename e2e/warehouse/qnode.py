"""An `automq-query-node` process on free loopback ports with its own data directory,
killed by PID."""

import os
import sys
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pymysql
import pytest

REPO = Path(__file__).resolve().parents[2]
_TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
DEFAULT_BIN = (_TARGET if _TARGET.is_absolute() else REPO / _TARGET) / "debug" / "automq-query-node"


if str(REPO / "e2e") not in sys.path:  # e2e/ports.py, also when imported from bench/
    sys.path.insert(0, str(REPO / "e2e"))
from ports import free_port  # noqa: E402,F401


def binary():
    path = Path(os.environ.get("AUTOMQ_QUERY_NODE_BIN", DEFAULT_BIN))
    if not path.is_file():
        pytest.fail(
            f"query node binary not found at {path}: build it with `cargo build -p automq-warehouse` "
            "or point $AUTOMQ_QUERY_NODE_BIN at one",
            pytrace=False,
        )
    return path


class QueryNode:
    def __init__(self, data_dir, args=(), env=None, root_password=""):
        """`args`: extra command-line flags; `env`: extra environment variables;
        `root_password`: root's password (given through AUTOMQ_ROOT_PASSWORD)."""
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = dict(env or {})
        self.root_password = root_password
        self.proc = None
        self.port = None
        self.http_port = None

    def start(self):
        self.port, self.http_port = free_port(), free_port()
        log = open(self.data_dir / "node.log", "ab")
        self.proc = subprocess.Popen(
            [
                str(binary()),
                "--data-dir", str(self.data_dir),
                "--mysql-listen", f"127.0.0.1:{self.port}",
                "--http-listen", f"127.0.0.1:{self.http_port}",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "AUTOMQ_ROOT_PASSWORD": self.root_password, **self.env},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"query node exited with {self.proc.returncode}; see {self.data_dir / 'node.log'}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.05)
        pytest.fail("query node did not become ready in 30 s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def connect(self, database=None, user="root", password=None, **kw):
        """A pymysql connection (root with its password unless told otherwise); pass `ssl=...`
        for TLS."""
        if password is None:
            password = self.root_password if user == "root" else ""
        return pymysql.connect(host="127.0.0.1", port=self.port, user=user, password=password, database=database,
                               autocommit=True, **kw)

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
            return r.read().decode()
