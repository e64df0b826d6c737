"""kafka-python 3.0 (pure Python protocol implementation): data path, admin API, ListOffsets,
consumer group offsets."""

import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka import codec as kafka_codec
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import (InvalidPartitionsError, MessageSizeTooLargeError,
                          TopicAlreadyExistsError, UnknownTopicOrPartitionError)

from support import (BASE_TS, CODECS, TIMEOUT_S, Rec, assert_same_records, compressible_records,
                     confluent_consume, create_topic, random_bytes, require_group_coordinator,
                     sample_records, wait_until)

CODEC_SUPPORT = {"gzip": kafka_codec.has_gzip, "snappy": kafka_codec.has_snappy,
                 "lz4": kafka_codec.has_lz4, "zstd": kafka_codec.has_zstd}
CODEC_PACKAGE = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}


def producer(bootstrap, **conf):
    return KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10000, **conf)


def produce_all(bootstrap, topic, recs, **conf):
    """Sends `recs` in order; returns each record's (partition, offset)."""
    p = producer(bootstrap, **conf)
    try:
        futures = [p.send(topic, key=r.key, value=r.value, headers=r.headers, partition=r.partition,
                          timestamp_ms=r.timestamp) for r in recs]
        p.flush(timeout=TIMEOUT_S)
        return [(m.partition, m.offset) for m in (f.get(timeout=TIMEOUT_S) for f in futures)]
    finally:
        p.close(timeout=5)


def from_kafka_python(m):
    # kafka-python reports the timestamp type bit (0 CreateTime, 1 LogAppendTime); Rec uses
    # librdkafka's numbering (1, 2).
    return Rec(partition=m.partition, key=m.key, value=m.value, headers=list(m.headers),
               timestamp=m.timestamp, timestamp_type=m.timestamp_type + 1, offset=m.offset)


def consume(bootstrap, topic, count, partitions, timeout=TIMEOUT_S):
    c = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                      fetch_max_wait_ms=100, request_timeout_ms=10000)
    try:
        c.assign([TopicPartition(topic, p) for p in partitions])
        c.seek_to_beginning()
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, f"consumed {len(out)} of {count} records in {timeout}s"
            for recs in c.poll(timeout_ms=200).values():
                out.extend(from_kafka_python(m) for m in recs)
        return out
    finally:
        c.close()


def test_roundtrip_keys_headers_timestamps(broker):
    topic = create_topic(broker.bootstrap, "roundtrip", partitions=3)
    # kafka-python refuses headers with a null value, so this set has none.
    recs = sample_records(partitions=3, header_none_values=False)
    meta = produce_all(broker.bootstrap, topic, recs)
    next_offset = {}
    for r, (p, off) in zip(recs, meta):
        assert (p, off) == (r.partition, next_offset.get(p, 0))
        next_offset[p] = off + 1
    got = consume(broker.bootstrap, topic, len(recs), range(3))
    assert all(g.timestamp_type == 1 for g in got)
    assert_same_records(recs, got)
    # What kafka-python wrote, librdkafka reads identically.
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs)))


@pytest.mark.parametrize("codec", CODECS)
def test_compression(broker, codec):
    if codec != "none" and not CODEC_SUPPORT[codec]():
        pytest.fail(f"kafka-python cannot use {codec}: install {CODEC_PACKAGE[codec]} "
                    "(pip install -r e2e/requirements.txt)", pytrace=False)
    topic = create_topic(broker.bootstrap, f"codec-{codec}", partitions=2)
    recs = compressible_records()
    produce_all(broker.bootstrap, topic, recs, compression_type=None if codec == "none" else codec,
                linger_ms=50)
    assert_same_records(recs, consume(broker.bootstrap, topic, len(recs), range(2)))
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs)))


def test_one_mib_messages(broker):
    topic = create_topic(broker.bootstrap, "large", config={"max.message.bytes": str(4 << 20)})
    recs = [Rec(0, f"big-{i}".encode(), random_bytes(1 << 20), [("i", bytes([i]))], BASE_TS + i)
            for i in range(4)]
    produce_all(broker.bootstrap, topic, recs, max_request_size=4 << 20)
    assert_same_records(recs, consume(broker.bootstrap, topic, len(recs), [0]))


def test_batch_over_max_message_bytes_is_refused(broker):
    topic = create_topic(broker.bootstrap, "too-large")
    p = producer(broker.bootstrap, max_request_size=4 << 20, retries=0)
    try:
        fut = p.send(topic, value=random_bytes(1 << 20), partition=0)
        with pytest.raises(MessageSizeTooLargeError):
            fut.get(timeout=TIMEOUT_S)
    finally:
        p.close(timeout=5)


