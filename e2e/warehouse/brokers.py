"""Kafka-compatible brokers for the routine-load tests: our `automq-broker` (file WAL in its
own directory) and Tansu 0.6.0 (in memory), on free loopback ports, killed by PID."""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from qnode import REPO, _TARGET, free_port

BROKER_BIN = (_TARGET if _TARGET.is_absolute() else REPO / _TARGET) / "debug" / "automq-broker"


def _wait_port(port, proc, log, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}; log:\n{Path(log).read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"broker not listening on {port} after {timeout} s")


def _wait_ready(http, proc, log, timeout=30):
    """Until our broker's /readyz answers 200 (its admin API answers 503 before)."""
    import urllib.error
    import urllib.request
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited with {proc.returncode}; log:\n{Path(log).read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(http + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"broker not ready at {http} after {timeout} s")


class KafkaProcess:
    """A broker process that keeps its port (and data) across restarts."""

    def __init__(self, kind, root):
        self.kind = kind
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        # Our broker's HTTP listener (admin API, metrics).
        self.http_port = free_port()
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.proc = None

    def command(self):
        if self.kind == "automq":
            path = Path(os.environ.get("AUTOMQ_BROKER_BIN", BROKER_BIN))
            if not path.is_file():
                pytest.fail(f"broker binary not found at {path}: cargo build -p automq-broker", pytrace=False)
            return [str(path), "--data-dir", str(self.root / "data"), "--listen", self.bootstrap,
                    "--http-listen", f"127.0.0.1:{self.http_port}"]
        tansu = os.environ.get("AUTOMQ_TANSU_BIN")
        if not tansu or not Path(tansu).is_file():
            pytest.skip("SKIPPED LOUDLY: Tansu is not available ($AUTOMQ_TANSU_BIN unset; e2e/run.sh fetches it)")
        return [tansu, "broker", "--listener-url", f"tcp://{self.bootstrap}", "--advertised-listener-url",
                f"tcp://{self.bootstrap}", "--storage-engine", "memory://tansu/", "--cluster-id", f"rl-{self.port}"]

    def start(self):
        log = self.root / f"{self.kind}.log"
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"), NO_COLOR="1")
        self.proc = subprocess.Popen(self.command(), stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        _wait_port(self.port, self.proc, log)
        if self.kind == "automq":
            _wait_ready(self.http, self.proc, log)
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def create_topic(self, name, partitions=1):
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(30)
        # Wait until metadata shows every partition with a leader.
        deadline = time.time() + 30
        while time.time() < deadline:
            md = admin.list_topics(name, timeout=5)
            t = md.topics.get(name)
            if t and not t.error and len(t.partitions) == partitions:
                return
            time.sleep(0.1)
        raise RuntimeError(f"topic {name} not ready")

    def producer(self):
        return Producer({"bootstrap.servers": self.bootstrap, "acks": "all", "linger.ms": 2})


def produce(broker, topic, values, keys=None, partition=None):
    p = broker.producer()
    errors = []

    def done(err, _msg):
        if err:
            errors.append(err)

    for i, v in enumerate(values):
        kw = {}
        if keys is not None:
            kw["key"] = keys[i]
        if partition is not None:
            kw["partition"] = partition
        p.produce(topic, v, on_delivery=done, **kw)
        p.poll(0)
    assert p.flush(30) == 0
    assert not errors, errors
