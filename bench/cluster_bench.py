"""Cluster operations timed (run through bench/cluster.sh): partition moves, failover after a
SIGKILL, and a new broker's start to serving, on N `automq-broker` processes sharing one bucket
(a local directory, or SeaweedFS with --s3) with the S3 WAL, while a producer writes to every
partition.

Anchor, measured side by side: the latency of one metadata-log append (a conditional PUT on
the same store, from the brokers' own object-store metrics). A move needs a handful of them
(assignment, close, open), so "move time / append latency" says how close a move is to the
floor of the store it runs on.

- Move: a broker is drained and undrained in cycles (every partition it leads moves away and
  back); a partition's move time is from the drain (or undrain) request to the admin API
  showing it led by its new broker, polled every 2 ms, and, client side, the longest gap
  between two acknowledged produces to that partition.
- Failover: SIGKILL a broker; time from the kill until every partition it led accepts an
  acknowledged produce elsewhere (includes the session timeout, reported separately).
- Start: time from spawning a broker process until it leads partitions and the spread is even.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "e2e" / "warehouse"))
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from qnode import free_port  # noqa: E402

TOPIC = "bench"


def pct(xs, q):
    xs = sorted(x for x in xs if x == x)  # NaN: a partition without acknowledgements around its move
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))] if xs else float("nan")


class Node:
    def __init__(self, binary, node_id, work, store, env, session_ms):
        self.id = node_id
        self.port, self.http_port = free_port(), free_port()
        self.args = [binary, "--node-id", str(node_id), "--data-dir", str(work / f"node-{node_id}"),
                     "--listen", f"127.0.0.1:{self.port}", "--http-listen", f"127.0.0.1:{self.http_port}",
                     "--object-store", store, "--wal", "s3", "--heartbeat-interval-ms", "200",
                     "--session-timeout-ms", str(session_ms), "--controller-timeout-ms", str(session_ms)]
        self.log = open(work / f"node-{node_id}.log", "ab")
        self.env = dict(os.environ, **env)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        return self

    def get(self, path):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
            return r.read()

    def post(self, path, method="POST"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", method=method)
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def state(self):
        return json.loads(self.get("/admin/v1/cluster?partitions=true"))

    def ready(self):
        try:
            self.get("/readyz")
            return True
        except OSError:
            return False

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def wait(pred, what, timeout=60, every=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = pred()
        if r:
            return r
        time.sleep(every)
    sys.exit(f"timed out waiting for {what}")


def leaders(node):
    return {p["partition"]: p["leader"] for p in node.state()["partitions"] if p["topic"] == TOPIC}


def histogram_quantiles(nodes, name, qs=(0.5, 0.99)):
    """Quantiles (ms, bucket upper bounds) of a Prometheus histogram summed over the brokers."""
    buckets = {}
    for n in nodes:
        try:
            text = n.get("/metrics").decode()
        except OSError:
            continue
        for m in re.finditer(name + r'_bucket\{le="([^"]+)"\} (\d+)', text):
            buckets[m.group(1)] = buckets.get(m.group(1), 0) + int(m.group(2))
    total = buckets.get("+Inf", 0)
    out = []
    for q in qs:
        v = float("nan")
        for le in sorted((b for b in buckets if b != "+Inf"), key=float):
            if total and buckets[le] >= q * total:
                v = float(le) * 1000
                break
        out.append(v)
    return out, total


def append_latency_ms(nodes):
    """Median conditional-PUT latency on the store, from the brokers' metrics (histogram)."""
    buckets = {}
    for n in nodes:
        try:
            text = n.get("/metrics").decode()
        except OSError:
            continue
        for m in re.finditer(r'automq_storage_object_request_duration_seconds_bucket\{(.*?)\} (\d+)', text):
            labels, count = m.group(1), int(m.group(2))
            if 'op="put_if_absent"' in labels:
                le = re.search(r'le="([^"]+)"', labels).group(1)
                buckets[le] = buckets.get(le, 0) + count
    if not buckets:
        return float("nan")
    total = buckets.get("+Inf", 0)
    for le in sorted((b for b in buckets if b != "+Inf"), key=float):
        if buckets[le] >= total / 2:
            return float(le) * 1000
    return float("nan")


