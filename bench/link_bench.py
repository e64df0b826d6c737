"""Topic-link benchmark: see bench/link.sh. Prints progress while it runs and one table at the
end; ratios are against a plain confluent-kafka consumer reading the same bytes from the same
source broker in the same run (the cost of a copy that must also fetch them)."""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    def __init__(self, binary, root, name):
        self.port, self.http_port = free_port(), free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.http = f"http://127.0.0.1:{self.http_port}"
        log = open(os.path.join(root, f"{name}.log"), "wb")
        self.proc = subprocess.Popen(
            [binary, "--data-dir", os.path.join(root, name), "--listen", self.bootstrap,
             "--http-listen", f"127.0.0.1:{self.http_port}", "--num-partitions", "1"],
            stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, AUTOMQ_LOG="warn"), start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.http + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not start")

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def admin(broker, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(broker.http + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"null")


def create_topics(bootstrap, names, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    for i in range(0, len(names), 200):
        futures = a.create_topics([NewTopic(n, partitions, 1) for n in names[i:i + 200]])
        for f in futures.values():
            f.result(60)


def fill(bootstrap, topics, records, size):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                  "compression.type": "none", "queue.buffering.max.kbytes": 1 << 20})
    value = os.urandom(size)
    for i in range(records):
        for t in topics:
            while True:
                try:
                    p.produce(t, value, key=str(i).encode())
                    break
                except BufferError:
                    p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(120) == 0


def consume_all(bootstrap, topics, expect_bytes):
    """A plain consumer reading every byte of `topics` from the start: the anchor."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"anchor-{time.time()}", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "fetch.max.bytes": 16 << 20,
                  "max.partition.fetch.bytes": 8 << 20})
    c.subscribe(topics)
    got, start = 0, time.monotonic()
    while got < expect_bytes:
        for m in c.consume(num_messages=10000, timeout=1):
            if not m.error():
                got += len(m.value()) + len(m.key() or b"")
    elapsed = time.monotonic() - start
    c.close()
    return elapsed


def wait_caught_up(dest, link, topics, timeout, label):
    start, last_print = time.monotonic(), 0.0
    while True:
        state = admin(dest, "GET", f"/admin/v1/links/{link}")
        ts = {t["topic"]: t for t in state["topics"]}
        done = [t for t in topics if t in ts and ts[t]["lag"] == 0 and ts[t]["partition_states"]
                and len(ts[t]["partition_states"]) == ts[t]["partitions"]
                and all(p["source_high_watermark"] >= 0 for p in ts[t]["partition_states"])]
        elapsed = time.monotonic() - start
        if len(done) == len(topics):
            return elapsed
        if elapsed - last_print >= 5:
            lag = sum(t["lag"] for t in ts.values())
            print(f"  {label}: {len(done)}/{len(topics)} topics caught up, lag {lag} records, {elapsed:.0f} s",
                  file=sys.stderr)
            last_print = elapsed
        if elapsed > timeout:
            raise RuntimeError(f"{label}: not caught up after {timeout} s")
        time.sleep(0.2)


def link_body(source, topics=None, pattern=None, promote=()):
    sel = [{"pattern": pattern}] if pattern else [{"name": t} for t in topics]
    return {"source": {"bootstrap_servers": source.bootstrap, "security_protocol": "PLAINTEXT"},
            "topics": sel, "promote": [{"topic": t, "force": False} for t in promote]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--large-mb", type=int, default=256)
    ap.add_argument("--small-topics", type=int, default=100)
    ap.add_argument("--migrate-topics", type=int, default=1000)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="link-bench-")
    rows = []
    source = dest = None
    try:
        source = Broker(args.bin, root, "source")
        dest = Broker(args.bin, root, "dest")

        # 1. One large topic, 4 partitions.
        size = 1000
        records = args.large_mb * 1024 * 1024 // (size + 8) // 4 * 4
        print(f"filling large: {args.large_mb} MiB in 4 partitions", file=sys.stderr)
        create_topics(source.bootstrap, ["large"], 4)
        fill(source.bootstrap, ["large"], records, size)
        anchor = consume_all(source.bootstrap, ["large"], records * size)
        admin(dest, "PUT", "/admin/v1/links/large", link_body(source, ["large"]))
        mirror = wait_caught_up(dest, "large", ["large"], 900, "large")
        rows.append(("one topic, 4 partitions", args.large_mb, mirror, anchor))

        # 2. Many small topics.
        names = [f"small-{i:04d}" for i in range(args.small_topics)]
        per_topic = 2000
        print(f"filling {len(names)} small topics x {per_topic} records", file=sys.stderr)
        create_topics(source.bootstrap, names, 1)
        fill(source.bootstrap, names, per_topic, 200)
        mb = len(names) * per_topic * 200 / (1024 * 1024)
        anchor = consume_all(source.bootstrap, names, len(names) * per_topic * 200)
        admin(dest, "PUT", "/admin/v1/links/small", link_body(source, pattern="small-.*"))
        mirror = wait_caught_up(dest, "small", names, 900, "small")
        rows.append((f"{len(names)} topics, 1 partition", round(mb), mirror, anchor))

        # 3. Migrate many small topics end to end: link, catch up, promote every one.
        names = [f"app-{i:04d}" for i in range(args.migrate_topics)]
        print(f"creating {len(names)} topics on the source", file=sys.stderr)
        create_topics(source.bootstrap, names, 1)
        fill(source.bootstrap, names, 10, 100)
        start = time.monotonic()
        admin(dest, "PUT", "/admin/v1/links/apps", link_body(source, pattern="app-.*"))
        caught = wait_caught_up(dest, "apps", names, 1800, "migrate")
        admin(dest, "PUT", "/admin/v1/links/apps", link_body(source, pattern="app-.*", promote=names))
        while True:
            state = admin(dest, "GET", "/admin/v1/links/apps")
            promoted = sum(1 for t in state["topics"] if t["state"] == "promoted")
            if promoted == len(names):
                break
            time.sleep(0.5)
        migrate = time.monotonic() - start

        print()
        print(f"topic links, release build, 2-core machine; anchor: a confluent-kafka consumer reading the same bytes from the source")
        print(f"{'workload':28} {'MiB':>6} {'mirror s':>9} {'MiB/s':>7} {'anchor s':>9} {'MiB/s':>7} {'ratio':>6}")
        for name, mib, m, a in rows:
            print(f"{name:28} {mib:>6} {m:>9.1f} {mib / m:>7.1f} {a:>9.1f} {mib / a:>7.1f} {a / m:>6.2f}")
        print(f"\nmigrate {len(names)} topics (10 records each): caught up {caught:.1f} s, all promoted {migrate:.1f} s after the link was created")
    finally:
        for b in (source, dest):
            if b:
                b.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
