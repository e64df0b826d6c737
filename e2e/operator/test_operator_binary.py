"""The automq-operator binary itself, against a small fake Kubernetes API server over HTTP (no
real API server can run here; the controllers' logic is tested in operator/tests/). Checks
what only the binary does: flags and kubeconfig, the Lease it takes before reconciling, the
watches it opens, /healthz and /metrics, and a clean SIGTERM that releases the Lease."""

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ports import free_port

REPO = Path(__file__).resolve().parents[2]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BIN = Path(os.environ.get("AUTOMQ_OPERATOR_BIN", TARGET / "debug" / "automq-operator"))
LEASE = "/apis/coordination.k8s.io/v1/namespaces/automq-system/leases/automq-operator"


class FakeApi(BaseHTTPRequestHandler):
    """Lists are empty, watches stay open with no events, the Lease is kept in memory."""
    protocol_version = "HTTP/1.1"
    lease = None
    log = []
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n)) if n else None

    def do_GET(self):
        path, _, query = self.path.partition("?")
        with self.lock:
            self.log.append(("GET", path, query))
        if path == LEASE:
            if FakeApi.lease is None:
                return self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})
            return self._send(200, FakeApi.lease)
        if "watch=true" in query:
            # A watch with nothing happening: headers, then silence until the client gives up.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            time.sleep(30)
            return
        return self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": []})

    def do_POST(self):
        body = self._body()
        with self.lock:
            self.log.append(("POST", self.path, body))
        if self.path.startswith(LEASE.rsplit("/", 1)[0]):
            body.setdefault("metadata", {})["resourceVersion"] = "1"
            FakeApi.lease = body
        return self._send(201, body)

    def do_PUT(self):
        body = self._body()
        with self.lock:
            self.log.append(("PUT", self.path, body))
        FakeApi.lease = body
        return self._send(200, body)


@pytest.fixture
def api():
    FakeApi.lease, FakeApi.log = None, []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), FakeApi)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_the_operator_leads_watches_serves_metrics_and_releases_its_lease(api, tmp_path):
    if not BIN.is_file():
        pytest.fail(f"operator binary not found at {BIN}: cargo build -p automq-operator", pytrace=False)
    host, port = api.server_address
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://{host}:{port}"}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}],
    }))
    metrics_port = free_port()
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), POD_NAME="operator-0", POD_NAMESPACE="automq-system",
               AUTOMQ_LOG="info")
    log = open(tmp_path / "operator.log", "wb")
    proc = subprocess.Popen([str(BIN), "--metrics-listen", f"127.0.0.1:{metrics_port}", "--log-format", "json"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def metrics():
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
                return r.read().decode()

        deadline = time.time() + 30
        text = ""
        while time.time() < deadline:
            try:
                text = metrics()
                if "automq_operator_leader 1" in text:
                    break
            except OSError:
                pass
            assert proc.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
            time.sleep(0.2)
        assert "automq_operator_leader 1" in text, text
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/healthz", timeout=2) as r:
            assert r.status == 200
        assert FakeApi.lease["spec"]["holderIdentity"] == "operator-0"
        assert FakeApi.lease["spec"]["leaseDurationSeconds"] == 15

        # After the Lease, the three kinds and the StatefulSets are listed and watched.
        wanted = ["/apis/automq.rs/v1alpha1/automqclusters", "/apis/automq.rs/v1alpha1/analyticswarehouses",
                  "/apis/automq.rs/v1alpha1/topiclinks", "/apis/apps/v1/statefulsets"]

        def watched():
            with FakeApi.lock:
                seen = {p for m, p, q in FakeApi.log if m == "GET" and "watch=true" in q}
            return all(w in seen for w in wanted)

        deadline = time.time() + 20
        while not watched():
            assert time.time() < deadline, FakeApi.log
            time.sleep(0.1)
        first_lease_write = next(i for i, e in enumerate(FakeApi.log) if e[0] == "POST")
        first_watch = next(i for i, e in enumerate(FakeApi.log) if e[0] == "GET" and "watch=true" in e[2])
        assert first_lease_write < first_watch, "reconciling before leading"
        # JSON log lines.
        lines = [json.loads(l) for l in (tmp_path / "operator.log").read_text().splitlines() if l.startswith("{")]
        assert any(l.get("fields", {}).get("message") == "became leader" for l in lines), lines[:5]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, (tmp_path / "operator.log").read_text()[-3000:]
        assert "holderIdentity" not in FakeApi.lease["spec"], "the Lease was not released on shutdown"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
