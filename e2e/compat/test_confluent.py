"""confluent-kafka (librdkafka 2.16): data path, admin API, ListOffsets, consumer groups."""

import os
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, ConsumerGroupTopicPartitions, KafkaError,
                             KafkaException, Producer, TopicPartition)
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, OffsetSpec, ResourceType)

from support import (BASE_TS, CODECS, TIMEOUT_S, Rec, admin, assert_same_records,
                     compressible_records, confluent_consume, create_topic, random_bytes,
                     require_group_coordinator, sample_records, wait_until)


def produce_all(bootstrap, topic, recs, **conf):
    """Produces `recs` in order and returns the delivery reports (partition, offset) in order;
    raises on the first delivery error."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, **conf})
    reports = [None] * len(recs)

    def on_delivery(i):
        def cb(err, msg):
            reports[i] = err if err else (msg.partition(), msg.offset())
        return cb

    for i, r in enumerate(recs):
        p.produce(topic, key=r.key, value=r.value, headers=r.headers or None, partition=r.partition,
                  timestamp=r.timestamp or 0, on_delivery=on_delivery(i))
        p.poll(0)
    left = p.flush(TIMEOUT_S)
    assert left == 0, f"{left} messages not delivered within {TIMEOUT_S}s"
    errors = [(i, e) for i, e in enumerate(reports) if isinstance(e, KafkaError)]
    assert not errors, f"delivery failed: {errors[:3]}"
    return reports


def test_roundtrip_keys_headers_timestamps(broker):
    topic = create_topic(broker.bootstrap, "roundtrip", partitions=3)
    recs = sample_records(partitions=3)
    reports = produce_all(broker.bootstrap, topic, recs)
    # Delivery reports carry the offsets the broker assigned: 0.. per partition, in order.
    next_offset = {}
    for r, (p, off) in zip(recs, reports):
        assert p == r.partition
        assert off == next_offset.get(p, 0)
        next_offset[p] = off + 1
    got = confluent_consume(broker.bootstrap, topic, len(recs))
    assert all(g.timestamp_type == 1 for g in got), "CreateTime timestamps expected"
    assert_same_records(recs, got)


def test_log_append_time_topic(broker):
    topic = create_topic(broker.bootstrap, "append-time", config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(broker.bootstrap, topic, [Rec(0, b"k", b"v", timestamp=BASE_TS)])
    after = int(time.time() * 1000)
    (got,) = confluent_consume(broker.bootstrap, topic, 1)
    assert got.timestamp_type == 2, "LogAppendTime topic must report timestamp type LogAppendTime"
    assert before - 1000 <= got.timestamp <= after + 1000, "broker time expected, not the producer's"


@pytest.mark.parametrize("codec", CODECS)
def test_compression(broker, codec):
    topic = create_topic(broker.bootstrap, f"codec-{codec}", partitions=2)
    recs = compressible_records()
    produce_all(broker.bootstrap, topic, recs, **{"compression.type": codec, "linger.ms": 50})
    got = confluent_consume(broker.bootstrap, topic, len(recs))
    assert_same_records(recs, got)


def test_one_mib_messages(broker):
    topic = create_topic(broker.bootstrap, "large", config={"max.message.bytes": str(4 << 20)})
    recs = [Rec(0, f"big-{i}".encode(), random_bytes(1 << 20), [("i", bytes([i]))], BASE_TS + i)
            for i in range(4)]
    produce_all(broker.bootstrap, topic, recs, **{"message.max.bytes": 4 << 20})
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs)))
    # Fetch limits far below one record: the broker must still return the first batch whole
    # (KIP-74), or the consumer is stuck forever.
    small = {"max.partition.fetch.bytes": 65536, "fetch.max.bytes": 100000, "message.max.bytes": 100000}
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs), extra=small))


def test_batch_over_max_message_bytes_is_refused(broker):
    """A 1 MiB record does not fit the default max.message.bytes (1048588 bytes for the whole
    batch): the broker refuses it with MSG_SIZE_TOO_LARGE, and nothing is appended."""
    topic = create_topic(broker.bootstrap, "too-large")
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4 << 20, "retries": 0})
    errs = []
    p.produce(topic, value=random_bytes(1 << 20), on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(TIMEOUT_S) == 0
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 0)
    finally:
        c.close()


def test_batch_larger_than_a_wal_segment_is_refused_not_retried(broker):
    """The topic allows 16 MiB batches but the file WAL's segments (8 MiB in these tests) cannot
    hold one: the broker answers MSG_SIZE_TOO_LARGE, which a producer does not retry, instead of
    a storage error it would retry forever, and it goes on serving."""
    segment = int(os.environ["AUTOMQ_FILE_WAL_SEGMENT_BYTES"])
    topic = create_topic(broker.bootstrap, "over-segment", config={"max.message.bytes": str(2 * segment)})
    p = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 4 * segment,
                  "retries": 5, "retry.backoff.ms": 10})
    errs = []
    p.produce(topic, value=random_bytes(segment + (1 << 20)), on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(TIMEOUT_S) == 0
    assert errs and errs[0] is not None and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, errs
    recs = [Rec(0, b"k", random_bytes(segment // 2), [], BASE_TS)]
    produce_all(broker.bootstrap, topic, recs, **{"message.max.bytes": 4 * segment})
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, 1))


def test_idempotent_producer(broker):
    topic = create_topic(broker.bootstrap, "idempotent", partitions=3)
    recs = [Rec(i % 3, f"k{i}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(3000)]
    reports = produce_all(broker.bootstrap, topic, recs, **{
        "enable.idempotence": True, "acks": "all", "max.in.flight.requests.per.connection": 5,
        "linger.ms": 1, "batch.num.messages": 50})
    for p in range(3):
        offs = [off for (part, off) in reports if part == p]
        assert offs == list(range(len(offs))), f"partition {p}: offsets not dense and ordered"
    got = confluent_consume(broker.bootstrap, topic, len(recs))
    assert_same_records(recs, got)


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, acks):
    topic = create_topic(broker.bootstrap, f"acks-{acks}")
    recs = [Rec(0, f"k{i}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(200)]
    reports = produce_all(broker.bootstrap, topic, recs, acks=acks)
    if acks != "0":  # with acks=0 the client never learns offsets
        assert [off for _, off in reports] == list(range(200))
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs)))


def test_auto_created_topic(broker):
    """Producing to an unknown topic creates it (auto.create.topics.enable, num.partitions=1)."""
    recs = [Rec(0, None, f"v{i}".encode(), [], BASE_TS + i) for i in range(5)]
    produce_all(broker.bootstrap, "never-created", recs)
    md = admin(broker.bootstrap).list_topics(timeout=10)
    assert sorted(md.topics["never-created"].partitions) == [0]
    assert_same_records(recs, confluent_consume(broker.bootstrap, "never-created", len(recs)))


def test_delete_records_and_out_of_range_reset(broker):
    topic = create_topic(broker.bootstrap, "trimmed")
    recs = [Rec(0, None, f"v{i}".encode(), [], BASE_TS + i) for i in range(10)]
    produce_all(broker.bootstrap, topic, recs)
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0, 4)
    res = a.delete_records([tp], operation_timeout=10)[tp].result(TIMEOUT_S)
    assert res.low_watermark == 4, "DeleteRecords reports the new low watermark"
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (4, 10)
    finally:
        c.close()
    # Reading below the low watermark or past the end is out of range; the consumer resets.
    got = confluent_consume(broker.bootstrap, topic, 6, start=0, extra={"auto.offset.reset": "earliest"})
    assert [(g.offset, g.value) for g in got] == [(i, f"v{i}".encode()) for i in range(4, 10)]
    got = confluent_consume(broker.bootstrap, topic, 6, start=1000, extra={"auto.offset.reset": "earliest"})
    assert [g.offset for g in got] == list(range(4, 10))


def describe_topic_config(a, topic):
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res])[res].result(TIMEOUT_S)


@pytest.mark.filterwarnings("ignore:alter_configs has been deprecated")  # tested on purpose
def test_topic_admin(broker):
    a = admin(broker.bootstrap)
    topic = "admin-topic"
    a.create_topics([NewTopic(topic, 2, config={"retention.ms": "3600000"})])[topic].result(TIMEOUT_S)

    # Creating it again fails with TOPIC_ALREADY_EXISTS.
    with pytest.raises(KafkaException) as e:
        a.create_topics([NewTopic(topic, 2)])[topic].result(TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    md = a.list_topics(timeout=10)
    assert sorted(md.topics[topic].partitions) == [0, 1]
    assert all(p.leader == 1 and p.replicas == [1] for p in md.topics[topic].partitions.values())

    cfg = describe_topic_config(a, topic)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["cleanup.policy"].is_default

    # IncrementalAlterConfigs: set one key, keep the others.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "7200000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2097152", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(TIMEOUT_S)
    cfg = describe_topic_config(a, topic)
    assert (cfg["retention.ms"].value, cfg["max.message.bytes"].value) == ("7200000", "2097152")

    # DELETE reverts a key to its default.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res])[res].result(TIMEOUT_S)
    cfg = describe_topic_config(a, topic)
    assert cfg["retention.ms"].value == "604800000" and cfg["retention.ms"].is_default
    assert cfg["max.message.bytes"].value == "2097152"

    # Legacy AlterConfigs replaces the whole set.
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"retention.bytes": "1048576"})
    a.alter_configs([res])[res].result(TIMEOUT_S)
    cfg = describe_topic_config(a, topic)
    assert cfg["retention.bytes"].value == "1048576"
    assert cfg["max.message.bytes"].is_default, "AlterConfigs must reset keys it does not name"

    # An unknown config or a bad value is refused.
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    with pytest.raises(KafkaException) as e:
        a.incremental_alter_configs([res])[res].result(TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.INVALID_CONFIG

    # CreatePartitions: grow to 4, and the new partitions take writes.
    a.create_partitions([NewPartitions(topic, 4)])[topic].result(TIMEOUT_S)
    wait_until(lambda: len(a.list_topics(timeout=10).topics[topic].partitions) == 4, "4 partitions")
    produce_all(broker.bootstrap, topic, [Rec(3, b"k", b"in-new-partition", [], BASE_TS)])
    (got,) = confluent_consume(broker.bootstrap, topic, 1, partitions=[3])
    assert got.value == b"in-new-partition"
    # Shrinking is refused.
    with pytest.raises(KafkaException) as e:
        a.create_partitions([NewPartitions(topic, 2)])[topic].result(TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    a.delete_topics([topic], operation_timeout=10)[topic].result(TIMEOUT_S)
    wait_until(lambda: topic not in a.list_topics(timeout=10).topics, "topic gone from metadata")
    with pytest.raises(KafkaException) as e:
        a.delete_topics([topic])[topic].result(TIMEOUT_S)
    assert e.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_topic_admin_survives_restart(broker):
    a = admin(broker.bootstrap)
    create_topic(broker.bootstrap, "kept", partitions=1, config={"retention.ms": "1234"})
    create_topic(broker.bootstrap, "dropped", partitions=1)
    a.create_partitions([NewPartitions("kept", 3)])["kept"].result(TIMEOUT_S)
    a.delete_topics(["dropped"])["dropped"].result(TIMEOUT_S)
    del a
    broker.restart(kill=True)
    a = admin(broker.bootstrap)
    md = a.list_topics(timeout=10)
    assert "dropped" not in md.topics, "a deleted topic came back after a restart"
    assert sorted(md.topics["kept"].partitions) == [0, 1, 2]
    assert describe_topic_config(a, "kept")["retention.ms"].value == "1234"


def test_recreated_topic_starts_empty(broker):
    a = admin(broker.bootstrap)
    create_topic(broker.bootstrap, "reborn", partitions=2)
    produce_all(broker.bootstrap, "reborn", [Rec(p, None, b"old", [], BASE_TS) for p in (0, 1, 0)])
    a.delete_topics(["reborn"])["reborn"].result(TIMEOUT_S)
    wait_until(lambda: "reborn" not in a.list_topics(timeout=10).topics, "topic deleted")
    create_topic(broker.bootstrap, "reborn", partitions=1)
    recs = [Rec(0, None, f"new{i}".encode(), [], BASE_TS + i) for i in range(2)]
    produce_all(broker.bootstrap, "reborn", recs)
    assert_same_records(recs, confluent_consume(broker.bootstrap, "reborn", 2))
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    try:
        assert c.get_watermark_offsets(TopicPartition("reborn", 0), timeout=10) == (0, 2)
    finally:
        c.close()


def test_clients_cannot_write_internal_topics(broker):
    """Like Kafka, a client's Produce to __consumer_offsets is refused (INVALID_TOPIC_EXCEPTION),
    so nobody can forge committed offsets or group state."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0})
    errs = []
    p.produce("__consumer_offsets", key=b"\x00\x01forged", value=b"\xff" * 20, partition=0,
              on_delivery=lambda err, msg: errs.append(err))
    assert p.flush(TIMEOUT_S) == 0
    assert errs[0] is not None and errs[0].code() == KafkaError.TOPIC_EXCEPTION, \
        f"produce to __consumer_offsets answered {errs[0]}"


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=10).result(TIMEOUT_S)
    assert [(n.id, n.host, n.port) for n in desc.nodes] == [(1, "127.0.0.1", broker.port)]
    assert desc.controller.id == 1
    assert desc.cluster_id
    del a  # its connection would log the refused reconnects while the broker restarts
    broker.restart()
    a = admin(broker.bootstrap)
    desc2 = a.describe_cluster(request_timeout=10).result(TIMEOUT_S)
    assert desc2.cluster_id == desc.cluster_id, "cluster id must survive a restart"


