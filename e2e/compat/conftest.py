"""Fixtures that run the real `automq-broker` binary for the client compatibility suite.

The suite builds nothing: it runs `target/debug/automq-broker` (or `$AUTOMQ_BROKER_BIN`).
Every broker gets free loopback ports and a fresh temporary directory, and is killed by PID
in teardown. When a test fails, the tail of each broker's log is attached to the report.
"""

import ctypes
import gc
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Cargo's target directory: $CARGO_TARGET_DIR when set (relative to the workspace), else target/.
_TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "target"))
DEFAULT_BIN = (_TARGET if _TARGET.is_absolute() else REPO / _TARGET) / "debug" / "automq-broker"

# The S3 test bucket and credentials that scripts/test.sh and e2e/run.sh give SeaweedFS.
S3_BUCKET = "automq-test"
S3_ACCESS_KEY = "automq"
S3_SECRET_KEY = "automq-test-secret"

READY_TIMEOUT_S = 30.0
GRACEFUL_STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 300

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _die_with_parent():
    """Runs in the child before exec: the kernel SIGKILLs the broker if pytest dies (even by
    SIGKILL), so no broker outlives the suite."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: teardown still kills by PID


from ports import free_port  # noqa: E402,F401  (e2e/ports.py; re-exported to the tests)


def broker_binary():
    path = Path(os.environ.get("AUTOMQ_BROKER_BIN", DEFAULT_BIN))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.fail(
            f"broker binary not found at {path}: build it with `cargo build -p automq-broker` "
            "or point $AUTOMQ_BROKER_BIN at one",
            pytrace=False,
        )
    return path


@pytest.fixture
def broker_bin():
    """The broker binary's path (for tests that run it themselves)."""
    return broker_binary()


