#!/usr/bin/env python3
"""Clients for e2e/kind/run.sh, run inside the e2e-client pod (python:3.12-slim).

    client.py bucket --endpoint URL --bucket NAME
    client.py create-topic --bootstrap HOST:PORT --topic T [--partitions N]
    client.py produce --bootstrap B --topic T --prefix P --count N [--rate R] --acked FILE
    client.py verify --bootstrap B --topic T --acked FILE [--acked FILE ...] [--wait SECONDS]
    client.py sql --host H --port P --password PW --bootstrap B --topic T --expect N

`produce` writes the key of every acknowledged record to FILE; `verify` reads the whole topic
and fails if any acknowledged key is missing (acknowledged = durable, so none may be lost);
with --wait it re-reads until nothing is missing or the time is up (a mirror catching up).
`sql` runs a few statements on a query node and a routine load of the topic, and waits until
the table holds N distinct keys. Credentials for `bucket` come from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY. Every command prints one summary line and exits non-zero on failure.
"""
import argparse
import os
import sys
import time


def retry(what, fn, seconds=120):
    deadline, last = time.time() + seconds, None
    while time.time() < deadline:
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - any failure is retried until the deadline
            last = e
            time.sleep(2)
    sys.exit(f"FAIL {what}: {last}")


def bucket(a):
    import boto3
    s3 = boto3.client("s3", endpoint_url=a.endpoint, region_name="us-east-1",
                      aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=os.environ["AWS_SECRET_ACCESS_KEY"])

    def create():
        try:
            s3.create_bucket(Bucket=a.bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
        s3.head_bucket(Bucket=a.bucket)

    retry(f"creating bucket {a.bucket}", create)
    print(f"bucket {a.bucket} ready at {a.endpoint}")


def create_topic(a):
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": a.bootstrap})

    def create():
        fut = admin.create_topics([NewTopic(a.topic, num_partitions=a.partitions)])[a.topic]
        try:
            fut.result(30)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise

    retry(f"creating topic {a.topic}", create)
    print(f"topic {a.topic} ready ({a.partitions} partitions)")


def produce(a):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": a.bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": 180000, "linger.ms": 5})
    acked, failed = [], []

    def done(err, msg):
        (failed if err else acked).append(msg.key().decode())

    interval = 1.0 / a.rate if a.rate else 0
    for i in range(a.count):
        key = f"{a.prefix}-{i}"
        while True:
            try:
                p.produce(a.topic, f"{key},{a.prefix},{i}".encode(), key=key.encode(), on_delivery=done)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
        if interval:
            time.sleep(interval)
    left = p.flush(240)
    with open(a.acked, "w") as f:
        f.write("\n".join(acked) + "\n")
    print(f"produced {a.prefix}: {len(acked)} acknowledged, {len(failed)} failed, {left} unresolved")
    if failed or left or len(acked) != a.count:
        sys.exit(1)


def verify(a):
    wanted = set()
    for path in a.acked:
        with open(path) as f:
            wanted |= {line.strip() for line in f if line.strip()}
    deadline = time.time() + a.wait
    while True:
        missing = read_and_compare(a, wanted)
        if not missing or time.time() >= deadline:
            break
        time.sleep(5)
    if missing:
        print("missing (first 20): " + ", ".join(sorted(missing)[:20]))
        sys.exit(1)


def read_and_compare(a, wanted):
    """Reads the topic up to its current end; returns the wanted keys not found."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": a.bootstrap, "group.id": f"e2e-verify-{time.time_ns()}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    def topic_partitions():
        meta = c.list_topics(a.topic, timeout=10).topics[a.topic]
        if meta.error is not None or not meta.partitions:
            raise RuntimeError(f"topic {a.topic}: {meta.error or 'no partitions yet'}")
        return sorted(meta.partitions)

    partitions = retry(f"reading metadata of {a.topic}", topic_partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(a.topic, p), timeout=10)[1] for p in partitions}
    c.assign([TopicPartition(a.topic, p, OFFSET_BEGINNING) for p in partitions])
    seen, records, positions = set(), 0, {p: 0 for p in partitions}
    deadline = time.time() + 180
    while any(positions[p] < ends[p] for p in partitions) and time.time() < deadline:
        m = c.poll(1)
        if m is None or m.error():
            continue
        records += 1
        seen.add(m.key().decode())
        positions[m.partition()] = m.offset() + 1
    c.close()
    missing = wanted - seen
    print(f"verify {a.topic}: {len(wanted)} acknowledged keys, {records} records read "
          f"({len(seen)} distinct keys), {len(missing)} missing")
    return missing


def sql(a):
    import pymysql

    def connect():
        return pymysql.connect(host=a.host, port=a.port, user="root", password=a.password,
                               autocommit=True, connect_timeout=10)

    conn = retry(f"connecting to {a.host}:{a.port}", connect)
    cur = conn.cursor()
    cur.execute("CREATE DATABASE IF NOT EXISTS e2e")
    cur.execute("USE e2e")
    cur.execute("CREATE TABLE IF NOT EXISTS events (k VARCHAR(64), phase VARCHAR(16), n INT) PRIMARY KEY (k)")
    cur.execute("INSERT INTO events VALUES ('sql-0', 'sql', 0), ('sql-1', 'sql', 1)")
    cur.execute("SELECT count(*) FROM events WHERE phase = 'sql'")
    assert cur.fetchone()[0] == 2, "the two inserted rows are not visible"
    cur.execute(f"""CREATE ROUTINE LOAD e2e.events_load ON events COLUMNS TERMINATED BY ','
        PROPERTIES ("format" = "csv", "max_batch_interval" = "0.5")
        FROM KAFKA ("kafka_broker_list" = "{a.bootstrap}", "kafka_topic" = "{a.topic}",
                    "property.kafka_default_offsets" = "OFFSET_BEGINNING")""")
    count, deadline = 0, time.time() + 300
    while time.time() < deadline:
        cur.execute("SELECT count(*) FROM events WHERE phase <> 'sql'")
        count = cur.fetchone()[0]
        if count >= a.expect:
            break
        time.sleep(2)
    cur.execute("SELECT phase, count(*) FROM events GROUP BY phase ORDER BY phase")
    by_phase = cur.fetchall()
    print(f"sql: routine load holds {count}/{a.expect} keys; rows by phase: {by_phase}")
    if count != a.expect:
        sys.exit(1)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("bucket")
    s.add_argument("--endpoint", required=True)
    s.add_argument("--bucket", required=True)
    s = sub.add_parser("create-topic")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--partitions", type=int, default=6)
    s = sub.add_parser("produce")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--prefix", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--rate", type=float, default=0, help="records per second (0: as fast as possible)")
    s.add_argument("--acked", required=True)
    s = sub.add_parser("verify")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--acked", action="append", required=True)
    s.add_argument("--wait", type=float, default=0, help="seconds to keep re-reading while keys are missing")
    s = sub.add_parser("sql")
    s.add_argument("--host", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--password", default="")
    s.add_argument("--bootstrap", required=True)
    s.add_argument("--topic", required=True)
    s.add_argument("--expect", type=int, required=True)
    a = ap.parse_args()
    {"bucket": bucket, "create-topic": create_topic, "produce": produce, "verify": verify,
     "sql": sql}[a.command](a)


if __name__ == "__main__":
    main()