def test_offsets_for_times_and_list_offsets(broker):
    topic = create_topic(broker.bootstrap, "by-time", partitions=1)
    recs = [Rec(0, None, f"v{i}".encode(), [], BASE_TS + 1000 * i) for i in range(10)]
    produce_all(broker.bootstrap, topic, recs)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    try:
        def at(ts):
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
            assert tp.error is None, tp.error
            return tp.offset
        assert at(BASE_TS - 5) == 0
        assert at(BASE_TS) == 0
        assert at(BASE_TS + 1) == 1
        assert at(BASE_TS + 4500) == 5
        assert at(BASE_TS + 9000) == 9
        assert at(BASE_TS + 9001) == -1, "past the last timestamp: end (-1)"
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10) == (0, 10)
    finally:
        c.close()

    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    for spec, want in [(OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 10),
                       (OffsetSpec.for_timestamp(BASE_TS + 2500), 3), (OffsetSpec.max_timestamp(), 9)]:
        res = a.list_offsets({tp: spec})[tp].result(TIMEOUT_S)
        assert res.offset == want, f"{spec}: got {res.offset}, want {want}"
    res = a.list_offsets({tp: OffsetSpec.max_timestamp()})[tp].result(TIMEOUT_S)
    assert res.timestamp == BASE_TS + 9000


