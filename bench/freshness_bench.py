"""Event-to-queryable latency of routine load (run through bench/freshness.sh)."""

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "e2e" / "warehouse"))
from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from brokers import KafkaProcess  # noqa: E402
from qnode import QueryNode  # noqa: E402

PARTITIONS = 3


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--rate", type=int, default=1000, help="events per second")
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    bins = Path(args.bin_dir).resolve()
    os.environ["AUTOMQ_BROKER_BIN"] = str(bins / "automq-broker")
    os.environ["AUTOMQ_QUERY_NODE_BIN"] = str(bins / "automq-query-node")
    work = Path(tempfile.mkdtemp(prefix="automq-fresh-"))
    broker = KafkaProcess("automq", work / "broker").start()
    (work / "qn").mkdir()
    node = QueryNode(work / "qn").start()
    try:
        broker.create_topic("events", partitions=PARTITIONS)
        conn = node.connect()
        cur = conn.cursor()
        cur.execute("CREATE DATABASE bench")
        cur.execute("USE bench")
        cur.execute("CREATE TABLE events (id BIGINT NOT NULL, p INT, payload VARCHAR(64)) PRIMARY KEY (id)")
        cur.execute(f"""CREATE ROUTINE LOAD fresh ON events PROPERTIES ("format" = "json")
            FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "events")""")
        time.sleep(2)  # the job starts at the topic's end; let it be running first

        total = int(args.rate * args.seconds)
        sent = [0.0] * total
        visible = [None] * total
        consumed = [None] * total
        done = threading.Event()

        def produce():
            p = broker.producer()
            start = time.perf_counter()
            for i in range(total):
                due = start + i / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent[i] = time.perf_counter()
                p.produce("events", json.dumps({"id": i, "p": i % PARTITIONS, "payload": "x" * 40}).encode(),
                          partition=i % PARTITIONS)
                p.poll(0)
            p.flush(30)

        def consume():
            c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fresh-anchor",
                          "fetch.wait.max.ms": 10, "fetch.min.bytes": 1, "enable.auto.commit": False})
            c.assign([TopicPartition("events", p, 0) for p in range(PARTITIONS)])
            seen = 0
            while seen < total and not done.is_set():
                for m in c.consume(num_messages=1000, timeout=0.01):
                    if m.error():
                        continue
                    i = json.loads(m.value())["id"]
                    if consumed[i] is None:
                        consumed[i] = time.perf_counter()
                        seen += 1
            c.close()

        threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
        for t in threads:
            t.start()
        # Poll: within a partition offsets are ordered and a batch commits all partitions at
        # once, so max(id) of a partition means every earlier id of that partition is visible.
        poll = node.connect("bench").cursor()
        covered = [-PARTITIONS + p for p in range(PARTITIONS)]
        queries = 0
        deadline = time.perf_counter() + args.seconds + 30
        while time.perf_counter() < deadline:
            poll.execute("SELECT p, max(id) FROM events GROUP BY p")
            now = time.perf_counter()
            queries += 1
            for p, m in poll.fetchall():
                for i in range(covered[p] + PARTITIONS, m + 1, PARTITIONS):
                    visible[i] = now
                covered[p] = max(covered[p], m)
            if all(c >= total - PARTITIONS for c in covered):
                break
        done.set()
        for t in threads:
            t.join()
        lat = [(v - s) * 1000 for s, v in zip(sent, visible) if v is not None]
        anchor = [(c - s) * 1000 for s, c in zip(sent, consumed) if c is not None]
        missing = sum(v is None for v in visible)
        print(f"\nrate {args.rate}/s for {args.seconds:.0f} s ({total} events, {PARTITIONS} partitions), "
              f"routine load with default settings; {queries} polling queries")
        print(f"{'':32}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
        print(f"{'produce -> queryable (MySQL)':32}{pct(lat, .5):10.1f}{pct(lat, .99):10.1f}{max(lat):10.1f}")
        print(f"{'produce -> consumed (Kafka)':32}{pct(anchor, .5):10.1f}{pct(anchor, .99):10.1f}{max(anchor):10.1f}")
        print(f"ratio queryable / consumed p99: {pct(lat, .99) / pct(anchor, .99):.2f}x;"
              f" target p99 < 1000 ms (StarRocks's minimum batch interval is 5000 ms)")
        if missing:
            print(f"WARNING: {missing} events never became visible")
            sys.exit(1)
    finally:
        node.kill()
        broker.kill()


if __name__ == "__main__":
    main()
