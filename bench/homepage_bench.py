"""Merchant homepage under load while change events stream in (run through bench/homepage.sh).

`automq standalone` runs; `automq demo` plays the booking platform's Debezium events into it at a
steady rate the whole time. Meanwhile 1, 16 and 64 connections ask the homepage questions
(revenue yesterday, appointments today, staff performance, payment log) for random merchants
through pymysql, as fast as they get answers. Reported per level: QPS and p50/p99 latency, next
to DuckDB answering the same SQL text on a snapshot of the same tables in the same run (the
anchor: an in-process engine with no network, no ingestion and no freshness to keep). Freshness:
the demo's own probe (a payment's event produced -> visible to SQL, measured during the query
load), next to a plain Kafka consumer of the payments topic (the floor any loader sits on)."""

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "e2e" / "warehouse"))
import duckdb  # noqa: E402
import pymysql  # noqa: E402
from confluent_kafka import OFFSET_END, Consumer, TopicPartition  # noqa: E402
from qnode import free_port  # noqa: E402

MERCHANTS = 8
TYPES = {"BIGINT": "BIGINT", "VARCHAR": "VARCHAR", "DATETIME": "TIMESTAMP", "DECIMAL": "DECIMAL(10,2)"}


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))] if xs else float("nan")


def load(connect, queries, clients, seconds):
    """`clients` threads asking random merchants' homepage queries; returns (qps, p50, p99, errors)."""
    latencies, errors = [], []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(i):
        rng = random.Random(i)
        run = connect()
        mine = []
        while time.perf_counter() < stop:
            sql = rng.choice(queries[rng.randrange(MERCHANTS)])
            t = time.perf_counter()
            try:
                run(sql)
            except Exception as e:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(repr(e))
                continue
            mine.append(time.perf_counter() - t)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(latencies) / seconds, pct(latencies, 0.5) * 1000, pct(latencies, 0.99) * 1000, errors


def mysql_runner(port):
    def connect():
        conn = pymysql.connect(host="127.0.0.1", port=port, user="root", autocommit=True)
        cur = conn.cursor()

        def run(sql):
            cur.execute(sql)
            return cur.fetchall()
        return run
    return connect