def test_offsets_for_times_inside_compressed_batch(broker):
    """The answer is the record's own offset, not the base offset of its (compressed) batch."""
    topic = create_topic(broker.bootstrap, "by-time-zstd")
    recs = [Rec(0, None, f"v{i}".encode(), [], BASE_TS + 10 * i) for i in range(100)]
    produce_all(broker.bootstrap, topic, recs, **{"compression.type": "zstd", "linger.ms": 100})
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times"})
    try:
        for i in (0, 1, 50, 99):
            (tp,) = c.offsets_for_times([TopicPartition(topic, 0, BASE_TS + 10 * i - 5)], timeout=10)
            assert tp.offset == i, f"timestamp of record {i}: got offset {tp.offset}"
    finally:
        c.close()


def test_compacted_topic_config_accepted(broker):
    a = admin(broker.bootstrap)
    topic = "compacted"
    a.create_topics([NewTopic(topic, 1, config={
        "cleanup.policy": "compact", "min.compaction.lag.ms": "0", "delete.retention.ms": "1000",
        "min.cleanable.dirty.ratio": "0.01", "segment.ms": "100"})])[topic].result(TIMEOUT_S)
    cfg = describe_topic_config(a, topic)
    assert cfg["cleanup.policy"].value == "compact"
    assert cfg["delete.retention.ms"].value == "1000"
    recs = [Rec(0, f"k{i % 3}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(9)]
    reports = produce_all(broker.bootstrap, topic, recs)
    assert [off for _, off in reports] == list(range(9))
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact,delete", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res])[res].result(TIMEOUT_S)
    assert describe_topic_config(a, topic)["cleanup.policy"].value == "compact,delete"


def read_from_start(bootstrap, topic, partition=0):
    """Every record of a partition from its log start, as (offset, key, value)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{topic}-{time.time()}",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S)
        c.assign([TopicPartition(topic, partition, low)])
        out, deadline = [], time.time() + TIMEOUT_S
        while time.time() < deadline and (not out or out[-1][0] < high - 1) and low < high:
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out.append((m.offset(), m.key(), m.value()))
        return low, high, out
    finally:
        c.close()


def test_compaction_keeps_the_latest_value_per_key(make_broker):
    b = make_broker(args=["--log-cleaner-interval-ms", "200"])
    a = admin(b.bootstrap)
    topic = "compacted-latest"
    a.create_topics([NewTopic(topic, 1, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})])[
        topic].result(TIMEOUT_S)
    recs = [Rec(0, f"k{k}".encode(), f"v{r}-k{k}".encode(), [], BASE_TS + r * 10 + k) for r in range(3) for k in range(5)]
    recs.append(Rec(0, b"k2", None, [], BASE_TS + 99))  # a tombstone for k2
    reports = produce_all(b.bootstrap, topic, recs)
    latest = {}
    for rec, (_, off) in zip(recs, reports):
        latest[rec.key] = (off, rec.key, rec.value)
    want = sorted(latest.values())

    def compacted():
        _, _, got = read_from_start(b.bootstrap, topic)
        return got if got == want else None

    # The broker uploads WAL data about once a second and cleans every 200 ms.
    got = wait_until(compacted, timeout=30, what="the log compacted to the newest record per key")
    assert [o for o, _, _ in got] == [o for o, _, _ in want], "offsets are the original ones (compaction leaves gaps)"
    # New records after compaction keep their place.
    more = produce_all(b.bootstrap, topic, [Rec(0, b"k1", b"late", [], BASE_TS + 500)])
    assert more[0][1] == len(recs), "offsets never move back"


def test_retention_deletes_records_older_than_retention_ms(make_broker):
    b = make_broker(args=["--log-cleaner-interval-ms", "200"])
    a = admin(b.bootstrap)
    topic = "retention-time"
    a.create_topics([NewTopic(topic, 1, config={"retention.ms": "3600000"})])[topic].result(TIMEOUT_S)
    now_ms = int(time.time() * 1000)
    old = [Rec(0, b"old", f"o{i}".encode(), [], now_ms - 2 * 3600_000 + i) for i in range(5)]
    new = [Rec(0, b"new", f"n{i}".encode(), [], now_ms + i) for i in range(3)]
    produce_all(b.bootstrap, topic, old)
    produce_all(b.bootstrap, topic, new)

    def trimmed():
        low, high, got = read_from_start(b.bootstrap, topic)
        return (low, high, got) if low >= 5 else None

    low, high, got = wait_until(trimmed, timeout=30, what="records older than retention.ms deleted")
    assert (low, high) == (5, 8)
    assert [v for _, _, v in got] == [b"n0", b"n1", b"n2"], "the new records stay"


# --- consumer groups (need the group coordinator) ---------------------------------------------

def group_consumer(bootstrap, group, **extra):
    return Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000, "heartbeat.interval.ms": 300, "fetch.wait.max.ms": 100,
        "auto.commit.interval.ms": 200, "topic.metadata.refresh.interval.ms": 1000, **extra})


class Flow:
    """A producer sending sequence-numbered records in the background until stopped."""

    def __init__(self, bootstrap, topic, partitions):
        self.acked = {}  # value -> (partition, offset)
        self.stop_flag = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self.run, args=(bootstrap, topic, partitions), daemon=True)

    def run(self, bootstrap, topic, partitions):
        try:
            p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})

            def cb(err, msg):
                if err is None:
                    self.acked[msg.value()] = (msg.partition(), msg.offset())

            i = 0
            while not self.stop_flag.is_set():
                p.produce(topic, value=f"seq-{i:07d}".encode(), partition=i % partitions, on_delivery=cb)
                i += 1
                p.poll(0.002)
            assert p.flush(TIMEOUT_S) == 0
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.stop_flag.set()
        self.thread.join(TIMEOUT_S + 5)
        if self.error:
            raise self.error


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_consumer_group_of_three_with_rebalances(broker, assignor):
    require_group_coordinator(broker.bootstrap)
    partitions = 6
    topic = create_topic(broker.bootstrap, "group-flow", partitions=partitions)
    group = f"g-{assignor}"
    flow = Flow(broker.bootstrap, topic, partitions)
    flow.thread.start()
    members = {}
    seen = {}  # value -> list of member names that consumed it

    def poll_all(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for name, c in list(members.items()):
                msg = c.poll(0.02)
                if msg is not None:
                    if msg.error():
                        raise KafkaException(msg.error())
                    seen.setdefault(msg.value(), []).append(name)

    def assignment_of(c):
        return {tp.partition for tp in c.assignment()}

    def settled(expected_members):
        def check():
            poll_all(0.2)
            sets = [assignment_of(c) for c in members.values()]
            union = set().union(*sets)
            disjoint = sum(len(s) for s in sets) == len(union)
            return (len(members) == expected_members and union == set(range(partitions)) and disjoint
                    and all(sets))
        wait_until(check, f"{expected_members} members sharing {partitions} partitions "
                          f"(now {[sorted(assignment_of(c)) for c in members.values()]})", timeout=30)

    try:
        for name in ["a", "b", "c"]:
            c = group_consumer(broker.bootstrap, group, **{"partition.assignment.strategy": assignor})
            c.subscribe([topic])
            members[name] = c
            settled(len(members))
            poll_all(0.5)
        sizes = sorted(len(assignment_of(c)) for c in members.values())
        assert sizes == [2, 2, 2], f"3 members on 6 partitions should get 2 each, got {sizes}"

        members.pop("a").close()  # leaves the group (LeaveGroup)
        settled(2)
        poll_all(0.5)
        members.pop("b").close()
        settled(1)
    finally:
        flow.stop()
    try:
        wait_until(lambda: (poll_all(0.2), set(flow.acked) <= set(seen))[1],
                   "the last member to consume every acknowledged record")
    finally:
        for c in members.values():
            c.close()
    assert len(flow.acked) > 100
    missing = set(flow.acked) - set(seen)
    assert not missing, f"{len(missing)} acknowledged records never consumed"


CRASHING_MEMBER = """
import sys, time
from confluent_kafka import Consumer
c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2], "session.timeout.ms": 6000,
              "heartbeat.interval.ms": 300, "auto.offset.reset": "earliest"})
