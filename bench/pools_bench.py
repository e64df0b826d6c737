"""Latency isolation between broker pools (issue 13), run through bench/pools.sh.

One cluster: a `bulk` pool of S3-WAL brokers and a `latency` pool of file-WAL brokers, one
bucket (a local directory, or SeaweedFS with --s3). Topic `cdc.events` is on the bulk pool,
`outbox.orders` on the latency pool (by the name rule `outbox\\..*=latency`). A probe produces
small records to the outbox topic at a steady rate with acks=all and linger 0, and records each
one's produce latency (send to acknowledgement).

Phases, side by side on the same processes:
  A. outbox alone: the file-WAL figure (the anchor);
  B. outbox while bulk producers (separate processes) push as fast as they can into the bulk
     pool's topic: what pools are for;
  C. the outbox topic moved onto the bulk pool (AlterConfigs automq.pool=bulk) under the same
     bulk traffic: what the latency-sensitive topic would see sharing the S3-WAL brokers.

Reported: p50/p99/max latency per phase and the ratios B/A and C/A, the bulk throughput, and
that nothing the probe sent was lost (every record acknowledged).

In production the pools run on different machines. Here they share the cores, so by default
(`--pin`) the latency pool's brokers and the probe are pinned to one half of the CPUs and the
bulk pool's brokers and producers to the other, as separate nodes would be; `--no-pin` shows
what sharing every core costs.
"""

import argparse
import multiprocessing
import os
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
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource,  # noqa: E402
                                   NewTopic)
from qnode import free_port  # noqa: E402

BULK, OUTBOX = "cdc.events", "outbox.orders"
RULES = ["--default-pool", "bulk", "--pool-rule", r"outbox\..*=latency"]


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))] if xs else float("nan")


def cpu_halves():
    cpus = sorted(os.sched_getaffinity(0))
    half = max(1, len(cpus) // 2)
    return set(cpus[:half]), set(cpus[half:]) or set(cpus[:half])


class Node:
    def __init__(self, binary, node_id, pool, wal, work, store, env, cpus=None):
        self.id, self.pool = node_id, pool
        self.port, self.http_port = free_port(), free_port()
        self.args = [binary, "--node-id", str(node_id), "--pool", pool, "--wal", wal,
                     "--data-dir", str(work / f"node-{node_id}"), "--object-store", store,
                     "--listen", f"127.0.0.1:{self.port}", "--http-listen", f"127.0.0.1:{self.http_port}",
                     *RULES]
        self.log = open(work / f"node-{node_id}.log", "ab")
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, **env), preexec_fn=pin)

    def state(self):
        import json
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/admin/v1/cluster?partitions=true",
                                    timeout=5) as r:
            return json.loads(r.read())

    def ready(self):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/readyz", timeout=1).close()
            return True
        except OSError:
            return False


def wait(pred, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    sys.exit(f"timed out waiting for {what}")


def leaders_of(node, topic):
    return {p["leader"] for p in node.state()["partitions"] if p["topic"] == topic}


class Probe:
    """Small records to the outbox topic at `rate` per second; latency of each."""

    def __init__(self, bootstrap, rate):
        self.rate = rate
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0,
                           "enable.idempotence": True, "message.timeout.ms": 60000, "log_level": 3})
        self.samples = []  # (send time, latency seconds)
        self.sent = 0
        self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        def done(err, msg, sent_at):
            if err is None:
                self.samples.append((sent_at, time.monotonic() - sent_at))
            else:
                self.failed += 1
        start = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                t = time.monotonic()
                self.p.produce(OUTBOX, b"o" * 200, key=str(self.sent % 64).encode(),
                               on_delivery=lambda err, msg, t=t: done(err, msg, t))
                self.sent += 1
            self.p.poll(0.001)
        self.p.flush(60)

    def window(self, start, end):
        return [lat for t, lat in self.samples if start <= t < end]