def duckdb_snapshot(port):
    """The six tables as they are now, copied into DuckDB."""
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root", database="booking", autocommit=True)
    cur = conn.cursor()
    db = duckdb.connect()
    db.execute("CREATE SCHEMA booking")
    cur.execute("SHOW TABLES")
    for (table,) in cur.fetchall():
        cur.execute(f"DESCRIBE {table}")
        cols = [(name, TYPES[ty.split("(")[0].upper()]) for name, ty, *_ in cur.fetchall()]
        db.execute(f"CREATE TABLE booking.{table} ({', '.join(f'{n} {t}' for n, t in cols)})")
        cur.execute(f"SELECT * FROM {table}")
        rows = cur.fetchall()
        if rows:
            db.executemany(f"INSERT INTO booking.{table} VALUES ({', '.join('?' * len(cols))})", rows)
    return db


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True, help="the automq binary")
    ap.add_argument("--rate", type=int, default=1000, help="change events per second during the run")
    ap.add_argument("--seconds", type=float, default=20, help="per concurrency level")
    ap.add_argument("--levels", default="1,16,64")
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    work = Path(tempfile.mkdtemp(prefix="automq-homepage-"))
    kafka, mysql, http, qhttp = (free_port() for _ in range(4))
    standalone = subprocess.Popen(
        [args.bin, "standalone", "--data-dir", str(work / "data"), "--kafka-listen", f"127.0.0.1:{kafka}",
         "--mysql-listen", f"127.0.0.1:{mysql}", "--http-listen", f"127.0.0.1:{http}",
         "--query-http-listen", f"127.0.0.1:{qhttp}"],
        stdout=subprocess.DEVNULL, stderr=open(work / "standalone.log", "w"))
    demo = None
    try:
        common = [args.bin, "demo", "--bootstrap", f"127.0.0.1:{kafka}", "--mysql", f"127.0.0.1:{mysql}",
                  "--merchants", str(MERCHANTS)]
        queries = [[q["sql"] for q in json.loads(subprocess.run(
            common + ["--print-queries", "--merchant", str(m + 1)], check=True, capture_output=True,
            text=True).stdout)] for m in range(MERCHANTS)]
        warmup = 10
        total = warmup + len(levels) * args.seconds + 5
        demo = subprocess.Popen(common + ["--rate", str(args.rate), "--events", str(int(args.rate * total)),
                                          "--quiet", "--summary", str(work / "summary.json")],
                                stdout=open(work / "demo.log", "w"), stderr=subprocess.STDOUT)
        time.sleep(warmup)
        if demo.poll() is not None:
            sys.exit(f"the demo stopped early: {(work / 'demo.log').read_text()[-2000:]}")

        # The floor: a plain consumer of the payments topic, end to end (record timestamp -> read).
        floor, stop = [], threading.Event()

        def consume():
            c = Consumer({"bootstrap.servers": f"127.0.0.1:{kafka}", "group.id": "floor",
                          "fetch.wait.max.ms": 10, "fetch.min.bytes": 1, "enable.auto.commit": False})
            # From the end: the floor is the latency of new events, not of reading a backlog.
            c.assign([TopicPartition("booking.public.payments", p, OFFSET_END) for p in range(3)])
            while not stop.is_set():
                for m in c.consume(num_messages=1000, timeout=0.05):
                    if not m.error():
                        floor.append(time.time() * 1000 - m.timestamp()[1])
            c.close()
        floor_thread = threading.Thread(target=consume)
        floor_thread.start()

        print(f"homepage queries while {args.rate} change events/s stream in ({args.seconds:.0f} s per level; "
              f"{MERCHANTS} merchants, 4 queries of 3-6 tables)")
        ours = {c: load(mysql_runner(mysql), queries, c, args.seconds) for c in levels}
        demo.wait(timeout=total + 120)
        stop.set()
        floor_thread.join()
        summary = json.loads((work / "summary.json").read_text())
        snapshot = duckdb_snapshot(mysql)
        anchor = {c: load(lambda: (lambda cur: lambda sql: cur.execute(sql).fetchall())(snapshot.cursor()),
                          queries, c, args.seconds) for c in levels}

        print(f"\n{'conns':>5} {'automq QPS':>11} {'p50 ms':>8} {'p99 ms':>8} {'DuckDB QPS':>11} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'QPS ratio':>10} {'p99 ratio':>10}")
        for c in levels:
            q, p50, p99, errs = ours[c]
            aq, a50, a99, aerrs = anchor[c]
            print(f"{c:>5} {q:>11.1f} {p50:>8.1f} {p99:>8.1f} {aq:>11.1f} {a50:>8.1f} {a99:>8.1f} "
                  f"{q / aq:>10.2f} {p99 / a99:>10.2f}")
            for e in (errs + aerrs)[:3]:
                print(f"      error: {e}")
        f = summary["freshness_ms"] or {}
        print(f"\nfreshness (payment event produced -> visible to SQL, during the query load): "
              f"p50 {f.get('p50')} ms, p99 {f.get('p99')} ms, max {f.get('max')} ms ({f.get('samples')} samples)")
        print(f"anchor, a plain Kafka consumer of the same topic: p50 {pct(floor, 0.5):.0f} ms, "
              f"p99 {pct(floor, 0.99):.0f} ms ({len(floor)} messages)")
        print(f"events produced: {summary['events']}; all loaded {summary['caught_up_after_ms']} ms after the last")
    finally:
        if demo and demo.poll() is None:
            demo.kill()
        standalone.send_signal(signal.SIGKILL)
        standalone.wait()


if __name__ == "__main__":
    main()