c.subscribe([sys.argv[3]])
while True:
    c.poll(0.1)
    print(",".join(str(tp.partition) for tp in c.assignment()), flush=True)
"""


def test_crashed_member_is_expired(broker, tmp_path):
    """A member that dies without LeaveGroup is expired after session.timeout.ms and its
    partitions go to the survivors."""
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "crash", partitions=4)
    group = "crash-group"
    survivor = group_consumer(broker.bootstrap, group)
    survivor.subscribe([topic])
    out = open(tmp_path / "member.out", "w+")
    doomed = subprocess.Popen([sys.executable, "-c", CRASHING_MEMBER, broker.bootstrap, group, topic],
                              stdout=out, stderr=subprocess.STDOUT)
    try:
        def both_assigned():
            survivor.poll(0.1)
            lines = (tmp_path / "member.out").read_text().split()
            theirs = set(map(int, lines[-1].split(","))) if lines and lines[-1] else set()
            mine = {tp.partition for tp in survivor.assignment()}
            return len(mine) == 2 and len(theirs) == 2 and mine | theirs == {0, 1, 2, 3}
        wait_until(both_assigned, "two members with two partitions each", timeout=30)
    finally:
        doomed.kill()
        doomed.wait()
        out.close()
    try:
        produce_all(broker.bootstrap, topic, [Rec(p, None, f"after-{p}".encode(), [], BASE_TS) for p in range(4)])
        got = set()

        def survivor_has_all():
            msg = survivor.poll(0.1)
            if msg is not None and not msg.error():
                got.add(msg.value())
            return len(survivor.assignment()) == 4 and len([v for v in got if v.startswith(b"after-")]) == 4
        wait_until(survivor_has_all, "the survivor to take over the dead member's partitions", timeout=30)
    finally:
        survivor.close()


@pytest.mark.parametrize("kill", [False, True], ids=["sigterm", "sigkill"])
def test_committed_offsets_survive_restart(broker, kill):
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "resume", partitions=2)
    recs = [Rec(i % 2, None, f"v{i}".encode(), [], BASE_TS + i) for i in range(20)]
    produce_all(broker.bootstrap, topic, recs)
    group = "resumer"

    c = group_consumer(broker.bootstrap, group, **{"enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < 8 and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and not msg.error() and msg.offset() < 4:
            got.append(msg)
    assert len(got) == 8, f"consumed {len(got)} of the first 8 records via the group"
    committed = [TopicPartition(topic, p, 4, metadata=f"checkpoint-{p}") for p in (0, 1)]
    c.commit(offsets=committed, asynchronous=False)
    assert [(tp.offset, tp.metadata) for tp in c.committed(committed, timeout=10)] == [
        (4, "checkpoint-0"), (4, "checkpoint-1")]
    c.close()

    broker.restart(kill=kill)

    c = group_consumer(broker.bootstrap, group, **{"enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in (0, 1)], timeout=10)
        assert [(tp.offset, tp.metadata) for tp in tps] == [(4, "checkpoint-0"), (4, "checkpoint-1")], \
            "committed offsets (or their metadata) lost across the restart"
        c.subscribe([topic])
        first = {}
        deadline = time.monotonic() + TIMEOUT_S
        while len(first) < 2 and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                first.setdefault(msg.partition(), msg.offset())
        assert first == {0: 4, 1: 4}, f"resumed at {first}, want offset 4 on both partitions"
    finally:
        c.close()


def test_group_admin(broker):
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "group-admin", partitions=2)
    produce_all(broker.bootstrap, topic, [Rec(p, None, b"x", [], BASE_TS) for p in (0, 1)])
    group = "admin-group"
    c = group_consumer(broker.bootstrap, group, **{"enable.auto.commit": False})
    c.subscribe([topic])
    wait_until(lambda: c.poll(0.1) is not None and len(c.assignment()) == 2, "assignment")
    c.commit(offsets=[TopicPartition(topic, 0, 1), TopicPartition(topic, 1, 1)], asynchronous=False)
    a = admin(broker.bootstrap)
    try:
        listed = a.list_consumer_groups(request_timeout=10).result(TIMEOUT_S)
        assert group in {g.group_id for g in listed.valid}
        desc = a.describe_consumer_groups([group], request_timeout=10)[group].result(TIMEOUT_S)
        assert desc.state == ConsumerGroupState.STABLE
        assert len(desc.members) == 1
        assert {tp.partition for tp in desc.members[0].assignment.topic_partitions} == {0, 1}
    finally:
        c.close()
    offs = a.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(TIMEOUT_S)
    assert sorted((tp.partition, tp.offset) for tp in offs.topic_partitions) == [(0, 1), (1, 1)]
    wait_until(lambda: a.describe_consumer_groups([group])[group].result(TIMEOUT_S).state
               == ConsumerGroupState.EMPTY, "group empty after the member left")
    a.delete_consumer_groups([group], request_timeout=10)[group].result(TIMEOUT_S)
    listed = a.list_consumer_groups(request_timeout=10).result(TIMEOUT_S)
    assert group not in {g.group_id for g in listed.valid}
