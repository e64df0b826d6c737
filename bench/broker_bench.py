#!/usr/bin/env python3
"""Broker benchmark: the same load through the same real client (confluent-kafka, librdkafka)
against automq-broker (file WAL; S3 WAL on SeaweedFS) and Tansu 0.6.0 (S3 on the same
SeaweedFS), run one after the other in one invocation. Prints throughput, produce latency and
end-to-end latency percentiles, and the ratios automq / Tansu. Run via bench/broker.sh."""

import argparse, os, shutil, signal, socket, subprocess, sys, tempfile, threading, time, json, urllib.request

from confluent_kafka import Producer, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ACCESS, SECRET, BUCKET = "automq", "automq-test-secret", "automq-test"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_block(n):
    import random
    for _ in range(500):
        base = 20000 + random.randrange(2000) * 20
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks: s.close()
    raise RuntimeError("no free port block")


def wait_port(port, proc, log, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited: {open(log).read()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close(); return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open: {open(log).read()[-2000:]}")


def start_seaweed(work):
    base = free_block(16)
    cfg = os.path.join(work, "s3.json")
    json.dump({"identities": [{"name": "automq", "credentials": [{"accessKey": ACCESS, "secretKey": SECRET}],
                                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, open(cfg, "w"))
    data = os.path.join(work, "weed"); os.makedirs(data)
    p = lambda i: str(base + i)
    log = os.path.join(work, "weed.log")
    args = ["weed", "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-webdav=false", "-admin.ui=false", f"-s3.config={cfg}", f"-bucket={BUCKET}",
            f"-s3.port={p(0)}", f"-master.port={p(1)}", f"-volume.port={p(2)}", f"-filer.port={p(3)}",
            f"-admin.port={p(4)}", f"-s3.port.iceberg={p(5)}", f"-s3.port.lance={p(6)}", f"-debug.port={p(7)}",
            f"-metricsPort={p(8)}", f"-s3.port.grpc={p(10)}", f"-master.port.grpc={p(11)}",
            f"-volume.port.grpc={p(12)}", f"-filer.port.grpc={p(13)}", f"-admin.port.grpc={p(14)}"]
    proc = subprocess.Popen(args, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_port(base, proc, log)
    time.sleep(1.5)  # first PUT takes ~1 s after start
    return proc, f"http://127.0.0.1:{base}"


def start_automq(binary, work, wal, endpoint):
    port, http = free_port(), free_port()
    data = tempfile.mkdtemp(dir=work)
    env = dict(os.environ, AUTOMQ_LOG="warn", AWS_ACCESS_KEY_ID=ACCESS, AWS_SECRET_ACCESS_KEY=SECRET)
    args = [binary, "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--http-listen", f"127.0.0.1:{http}", "--wal", wal]
    if wal == "s3":
        args += ["--object-store", f"s3://{BUCKET}/automq-{port}?endpoint={endpoint}&region=us-east-1"]
    log = os.path.join(data, "broker.log")
    proc = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_port(port, proc, log)
    return proc, f"127.0.0.1:{port}"


def start_tansu(binary, work, endpoint):
    port = free_port()
    env = dict(os.environ, AWS_ENDPOINT=endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID=ACCESS,
               AWS_SECRET_ACCESS_KEY=SECRET, AWS_DEFAULT_REGION="us-east-1", RUST_LOG="warn")
    log = os.path.join(work, f"tansu-{port}.log")
    args = [binary, "broker", "--listener-url", f"tcp://127.0.0.1:{port}", "--advertised-listener-url",
            f"tcp://127.0.0.1:{port}", "--storage-engine", f"s3://{BUCKET}/", "--cluster-id", f"bench-{port}"]
    proc = subprocess.Popen(args, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    wait_port(port, proc, log)
    return proc, f"127.0.0.1:{port}"


def pct(xs, q):
    if not xs: return float("nan")
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))]


def run_load(bootstrap, messages, size, partitions=3, rate=None):
    topic = f"bench-{int(time.time() * 1000)}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[topic].result(30)
    time.sleep(0.5)
    e2e, done = [], threading.Event()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "enable.auto.commit": False,
                         "fetch.wait.max.ms": 50, "fetch.min.bytes": 1})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])

    def consume():
        seen = 0
        while seen < messages and not done.is_set():
            # Return within ~10 ms of a message arriving: batching here would add to e2e latency.
            for m in consumer.consume(num_messages=500, timeout=0.01):
                if m.error(): continue
                e2e.append(time.perf_counter_ns() - int.from_bytes(m.value()[:8], "big")); seen += 1
        done.set()

    t = threading.Thread(target=consume, daemon=True); t.start()
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "batch.size": 1 << 20,
                         "queue.buffering.max.messages": 200000, "compression.type": "none"})
    produce_lat, errors = [], []

    def on_delivery(err, msg):
        if err: errors.append(err); return
        produce_lat.append(time.perf_counter_ns() - int.from_bytes(msg.value()[:8], "big"))

    filler = os.urandom(size - 8)
    started = time.perf_counter()
    for i in range(messages):
        if rate:  # open-loop at a fixed rate: latency without client-side queueing
            due = started + i / rate
            while (now := time.perf_counter()) < due:
                producer.poll(min(due - now, 0.001))
        while True:
            try:
                producer.produce(topic, key=str(i % 1000).encode(), value=time.perf_counter_ns().to_bytes(8, "big") + filler,
                                 partition=i % partitions, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(120)
    produced = time.perf_counter() - started
    done.wait(60); done.set(); t.join(5); consumer.close()
    ms = lambda ns: ns / 1e6
    return {"msgs_per_s": len(produce_lat) / produced, "mib_per_s": len(produce_lat) * size / produced / (1 << 20),
            "produce_p50": ms(pct(produce_lat, .5)), "produce_p99": ms(pct(produce_lat, .99)),
            "e2e_p50": ms(pct(e2e, .5)), "e2e_p99": ms(pct(e2e, .99)), "acked": len(produce_lat),
            "consumed": len(e2e), "errors": len(errors)}


def stop(proc):
    proc.send_signal(signal.SIGKILL); proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rate", type=int, default=2000, help="messages/s of the fixed-rate latency phase")
    ap.add_argument("--paced-seconds", type=int, default=15)
    ap.add_argument("--automq", default=os.path.join(ROOT, "target/release/automq-broker"))
    ap.add_argument("--tansu", required=True)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="broker-bench-")
    weed, endpoint = start_seaweed(work)
    rows = {}
    try:
        targets = [("automq, file WAL", lambda: start_automq(a.automq, work, "file", endpoint)),
                   ("automq, S3 WAL (SeaweedFS)", lambda: start_automq(a.automq, work, "s3", endpoint)),
                   ("tansu 0.6.0, s3 (SeaweedFS)", lambda: start_tansu(a.tansu, work, endpoint))]
        for name, start in targets:
            print(f"--> {name}: {a.messages} x {a.size} B, acks=all", file=sys.stderr, flush=True)
            proc, bootstrap = start()
            try:
                run_load(bootstrap, min(a.messages, 5000), a.size)  # warm-up
                rows[name] = run_load(bootstrap, a.messages, a.size)
                paced = run_load(bootstrap, a.rate * a.paced_seconds, a.size, rate=a.rate)
                rows[name].update({f"paced_{k}": v for k, v in paced.items()})
            finally:
                stop(proc)
    finally:
        stop(weed); shutil.rmtree(work, ignore_errors=True)
    print("\nphase 1: as fast as the client can send (throughput; latencies include client-side queueing)")
    print(f"{'':32} {'msg/s':>9} {'MiB/s':>7} {'prod p50':>9} {'prod p99':>9} {'e2e p50':>9} {'e2e p99':>9}  (ms; acked/consumed/errors)")
    for name, r in rows.items():
        print(f"{name:32} {r['msgs_per_s']:9.0f} {r['mib_per_s']:7.1f} {r['produce_p50']:9.2f} {r['produce_p99']:9.2f} "
              f"{r['e2e_p50']:9.2f} {r['e2e_p99']:9.2f}  ({r['acked']}/{r['consumed']}/{r['errors']})")
    print(f"\nphase 2: fixed rate of {a.rate} msg/s for {a.paced_seconds} s (latency without queueing)")
    print(f"{'':32} {'prod p50':>9} {'prod p99':>9} {'e2e p50':>9} {'e2e p99':>9}  (ms; acked/consumed/errors)")
    for name, r in rows.items():
        print(f"{name:32} {r['paced_produce_p50']:9.2f} {r['paced_produce_p99']:9.2f} {r['paced_e2e_p50']:9.2f} "
              f"{r['paced_e2e_p99']:9.2f}  ({r['paced_acked']}/{r['paced_consumed']}/{r['paced_errors']})")
    t = rows.get("tansu 0.6.0, s3 (SeaweedFS)")
    if t:
        print("\nratios against Tansu on the same SeaweedFS (throughput: higher is better; latency: lower is better)")
        for name in ("automq, S3 WAL (SeaweedFS)", "automq, file WAL"):
            r = rows.get(name)
            if r:
                print(f"  {name:28} throughput x{r['msgs_per_s'] / t['msgs_per_s']:.2f}   "
                      f"paced produce p99 x{r['paced_produce_p99'] / t['paced_produce_p99']:.3f}   "
                      f"paced e2e p99 x{r['paced_e2e_p99'] / t['paced_e2e_p99']:.3f}")


if __name__ == "__main__":
    main()