def bulk_worker(bootstrap, seconds, out, cpus=None):
    """One bulk producer process: 16 KiB records as fast as the cluster takes them."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 20, "batch.size": 1 << 20,
                  "compression.type": "none", "queue.buffering.max.kbytes": 64 << 10, "log_level": 3})
    acked = [0]

    def done(err, msg):
        if err is None:
            acked[0] += len(msg.value())
    value = os.urandom(16 << 10)
    start = time.monotonic()
    end = start + seconds
    while time.monotonic() < end:
        try:
            p.produce(BULK, value, on_delivery=done)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    p.flush(60)
    out.put((acked[0], time.monotonic() - start))


def run_bulk(bootstrap, procs, seconds, cpus=None):
    q = multiprocessing.Queue()
    workers = [multiprocessing.Process(target=bulk_worker, args=(bootstrap, seconds, q, cpus)) for _ in range(procs)]
    for w in workers:
        w.start()
    return workers, q


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--s3", help="SeaweedFS endpoint (bucket automq-test) instead of a local directory")
    ap.add_argument("--seconds", type=int, default=15, help="length of each phase")
    ap.add_argument("--rate", type=int, default=200, help="outbox records per second")
    ap.add_argument("--bulk-procs", type=int, default=2)
    ap.add_argument("--bucket-dir", help="put the local-directory bucket here (e.g. under /dev/shm, so that "
                    "the bulk pool's uploads do not compete with the file WAL's fsyncs for the disk, as a "
                    "remote object store would not)")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="pin each pool (and its clients) to its own half of the CPUs, as separate nodes")
    args = ap.parse_args()
    latency_cpus, bulk_cpus = cpu_halves() if args.pin else (None, None)
    if latency_cpus:
        os.sched_setaffinity(0, latency_cpus)  # the probe runs here
    work = Path(tempfile.mkdtemp(prefix="automq-pools-bench-"))
    if args.s3:
        store = f"s3://automq-test/pools-{uuid.uuid4().hex[:8]}?endpoint={args.s3}&region=us-east-1"
        env = {"AWS_ACCESS_KEY_ID": "automq", "AWS_SECRET_ACCESS_KEY": "automq-test-secret"}
    else:
        bucket = Path(tempfile.mkdtemp(prefix="automq-pools-bucket-", dir=args.bucket_dir)) if args.bucket_dir \
            else work / "bucket"
        bucket.mkdir(exist_ok=True)
        store, env = f"file://{bucket}", {}
    nodes = [Node(args.bin, 1, "bulk", "s3", work, store, env, bulk_cpus),
             Node(args.bin, 2, "bulk", "s3", work, store, env, bulk_cpus),
             Node(args.bin, 3, "latency", "file", work, store, env, latency_cpus),
             Node(args.bin, 4, "latency", "file", work, store, env, latency_cpus)]
    probe = None
    try:
        for n in nodes:
            wait(n.ready, f"broker {n.id} ready")
        bootstrap = ",".join(f"127.0.0.1:{n.port}" for n in nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics([NewTopic(BULK, 8, 1), NewTopic(OUTBOX, 4, 1)]).values():
            f.result(30)
        wait(lambda: leaders_of(nodes[0], BULK) == {1, 2} and leaders_of(nodes[0], OUTBOX) == {3, 4},
             "each topic led by its pool")
        probe = Probe(bootstrap, args.rate)
        probe.thread.start()
        time.sleep(2)  # connections up, first records through

        a0 = time.monotonic()
        time.sleep(args.seconds)
        a1 = time.monotonic()

        workers, q = run_bulk(bootstrap, args.bulk_procs, 3 * args.seconds + 10, bulk_cpus)
        time.sleep(3)  # bulk producers at full speed
        b0 = time.monotonic()
        time.sleep(args.seconds)
        b1 = time.monotonic()

        move = ConfigResource(ConfigResource.Type.TOPIC, OUTBOX, incremental_configs=[
            ConfigEntry("automq.pool", "bulk", incremental_operation=AlterConfigOpType.SET)])
        for f in admin.incremental_alter_configs([move]).values():
            f.result(30)
        wait(lambda: leaders_of(nodes[0], OUTBOX) <= {1, 2} and None not in leaders_of(nodes[0], OUTBOX),
             "the outbox topic to move onto the bulk pool")
        time.sleep(2)
        c0 = time.monotonic()
        time.sleep(args.seconds)
        c1 = time.monotonic()

        results = [q.get(timeout=120) for _ in workers]
        bulk_bytes = sum(b for b, _ in results)
        bulk_rate = sum(b / secs for b, secs in results)
        for w in workers:
            w.join(10)
        probe.stop.set()
        probe.thread.join(70)

        phases = {"A": probe.window(a0, a1), "B": probe.window(b0, b1), "C": probe.window(c0, c1)}
        wal = "SeaweedFS" if args.s3 else f"a local directory ({store[len('file://'):]})"
        print(f"pools: bulk = 2 S3-WAL brokers, latency = 2 file-WAL brokers; bucket on {wal}; "
              f"outbox probe {args.rate} records/s of 200 B (acks=all, linger 0); "
              f"{args.bulk_procs} bulk producer processes of 16 KiB records; {args.seconds} s per phase; "
              + (f"latency pool + probe on CPUs {sorted(latency_cpus)}, bulk pool + producers on {sorted(bulk_cpus)}"
                 if latency_cpus else "every process on every CPU"))
        base = pct(phases["A"], .99)
        labels = {"A": "outbox on the file-WAL pool, alone (anchor)",
                  "B": "outbox on the file-WAL pool, bulk pool saturated",
                  "C": "outbox moved onto the S3-WAL pool, same bulk traffic"}
        for k, xs in phases.items():
            print(f"  {k}. {labels[k]}: n={len(xs)} p50 {pct(xs, .5) * 1000:.1f} ms, p99 {pct(xs, .99) * 1000:.1f} ms, "
                  f"max {max(xs) * 1000:.1f} ms; p99 {pct(xs, .99) / base:.2f}x A")
        print(f"  bulk throughput {bulk_rate / (1 << 20):.1f} MiB/s acknowledged, averaged over phases B and C "
              f"({bulk_bytes / (1 << 20):.0f} MiB)")
        lost = probe.sent - len(probe.samples)
        print(f"  outbox records sent {probe.sent}, acknowledged {len(probe.samples)}, failed {probe.failed}"
              f"{'' if lost == 0 else f' ({lost} NOT acknowledged)'}")
        if lost:
            sys.exit(1)
    finally:
        if probe:
            probe.stop.set()
        for n in nodes:
            if n.proc.poll() is None:
                n.proc.send_signal(signal.SIGKILL)
                n.proc.wait()
        if args.bucket_dir and not args.s3:
            import shutil
            shutil.rmtree(store[len("file://"):], ignore_errors=True)
        import shutil as _shutil
        _shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