def test_idempotent_producer(broker):
    topic = create_topic(broker.bootstrap, "idempotent", partitions=3)
    recs = [Rec(i % 3, f"k{i}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(2000)]
    meta = produce_all(broker.bootstrap, topic, recs, enable_idempotence=True, acks="all",
                       linger_ms=2, batch_size=2048)
    for p in range(3):
        offs = [off for (part, off) in meta if part == p]
        assert offs == list(range(len(offs))), f"partition {p}: offsets not dense and ordered"
    assert_same_records(recs, consume(broker.bootstrap, topic, len(recs), range(3)))


def topic_configs(a, topic):
    out = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
    return out["topic"][topic]


def test_topic_admin(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        topic = "admin-topic"
        a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1,
                                 "configs": {"retention.ms": "3600000"}}})
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})

        (desc,) = a.describe_topics([topic])
        assert desc["error_code"] == 0
        assert sorted(p["partition_index"] for p in desc["partitions"]) == [0, 1]

        cfg = topic_configs(a, topic)
        assert cfg["retention.ms"]["value"] == "3600000"
        assert cfg["cleanup.policy"]["value"] == "delete"

        a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})])
        cfg = topic_configs(a, topic)
        assert cfg["retention.ms"]["value"] == "7200000"

        result = a.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "soon"})])
        # kafka-python reports per-resource errors as strings naming the Kafka error.
        assert "[Error 40] InvalidConfigurationError" in str(result["topic"][topic]), result
        assert topic_configs(a, topic)["retention.ms"]["value"] == "7200000"

        a.create_partitions({topic: 3})
        wait_until(lambda: len(a.describe_topics([topic])[0]["partitions"]) == 3, "3 partitions")
        assert produce_all(broker.bootstrap, topic, [Rec(2, b"k", b"new", [], BASE_TS)]) == [(2, 0)]
        with pytest.raises(InvalidPartitionsError):
            a.create_partitions({topic: 1})

        a.delete_topics([topic])
        wait_until(lambda: topic not in a.list_topics(), "topic gone")
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([topic])
    finally:
        a.close()


def test_offsets_for_times(broker):
    topic = create_topic(broker.bootstrap, "by-time", partitions=1)
    recs = [Rec(0, None, f"v{i}".encode(), [], BASE_TS + 1000 * i) for i in range(10)]
    produce_all(broker.bootstrap, topic, recs)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, request_timeout_ms=10000)
    tp = TopicPartition(topic, 0)
    try:
        for ts, want in [(BASE_TS - 5, 0), (BASE_TS, 0), (BASE_TS + 1, 1), (BASE_TS + 4500, 5),
                         (BASE_TS + 9000, 9)]:
            got = c.offsets_for_times({tp: ts})[tp]
            assert got is not None and (got.offset, got.timestamp) == (want, BASE_TS + 1000 * want), (ts, got)
        assert c.offsets_for_times({tp: BASE_TS + 9001})[tp] is None
        assert c.beginning_offsets([tp]) == {tp: 0}
        assert c.end_offsets([tp]) == {tp: 10}
    finally:
        c.close()


def test_compacted_topic_config_accepted(broker):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        topic = "compacted"
        a.create_topics({topic: {"num_partitions": 1, "replication_factor": 1,
                                 "configs": {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"}}})
        assert topic_configs(a, topic)["cleanup.policy"]["value"] == "compact"
    finally:
        a.close()
    recs = [Rec(0, f"k{i % 3}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(9)]
    assert [off for _, off in produce_all(broker.bootstrap, topic, recs)] == list(range(9))


def test_group_commit_and_resume(broker):
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "resume", partitions=2)
    produce_all(broker.bootstrap, topic, [Rec(i % 2, None, f"v{i}".encode(), [], BASE_TS + i)
                                          for i in range(20)])

    def member():
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id="kp-group",
                          enable_auto_commit=False, auto_offset_reset="earliest",
                          session_timeout_ms=6000, heartbeat_interval_ms=300, fetch_max_wait_ms=100,
                          request_timeout_ms=10000)
        c.subscribe([topic])
        return c

    c = member()
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < 20 and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            got.extend(recs)
    assert sorted((m.partition, m.offset) for m in got) == [(p, o) for p in (0, 1) for o in range(10)]
    from kafka.structs import OffsetAndMetadata
    c.commit({TopicPartition(topic, p): OffsetAndMetadata(6, "", -1) for p in (0, 1)})
    c.close()

    broker.restart(kill=True)

    c = member()
    try:
        assert c.committed(TopicPartition(topic, 0)) == 6
        first = {}
        deadline = time.monotonic() + TIMEOUT_S
        while len(first) < 2 and time.monotonic() < deadline:
            for tp, recs in c.poll(timeout_ms=200).items():
                first.setdefault(tp.partition, recs[0].offset)
        assert first == {0: 6, 1: 6}
    finally:
        c.close()


def test_group_rebalance_two_members(broker):
    """kafka-python's own group protocol: a second member joins (partitions split), then
    leaves (the first takes them all back). Each member polls in its own thread, as
    kafka-python requires."""
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "kp-rebalance", partitions=4)
    stop = {}
    assigned = {}
    errors = []

    def member(name):
        try:
            c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="kp-rebalance",
                              session_timeout_ms=6000, heartbeat_interval_ms=300,
                              request_timeout_ms=10000)
            while not stop.get(name):
                c.poll(timeout_ms=100)
                assigned[name] = sorted(tp.partition for tp in c.assignment())
            c.close()
        except Exception as e:
            errors.append(e)

    threads = {n: threading.Thread(target=member, args=(n,), daemon=True) for n in "ab"}
    try:
        threads["a"].start()
        wait_until(lambda: assigned.get("a") == [0, 1, 2, 3], f"a alone owning all 4 ({assigned})")
        threads["b"].start()
        wait_until(lambda: len(assigned.get("a", [])) == 2 and len(assigned.get("b", [])) == 2
                   and sorted(assigned["a"] + assigned["b"]) == [0, 1, 2, 3], f"an even split ({assigned})")
        stop["b"] = True
        threads["b"].join(TIMEOUT_S)
        wait_until(lambda: assigned.get("a") == [0, 1, 2, 3], f"a owning all 4 again ({assigned})")
    finally:
        stop.update(a=True, b=True)
        for t in threads.values():
            if t.ident is not None:  # started
                t.join(TIMEOUT_S)
    assert not errors, errors
