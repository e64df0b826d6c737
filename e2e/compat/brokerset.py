"""Several `automq-broker` processes on one bucket, as one cluster: started, stopped, killed,
paused and resumed by PID, and inspected through the admin API (`docs/admin-api.md`)."""

import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid

from support import wait_until

# Short timeouts so failover happens quickly in tests (defaults are 4 s each).
FAST = ["--heartbeat-interval-ms", "200", "--session-timeout-ms", "1500", "--controller-timeout-ms", "1500"]


class BrokerSet:
    """Brokers sharing one object store: `file://` in a shared directory, or a SeaweedFS bucket
    prefix (`s3`). `wal` is each broker's WAL: "file" (its own directory) or "s3" (the bucket)."""

    def __init__(self, make, root, wal="file", store="file", s3_endpoint=None, s3_env=None):
        self.make = make  # conftest's Broker factory: (name, root, args, env) -> Broker, not started
        self.root = root
        self.wal = wal
        self.env = {}
        if store == "file":
            (root / "bucket").mkdir(exist_ok=True)
            self.store_url = f"file://{root / 'bucket'}"
        else:
            self.store_url = f"s3://automq-test/cluster-{uuid.uuid4().hex[:12]}?endpoint={s3_endpoint}&region=us-east-1"
            self.env = dict(s3_env or {})
        self.brokers = {}

    def add(self, node_id, start=True, rack=None, pool=None, wal=None, args=()):
        args = ["--node-id", str(node_id), "--object-store", self.store_url, "--wal", wal or self.wal, *FAST, *args]
        if rack:
            args += ["--rack", rack]
        if pool:
            args += ["--pool", pool]
        root = self.root / f"node-{node_id}"
        root.mkdir(exist_ok=True)
        b = self.make(f"node-{node_id}", root, args, self.env)
        self.brokers[node_id] = b
        if start:
            b.start()
        return b

    def running(self):
        return {i: b for i, b in self.brokers.items() if b.running() and not getattr(b, "paused", False)}

    def bootstrap(self):
        return ",".join(b.bootstrap for b in self.running().values())

    def admin_get(self, path):
        last = None
        for b in self.running().values():
            try:
                with urllib.request.urlopen(b.http + path, timeout=3) as r:
                    return json.loads(r.read())
            except (urllib.error.URLError, OSError) as e:
                last = e
        raise AssertionError(f"no broker answered {path}: {last!r}")

    def admin(self, method, node_id, path):
        b = next(iter(self.running().values()))
        req = urllib.request.Request(b.http + path, method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())

    def state(self, partitions=False):
        return self.admin_get("/admin/v1/cluster" + ("?partitions=true" if partitions else ""))

    def controller(self):
        c = self.state().get("controller")
        return c and c["node_id"]

    def leading(self):
        """Partitions each live broker leads, by node id."""
        return {b["node_id"]: b["leading"] for b in self.state()["brokers"] if b["alive"]}

    def settled(self, expect_brokers):
        """The cluster state if exactly `expect_brokers` are alive, every one is ready, every
        partition is led, and the spread is even (within one); else False. Does not wait."""
        s = self.state(partitions=True)
        alive = sorted(b["node_id"] for b in s["brokers"] if b["alive"])
        if alive != sorted(expect_brokers):
            return False
        if not all(b["ready"] for b in s["brokers"] if b["alive"] and not b["draining"]):
            return False
        if any(p["leader"] is None or p["leader"] != p["assigned"] for p in s["partitions"]):
            return False
        counts = [b["assigned"] for b in s["brokers"] if b["alive"] and not b["draining"]]
        return max(counts) - min(counts) <= 1 and s

    def wait_settled(self, expect_brokers, timeout=30):
        """Until `settled(expect_brokers)`."""
        return wait_until(lambda: self.settled(expect_brokers),
                          f"the cluster to settle on brokers {sorted(expect_brokers)}", timeout=timeout)

    def pause(self, node_id):
        b = self.brokers[node_id]
        os.kill(b.pid, signal.SIGSTOP)
        b.paused = True

    def resume(self, node_id):
        b = self.brokers[node_id]
        os.kill(b.pid, signal.SIGCONT)
        b.paused = False

    def kill(self, node_id):
        self.brokers[node_id].stop(kill=True)

    def wait_exit(self, node_id, timeout=20):
        b = self.brokers[node_id]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            code = b.proc.poll()
            if code is not None:
                b.exit_codes.append(code)
                return code
            time.sleep(0.05)
        raise AssertionError(f"broker {node_id} still runs after {timeout}s")
