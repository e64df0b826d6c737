"""Helpers shared by the client test files: test records, waiting, and a reference admin and
consumer (confluent-kafka) used to set up and check what the client under test did."""

import os
import random
import socket
import struct
import time
from dataclasses import dataclass, field

import pytest

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

TIMEOUT_S = 20.0
# A fixed base timestamp (2023-11-14T22:13:20Z) so timestamps are exact and reproducible.
BASE_TS = 1_700_000_000_000
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@dataclass
class Rec:
    """One record as the user sees it. `timestamp_type` is 0 (none), 1 (CreateTime) or 2
    (LogAppendTime); headers keep their order and duplicates."""
    partition: int
    key: object
    value: object
    headers: list = field(default_factory=list)
    timestamp: int = None
    timestamp_type: int = 1
    offset: int = None

    def content(self):
        """What must come back byte for byte (offset is assigned by the broker)."""
        return (self.partition, self.key, self.value, list(self.headers), self.timestamp)


def wait_until(predicate, what, timeout=TIMEOUT_S, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def sample_records(partitions=3, count=60, header_none_values=True, seed=7):
    """Records that exercise the corners of the record format: null and empty keys and
    values, every byte value, unicode and duplicate header keys, null header values,
    timestamps out of order and far in the past."""
    rng = random.Random(seed)
    recs = []
    for i in range(count):
        kind = i % 6
        key = {0: f"key-{i}".encode(), 1: None, 2: b"", 3: bytes(range(256)),
               4: rng.randbytes(rng.randrange(1, 40)), 5: "ключ-✓".encode()}[kind]
        value = {0: f"value-{i}".encode() * (i + 1), 1: rng.randbytes(rng.randrange(0, 3000)),
                 2: b"", 3: bytes(range(255, -1, -1)), 4: None if i % 12 == 4 else b"\x00" * 7,
                 5: ("✓" * i).encode()}[kind]
        headers = {0: [], 1: [("h", b"1")], 2: [("dup", b"a"), ("dup", b"b"), ("dup", b"")],
                   3: [("bin", bytes(range(256))), ("ünïcode-ключ", "значение".encode())],
                   4: [("null", None)] if header_none_values else [("notnull", b"x")],
                   5: [(f"h{j}", str(j).encode()) for j in range(10)]}[kind]
        ts = BASE_TS + {0: i, 1: 1000 * i, 2: -i * 7, 3: 86_400_000, 4: -BASE_TS + 1 + i, 5: i}[kind]
        recs.append(Rec(partition=i % partitions, key=key, value=value, headers=headers, timestamp=ts))
    return recs


def compressible_records(count=300, partitions=2):
    """Text-like values that compress well, each still unique."""
    recs = []
    for i in range(count):
        line = (f'{{"order_id": {i}, "customer": "customer-{i % 17}", "status": "shipped", '
                f'"items": [{", ".join(str(j) for j in range(i % 30))}]}}').encode()
        recs.append(Rec(partition=i % partitions, key=f"order-{i}".encode(), value=line * 4,
                        headers=[("codec-test", str(i).encode())], timestamp=BASE_TS + i))
    return recs


def assert_same_records(expected, got):
    """Exact per-partition comparison, in order, with offsets 0..n-1 per partition when the
    partition started empty."""
    by_part = {}
    for r in expected:
        by_part.setdefault(r.partition, []).append(r)
    got_by_part = {}
    for r in got:
        got_by_part.setdefault(r.partition, []).append(r)
    assert sorted(got_by_part) == sorted(by_part), "partitions with records differ"
    for p, exp in by_part.items():
        g = got_by_part[p]
        assert len(g) == len(exp), f"partition {p}: expected {len(exp)} records, got {len(g)}"
        for i, (e, a) in enumerate(zip(exp, g)):
            assert a.offset == i, f"partition {p}: record #{i} has offset {a.offset}"
            assert a.content() == e.content(), f"partition {p} offset {i} differs"


def admin(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, name, partitions=1, config=None):
    """Creates a topic with confluent-kafka's admin client (the reference client)."""
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    fut = a.create_topics(
        [NewTopic(name, partitions, config=config or {})], operation_timeout=10, request_timeout=15)
    fut[name].result(timeout=TIMEOUT_S)
    return name


def confluent_consume(bootstrap, topic, count, partitions=None, timeout=TIMEOUT_S, start=0, extra=None):
    """Reads `count` records from `start` with assign() (no group coordination needed)."""
    conf = {"bootstrap.servers": bootstrap, "group.id": "e2e-reader", "enable.auto.commit": False,
            "enable.partition.eof": False, "fetch.wait.max.ms": 100}
    conf.update(extra or {})
    c = Consumer(conf)
    try:
        if partitions is None:
            md = c.list_topics(topic, timeout=10)
            partitions = sorted(md.topics[topic].partitions)
        c.assign([TopicPartition(topic, p, start) for p in partitions])
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"consumed {len(out)} of {count} records from {topic} in {timeout}s")
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            out.append(from_confluent(msg))
        return out
    finally:
        c.close()


def from_confluent(msg):
    ts_type, ts = msg.timestamp()
    return Rec(partition=msg.partition(), key=msg.key(), value=msg.value(),
               headers=list(msg.headers() or []), timestamp=ts, timestamp_type=ts_type,
               offset=msg.offset())


def random_bytes(n, seed=1):
    return random.Random(seed).randbytes(n) if n < 4096 else os.urandom(n)


FIND_COORDINATOR = 10
GROUP_APIS = {10: "FindCoordinator", 11: "JoinGroup", 12: "Heartbeat", 13: "LeaveGroup",
              14: "SyncGroup", 8: "OffsetCommit", 9: "OffsetFetch", 15: "DescribeGroups",
              16: "ListGroups", 42: "DeleteGroups"}


def api_versions(bootstrap):
    """{api_key: (min, max)} from a raw ApiVersions v0 request (no client library involved)."""
    host, port = bootstrap.rsplit(":", 1)
    client_id = b"e2e"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", read_exact(s, 4))[0]
        data = read_exact(s, size)
    correlation, error, n = struct.unpack(">ihi", data[:10])
    assert correlation == 1 and error == 0, (correlation, error)
    out = {}
    for i in range(n):
        key, lo, hi = struct.unpack(">hhh", data[10 + 6 * i:16 + 6 * i])
        out[key] = (lo, hi)
    return out


def read_exact(s, n):
    """Exactly `n` bytes from socket `s`."""
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("broker closed the connection mid-response")
        buf += chunk
    return buf


def require_group_coordinator(bootstrap):
    """Fails fast, with the missing API names, when the broker has no group coordinator yet
    (instead of letting a client time out waiting for an assignment)."""
    have = api_versions(bootstrap)
    missing = [name for key, name in sorted(GROUP_APIS.items()) if key not in have]
    if missing:
        pytest.fail(f"broker does not advertise the group APIs {', '.join(missing)} in ApiVersions: "
                    "consumer groups are not implemented", pytrace=False)