class Probe:
    """Produces to every partition every few ms; records each partition's acknowledgement times."""

    def __init__(self, bootstrap, partitions):
        self.acks = {p: [] for p in range(partitions)}
        self.stop = threading.Event()
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "retry.backoff.ms": 10, "retry.backoff.max.ms": 50,
                           "topic.metadata.refresh.interval.ms": 500, "message.timeout.ms": 60000})
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.partitions = partitions

    def run(self):
        def done(err, msg):
            if err is None:
                self.acks[msg.partition()].append(time.monotonic())
        while not self.stop.is_set():
            for p in range(self.partitions):
                self.p.produce(TOPIC, b"x" * 100, partition=p, on_delivery=done)
            self.p.poll(0.005)
        self.p.flush(60)

    def gap(self, partition, start, end):
        """Longest gap between acknowledgements of `partition` around [start, end]."""
        ts = [t for t in self.acks[partition] if start - 1 <= t <= end + 5]
        return max((b - a for a, b in zip(ts, ts[1:])), default=float("nan"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--brokers", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=24)
    ap.add_argument("--moves", type=int, default=120, help="at least this many partition moves")
    ap.add_argument("--session-ms", type=int, default=2000)
    ap.add_argument("--s3", help="SeaweedFS endpoint (bucket automq-test) instead of a local directory")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="automq-cluster-bench-"))
    if args.s3:
        store = f"s3://automq-test/bench-{uuid.uuid4().hex[:8]}?endpoint={args.s3}&region=us-east-1"
        env = {"AWS_ACCESS_KEY_ID": "automq", "AWS_SECRET_ACCESS_KEY": "automq-test-secret"}
    else:
        (work / "bucket").mkdir()
        store, env = f"file://{work / 'bucket'}", {}
    nodes = [Node(args.bin, i + 1, work, store, env, args.session_ms) for i in range(args.brokers + 1)]
    spare = nodes.pop()
    probe = None
    try:
        for n in nodes:
            n.start()
        for n in nodes:
            wait(n.ready, f"broker {n.id} ready")
        bootstrap = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(TOPIC, args.partitions, 1)])[TOPIC].result(30)
        wait(lambda: all(v is not None for v in leaders(nodes[0]).values()) and len(leaders(nodes[0])) == args.partitions,
             "every partition led")
        probe = Probe(bootstrap, args.partitions)
        probe.thread.start()
        time.sleep(2)

        # Moves: drain and undrain one broker after another.
        server_side, client_side = [], []
        cycle = 0
        while len(server_side) < args.moves:
            n = nodes[cycle % len(nodes)]
            for action in ("POST", "DELETE"):
                mine = {p for p, l in leaders(nodes[0]).items() if l == n.id}
                t0 = time.monotonic()
                n.post(f"/admin/v1/brokers/{n.id}/drain", method=action)
                moved = {}

                def all_moved():
                    now = time.monotonic()
                    cur = leaders(nodes[0])
                    for p, leader in cur.items():
                        if p in moved or leader is None:
                            continue
                        if (action == "POST" and p in mine and leader != n.id) or (action == "DELETE" and leader == n.id):
                            moved[p] = now - t0
                    if action == "POST":
                        return len(moved) == len(mine)
                    # Undrained: settled when every broker leads what it is assigned and the
                    # assignment is even (over all partitions, the offsets topic's included).
                    brokers = [b for b in nodes[0].state()["brokers"] if b["alive"]]
                    counts = [b["assigned"] for b in brokers]
                    return all(b["ready"] for b in brokers) and max(counts) - min(counts) <= 1 and moved
                wait(all_moved, f"moves of broker {n.id} ({action})", timeout=60)
                t1 = time.monotonic()
                server_side += list(moved.values())
                client_side += [probe.gap(p, t0, t1) for p in moved]
                time.sleep(0.5)
            cycle += 1

        # A new broker: spawn to leading its share.
        t0 = time.monotonic()
        spare.start()
        wait(spare.ready, "the new broker ready", timeout=60)
        t_ready = time.monotonic() - t0
        def has_share():
            brokers = [b for b in nodes[0].state()["brokers"] if b["alive"]]
            total = sum(b["assigned"] for b in brokers)
            new = next((b for b in brokers if b["node_id"] == spare.id), None)
            return new is not None and new["ready"] and new["leading"] >= total // len(brokers) - 1
        wait(has_share, "the new broker to take its share", timeout=60)
        t_share = time.monotonic() - t0
        nodes.append(spare)

        # Failover: SIGKILL a broker that is not the controller.
        controller = nodes[0].state()["controller"]["node_id"]
        victim = next(n for n in nodes if n.id != controller)
        theirs = [p for p, l in leaders(nodes[0]).items() if l == victim.id]
        time.sleep(1)
        t0 = time.monotonic()
        victim.kill()
        survivor = next(n for n in nodes if n is not victim)

        def writable_elsewhere():
            cur = leaders(survivor)
            return all(cur.get(p) not in (None, victim.id) for p in theirs) and all(
                any(t > time.monotonic() - 0.2 for t in probe.acks[p][-3:]) for p in theirs)
        wait(writable_elsewhere, "the killed broker's partitions to accept produces elsewhere", timeout=60)
        failover = time.monotonic() - t0
        live = [n for n in nodes if n is not victim]
        append_ms = append_latency_ms(live)
        (open50, open99), opens = histogram_quantiles(live, "automq_broker_partition_open_seconds")
        (close50, close99), closes = histogram_quantiles(live, "automq_broker_partition_close_seconds")

        print(f"{args.brokers} brokers, {args.partitions} partitions, S3 WAL on {'SeaweedFS' if args.s3 else 'a local directory'}; "
              f"metadata append (conditional PUT) median {append_ms:.1f} ms")
        print(f"partition moves: {len(server_side)}; admin-visible move time p50 {pct(server_side, .5) * 1000:.0f} ms, "
              f"p99 {pct(server_side, .99) * 1000:.0f} ms, max {max(server_side) * 1000:.0f} ms "
              f"(p50 = {pct(server_side, .5) * 1000 / append_ms:.1f}x one append)")
        print(f"  client-observed gap between acknowledged produces of a moving partition: p50 "
              f"{pct(client_side, .5) * 1000:.0f} ms, p99 {pct(client_side, .99) * 1000:.0f} ms")
        print(f"  broker side (histogram buckets, surviving brokers): hand-off (close) p50 <= {close50:.0f} ms, "
              f"p99 <= {close99:.0f} ms over {closes}; open p50 <= {open50:.0f} ms, p99 <= {open99:.0f} ms over {opens}")
        print(f"new broker: ready {t_ready:.2f} s after spawn, leading its share {t_share:.2f} s after spawn")
        print(f"failover: {len(theirs)} partitions writable elsewhere {failover:.2f} s after SIGKILL "
              f"(session timeout {args.session_ms / 1000:.1f} s, so {failover - args.session_ms / 1000:.2f} s after detection)")
    finally:
        if probe:
            probe.stop.set()
        for n in nodes + [spare]:
            if n.proc and n.proc.poll() is None:
                n.kill()


if __name__ == "__main__":
    main()