class Broker:
    """One broker process. Ports and data directory stay the same across restarts, so
    clients reconnect to the same bootstrap address."""

    def __init__(self, name, root, extra_args=(), extra_env=None):
        self.name = name
        self.root = Path(root)
        self.data_dir = self.root / "data"
        self.log_path = self.root / "broker.log"
        self.port = free_port()
        self.http_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        self.extra_args = list(extra_args)
        self.env = dict(os.environ, NO_COLOR="1", **(extra_env or {}))
        self.proc = None
        self.starts = 0
        self.exit_codes = []

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        assert not self.running(), "broker already running"
        self.starts += 1
        cmd = [
            str(broker_binary()),
            "--data-dir", str(self.data_dir),
            "--listen", self.bootstrap,
            "--http-listen", f"127.0.0.1:{self.http_port}",
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, start_new_session=True, preexec_fn=_die_with_parent,
            )
        self.wait_ready()

    def wait_ready(self, timeout=READY_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"broker {self.name} exited with code {code} before it was ready; log tail:\n"
                    + self.log_tail(60))
            try:
                with urllib.request.urlopen(self.http + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
                    last = f"HTTP {r.status}"
            except (urllib.error.URLError, OSError) as e:
                last = repr(e)
            time.sleep(0.02)
        raise RuntimeError(f"broker {self.name} not ready after {timeout}s (last: {last}); log tail:\n"
                           + self.log_tail(60))

    def stop(self, kill=False):
        """SIGKILL (crash) or SIGTERM (graceful: the broker uploads acknowledged data first)."""
        if not self.running():
            return
        if kill:
            self.proc.send_signal(signal.SIGKILL)
            code = self.proc.wait()
        else:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=GRACEFUL_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(
                    f"broker {self.name} did not stop within {GRACEFUL_STOP_TIMEOUT_S}s of SIGTERM")
            if code != 0:
                raise RuntimeError(f"broker {self.name} exited with code {code} on SIGTERM; log tail:\n"
                                   + self.log_tail(60))
        self.exit_codes.append(code)
        with open(self.log_path, "ab") as log:
            log.write(f"===== stopped ({'SIGKILL' if kill else 'SIGTERM'}), exit code {code}\n".encode())

    def restart(self, kill=False):
        self.stop(kill=kill)
        self.start()

    def close(self):
        """Teardown: never leaves the process behind, whatever state it is in."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log_text(self):
        try:
            return _ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=LOG_TAIL_LINES):
        text = self.log_text().splitlines()
        head = f"[{self.log_path}, last {min(lines, len(text))} of {len(text)} lines]\n"
        return head + "\n".join(text[-lines:])

    def metrics(self):
        with urllib.request.urlopen(self.http + "/metrics", timeout=5) as r:
            return r.read().decode()


def _s3_endpoint():
    endpoint = os.environ.get("AUTOMQ_TEST_S3_ENDPOINT")
    if not endpoint:
        pytest.fail(
            "AUTOMQ_TEST_S3_ENDPOINT is not set: the S3 WAL variants need a real S3-compatible "
            f"server (SeaweedFS with bucket {S3_BUCKET!r}, access key {S3_ACCESS_KEY!r}). "
            "Run the suite through e2e/run.sh, which starts one, or export the variable yourself.",
            pytrace=False,
        )
    return endpoint.rstrip("/")


@pytest.fixture
def make_broker(request, tmp_path):
    """Factory: make_broker(wal="file"|"s3", args=[...], env={...}) starts a broker and returns it."""
    brokers = []
    request.node._automq_brokers = brokers

    def make(wal="file", args=(), name=None, env=None):
        name = name or f"{wal}-{len(brokers)}"
        extra_args = list(args)
        extra_env = dict(env or {})
        if wal == "s3":
            endpoint = _s3_endpoint()
            prefix = f"e2e-{uuid.uuid4().hex[:12]}"
            extra_args += [
                "--wal", "s3",
                "--object-store", f"s3://{S3_BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1",
            ]
            extra_env.update({"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY})
        elif wal != "file":
            raise ValueError(f"unknown WAL {wal!r}")
        root = tmp_path / f"broker-{name}"
        root.mkdir()
        b = Broker(name, root, extra_args, extra_env)
        brokers.append(b)
        b.start()
        return b

    yield make

    # Destroy client handles the test left to the garbage collector while their broker is still
    # up; otherwise librdkafka threads log refused reconnects into the next test's output.
    gc.collect()
    crashed = []
    for b in brokers:
        if b.proc is not None and b.proc.poll() is not None and len(b.exit_codes) < b.starts:
            crashed.append(f"broker {b.name} (pid {b.pid}) exited on its own with code {b.proc.returncode}")
        b.close()
    if crashed:
        pytest.fail("; ".join(crashed), pytrace=False)


@pytest.fixture
def make_cluster(request, tmp_path):
    """Factory: make_cluster(wal="file"|"s3", store="file"|"s3") -> an empty BrokerSet whose
    brokers are cleaned up (and their logs reported) like make_broker's."""
    from brokerset import BrokerSet

    brokers = []
    request.node._automq_brokers = brokers

    def factory(name, root, args, env):
        b = Broker(name, root, args, env)
        brokers.append(b)
        return b

    def make(wal="file", store="file"):
        endpoint = _s3_endpoint() if store == "s3" else None
        env = {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY}
        return BrokerSet(factory, tmp_path, wal=wal, store=store, s3_endpoint=endpoint, s3_env=env)

    yield make

    gc.collect()
    for b in brokers:
        if getattr(b, "paused", False) and b.proc is not None and b.proc.poll() is None:
            os.kill(b.proc.pid, signal.SIGCONT)
        b.close()


@pytest.fixture
def broker(make_broker):
    """A broker with the file WAL and a local object store in a fresh directory."""
    return make_broker("file")


@pytest.fixture
def s3_broker(make_broker):
    """A broker with the S3 WAL and object store on SeaweedFS (AUTOMQ_TEST_S3_ENDPOINT)."""
    return make_broker("s3")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for b in getattr(item, "_automq_brokers", []):
            report.sections.append((f"broker {b.name} log", b.log_tail()))
