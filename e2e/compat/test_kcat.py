"""kcat 1.7.1 on Debian's librdkafka 2.0.2: an old librdkafka, strict about ApiVersions and
older request versions, so it catches encoding bugs the new clients tolerate."""

import json
import shutil
import subprocess
import time

import pytest
from confluent_kafka import Producer

from support import (BASE_TS, CODECS, Rec, confluent_consume, create_topic,
                     require_group_coordinator)

KCAT_TIMEOUT_S = 30


def kcat(*args, input=None):
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed: apt-get install -y kcat (e2e/run.sh installs it)", pytrace=False)
    r = subprocess.run([exe, *args], input=input, capture_output=True, timeout=KCAT_TIMEOUT_S)
    assert r.returncode == 0, f"kcat {' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')}"
    return r.stdout.decode()


def consume_json(bootstrap, topic, *extra):
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-J", "-e", "-o", "beginning", "-q", *extra)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_metadata(broker):
    create_topic(broker.bootstrap, "meta", partitions=3)
    md = json.loads(kcat("-b", broker.bootstrap, "-L", "-J"))
    assert md["brokers"] == [{"id": 1, "name": broker.bootstrap}]
    assert md["controllerid"] == 1
    topics = {t["topic"]: t for t in md["topics"]}
    assert "meta" in topics and "error" not in topics["meta"]
    parts = sorted(topics["meta"]["partitions"], key=lambda p: p["partition"])
    assert [(p["partition"], p["leader"], p["replicas"], p["isrs"]) for p in parts] == [
        (i, 1, [{"id": 1}], [{"id": 1}]) for i in range(3)]
    # The plain-text listing of one topic works too.
    text = kcat("-b", broker.bootstrap, "-L", "-t", "meta")
    assert 'topic "meta" with 3 partitions' in text


def test_produce_consume_keys_headers(broker):
    topic = create_topic(broker.bootstrap, "kcat-rt", partitions=2)
    lines = [f"key-{i}\tvalue {i} ✓ {'x' * i}" for i in range(40)] + ["\tempty key"]
    before = int(time.time() * 1000)
    for p in (0, 1):
        kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", str(p), "-K", "\t",
             "-H", "trace=abc", "-H", "empty=", "-H", "trace=second",
             input=("\n".join(lines) + "\n").encode())
    after = int(time.time() * 1000)

    got = consume_json(broker.bootstrap, topic)
    assert len(got) == 2 * len(lines)
    for p in (0, 1):
        mine = [m for m in got if m["partition"] == p]
        assert [m["offset"] for m in mine] == list(range(len(lines)))
        assert [f"{m['key']}\t{m['payload']}" for m in mine] == lines
        for m in mine:
            assert m["headers"] == ["trace", "abc", "empty", "", "trace", "second"]
            assert m["tstype"] == "create" and before - 1000 <= m["ts"] <= after + 1000

    # librdkafka 2.16 reads the same bytes.
    exp_headers = [("trace", b"abc"), ("empty", b""), ("trace", b"second")]
    ref = confluent_consume(broker.bootstrap, topic, 2 * len(lines))
    for r in ref:
        k, v = lines[r.offset].encode().split(b"\t", 1)
        assert (r.key, r.value, r.headers) == (k, v, exp_headers)


def test_consume_what_new_clients_wrote(broker):
    """Records with timestamps, null keys and null values written by librdkafka 2.16, read by
    kcat's librdkafka 2.0.2 (text only, so JSON output compares exactly)."""
    topic = create_topic(broker.bootstrap, "kcat-read")
    p = Producer({"bootstrap.servers": broker.bootstrap})
    recs = []
    for i in range(20):
        r = Rec(0, None if i % 5 == 0 else f"k{i}".encode(), None if i % 7 == 3 else f"v{i}".encode(),
                [("n", str(i).encode())], BASE_TS + 1000 * i)
        recs.append(r)
        p.produce(topic, key=r.key, value=r.value, headers=r.headers, timestamp=r.timestamp, partition=0)
    assert p.flush(10) == 0
    got = consume_json(broker.bootstrap, topic)
    assert [(m["offset"], m["key"], m["payload"], m["headers"], m["ts"], m["tstype"]) for m in got] == [
        (i, r.key and r.key.decode(), r.value and r.value.decode(), ["n", str(i)], r.timestamp, "create")
        for i, r in enumerate(recs)]


@pytest.mark.parametrize("codec", CODECS)
def test_compression_codec(broker, codec):
    topic = create_topic(broker.bootstrap, f"kcat-{codec}")
    lines = [f'{{"id": {i}, "status": "shipped", "note": "{"repeat " * (i % 20)}"}}' for i in range(300)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-X", f"compression.codec={codec}",
         "-X", "linger.ms=50", input=("\n".join(lines) + "\n").encode())
    got = consume_json(broker.bootstrap, topic)
    assert [m["payload"] for m in got] == lines
    assert [m["offset"] for m in got] == list(range(len(lines)))
    ref = confluent_consume(broker.bootstrap, topic, len(lines))
    assert [r.value for r in ref] == [line.encode() for line in lines]


def test_balanced_consumer_group_commits(broker):
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "kcat-group", partitions=2)
    first = [f"first-{i}" for i in range(10)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, input=("\n".join(first) + "\n").encode())

    def group_read():
        out = kcat("-b", broker.bootstrap, "-G", "kcat-group", topic, "-J", "-e", "-q",
                   "-X", "auto.offset.reset=earliest")
        return [json.loads(line)["payload"] for line in out.splitlines() if line.strip()]

    assert sorted(group_read()) == sorted(first)
    second = [f"second-{i}" for i in range(5)]
    kcat("-b", broker.bootstrap, "-P", "-t", topic, input=("\n".join(second) + "\n").encode())
    assert sorted(group_read()) == sorted(second), "the group must resume after its committed offsets"
