"""aiokafka 0.14 (asyncio, its own protocol code): data path, admin API, ListOffsets,
consumer group offsets."""

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import codec as aio_codec
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from support import (BASE_TS, CODECS, TIMEOUT_S, Rec, assert_same_records, compressible_records,
                     confluent_consume, create_topic, random_bytes, require_group_coordinator,
                     sample_records)

CODEC_SUPPORT = {"gzip": lambda: True, "snappy": aio_codec.has_snappy, "lz4": aio_codec.has_lz4,
                 "zstd": aio_codec.has_zstd}

# Kafka error codes checked in raw admin responses.
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_CONFIG = 40
UNKNOWN_TOPIC_OR_PARTITION = 3


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def produce_all(bootstrap, topic, recs, **conf):
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10000, **conf)
    await p.start()
    try:
        futures = [await p.send(topic, key=r.key, value=r.value, headers=r.headers,
                                partition=r.partition, timestamp_ms=r.timestamp) for r in recs]
        metas = [await asyncio.wait_for(f, TIMEOUT_S) for f in futures]
        return [(m.partition, m.offset) for m in metas]
    finally:
        await p.stop()


def from_aiokafka(m):
    return Rec(partition=m.partition, key=m.key, value=m.value, headers=list(m.headers),
               timestamp=m.timestamp, timestamp_type=m.timestamp_type + 1, offset=m.offset)


async def consume(bootstrap, topic, count, partitions, timeout=TIMEOUT_S):
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         fetch_max_wait_ms=100, request_timeout_ms=10000)
    await c.start()
    try:
        c.assign([TopicPartition(topic, p) for p in partitions])
        await c.seek_to_beginning()
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            assert time.monotonic() < deadline, f"consumed {len(out)} of {count} records in {timeout}s"
            for recs in (await c.getmany(timeout_ms=200)).values():
                out.extend(from_aiokafka(m) for m in recs)
        return out
    finally:
        await c.stop()


def test_roundtrip_keys_headers_timestamps(broker):
    topic = create_topic(broker.bootstrap, "roundtrip", partitions=3)
    recs = sample_records(partitions=3, header_none_values=False)

    async def go():
        meta = await produce_all(broker.bootstrap, topic, recs)
        next_offset = {}
        for r, (p, off) in zip(recs, meta):
            assert (p, off) == (r.partition, next_offset.get(p, 0))
            next_offset[p] = off + 1
        return await consume(broker.bootstrap, topic, len(recs), range(3))

    got = run(go())
    assert all(g.timestamp_type == 1 for g in got)
    assert_same_records(recs, got)
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs)))


@pytest.mark.parametrize("codec", CODECS)
def test_compression(broker, codec):
    if codec != "none" and not CODEC_SUPPORT[codec]():
        pytest.fail(f"aiokafka cannot use {codec}: install cramjam (pip install -r e2e/requirements.txt)",
                    pytrace=False)
    topic = create_topic(broker.bootstrap, f"codec-{codec}", partitions=2)
    recs = compressible_records()

    async def go():
        await produce_all(broker.bootstrap, topic, recs, linger_ms=50,
                          compression_type=None if codec == "none" else codec)
        return await consume(broker.bootstrap, topic, len(recs), range(2))

    assert_same_records(recs, run(go()))
    assert_same_records(recs, confluent_consume(broker.bootstrap, topic, len(recs)))


def test_one_mib_messages(broker):
    topic = create_topic(broker.bootstrap, "large", config={"max.message.bytes": str(4 << 20)})
    recs = [Rec(0, f"big-{i}".encode(), random_bytes(1 << 20), [("i", bytes([i]))], BASE_TS + i)
            for i in range(4)]

    async def go():
        await produce_all(broker.bootstrap, topic, recs, max_request_size=4 << 20)
        return await consume(broker.bootstrap, topic, len(recs), [0])

    assert_same_records(recs, run(go()))


def test_batch_over_max_message_bytes_is_refused(broker):
    topic = create_topic(broker.bootstrap, "too-large")

    async def go():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, max_request_size=4 << 20)
        await p.start()
        try:
            with pytest.raises(MessageSizeTooLargeError):
                await p.send_and_wait(topic, value=random_bytes(1 << 20), partition=0)
        finally:
            await p.stop()

    run(go())


def test_idempotent_producer(broker):
    topic = create_topic(broker.bootstrap, "idempotent", partitions=3)
    recs = [Rec(i % 3, f"k{i}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(2000)]

    async def go():
        meta = await produce_all(broker.bootstrap, topic, recs, enable_idempotence=True, acks="all",
                                 linger_ms=2, max_batch_size=2048)
        for p in range(3):
            offs = [off for (part, off) in meta if part == p]
            assert offs == list(range(len(offs))), f"partition {p}: offsets not dense and ordered"
        return await consume(broker.bootstrap, topic, len(recs), range(3))

    assert_same_records(recs, run(go()))


def errors_of(response):
    """(name, error_code) pairs of a raw admin response, whatever its version calls them."""
    obj = response.to_object()
    for key in ("topic_errors", "topic_error_codes", "topics", "resources", "results"):
        if key in obj:
            return [(e.get("topic") or e.get("name") or e.get("resource_name"), e["error_code"])
                    for e in obj[key]]
    raise AssertionError(f"no per-topic errors in {obj}")


async def topic_configs(a, topic):
    (resp,) = await a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    (res,) = resp.to_object()["resources"]
    assert res["error_code"] == 0, res
    return {e["config_names"]: e["config_value"] for e in res["config_entries"]}


def test_topic_admin(broker):
    async def go():
        a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        await a.start()
        try:
            topic = "admin-topic"
            new = NewTopic(topic, 2, 1, topic_configs={"retention.ms": "3600000"})
            assert errors_of(await a.create_topics([new])) == [(topic, 0)]
            assert errors_of(await a.create_topics([new])) == [(topic, TOPIC_ALREADY_EXISTS)]

            (desc,) = await a.describe_topics([topic])
            assert desc["error_code"] == 0
            assert sorted(p["partition"] for p in desc["partitions"]) == [0, 1]

            cfg = await topic_configs(a, topic)
            assert (cfg["retention.ms"], cfg["cleanup.policy"]) == ("3600000", "delete")

            (resp,) = await a.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})])
            assert errors_of(resp) == [(topic, 0)]
            assert (await topic_configs(a, topic))["retention.ms"] == "7200000"
            (resp,) = await a.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "soon"})])
            assert errors_of(resp) == [(topic, INVALID_CONFIG)]

            await a.create_partitions({topic: NewPartitions(3)})
            (desc,) = await a.describe_topics([topic])
            assert len(desc["partitions"]) == 3
            assert await produce_all(broker.bootstrap, topic, [Rec(2, b"k", b"new", [], BASE_TS)]) == [(2, 0)]
            with pytest.raises(KafkaError) as e:
                await a.create_partitions({topic: NewPartitions(1)})
            assert e.value.errno == INVALID_PARTITIONS

            assert errors_of(await a.delete_topics([topic])) == [(topic, 0)]
            assert topic not in await a.list_topics()
            assert errors_of(await a.delete_topics([topic])) == [(topic, UNKNOWN_TOPIC_OR_PARTITION)]
        finally:
            await a.close()

    run(go())


def test_offsets_for_times(broker):
    topic = create_topic(broker.bootstrap, "by-time", partitions=1)
    recs = [Rec(0, None, f"v{i}".encode(), [], BASE_TS + 1000 * i) for i in range(10)]
    tp = TopicPartition(topic, 0)

    async def go():
        await produce_all(broker.bootstrap, topic, recs)
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, request_timeout_ms=10000)
        await c.start()
        try:
            for ts, want in [(BASE_TS - 5, 0), (BASE_TS, 0), (BASE_TS + 1, 1), (BASE_TS + 4500, 5),
                             (BASE_TS + 9000, 9)]:
                got = (await c.offsets_for_times({tp: ts}))[tp]
                assert got is not None and (got.offset, got.timestamp) == (want, BASE_TS + 1000 * want), (ts, got)
            assert (await c.offsets_for_times({tp: BASE_TS + 9001}))[tp] is None
            assert await c.beginning_offsets([tp]) == {tp: 0}
            assert await c.end_offsets([tp]) == {tp: 10}
        finally:
            await c.stop()

    run(go())


def test_compacted_topic_config_accepted(broker):
    topic = "compacted"
    recs = [Rec(0, f"k{i % 3}".encode(), f"v{i}".encode(), [], BASE_TS + i) for i in range(9)]

    async def go():
        a = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        await a.start()
        try:
            new = NewTopic(topic, 1, 1, topic_configs={"cleanup.policy": "compact"})
            assert errors_of(await a.create_topics([new])) == [(topic, 0)]
            assert (await topic_configs(a, topic))["cleanup.policy"] == "compact"
        finally:
            await a.close()
        return await produce_all(broker.bootstrap, topic, recs)

    assert [off for _, off in run(go())] == list(range(9))


def test_group_commit_and_resume(broker):
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "resume", partitions=2)
    tps = [TopicPartition(topic, p) for p in (0, 1)]

    def member():
        return AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="aio-group",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                session_timeout_ms=6000, heartbeat_interval_ms=300,
                                fetch_max_wait_ms=100, request_timeout_ms=10000)

    async def first_pass():
        await produce_all(broker.bootstrap, topic, [Rec(i % 2, None, f"v{i}".encode(), [], BASE_TS + i)
                                                    for i in range(20)])
        c = member()
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + TIMEOUT_S
            while len(got) < 20 and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=200)).values():
                    got.extend(recs)
            assert sorted((m.partition, m.offset) for m in got) == [(p, o) for p in (0, 1) for o in range(10)]
            await c.commit({tp: 7 for tp in tps})
        finally:
            await c.stop()

    async def second_pass():
        c = member()
        await c.start()
        try:
            assert [await c.committed(tp) for tp in tps] == [7, 7]
            first = {}
            deadline = time.monotonic() + TIMEOUT_S
            while len(first) < 2 and time.monotonic() < deadline:
                for tp, recs in (await c.getmany(timeout_ms=200)).items():
                    first.setdefault(tp.partition, recs[0].offset)
            assert first == {0: 7, 1: 7}
        finally:
            await c.stop()

    run(first_pass())
    broker.restart(kill=False)
    run(second_pass())


def test_group_rebalance_two_members(broker):
    """aiokafka's own group protocol: a second member joins (partitions split), then leaves
    (the first takes them all back)."""
    require_group_coordinator(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "aio-rebalance", partitions=4)

    def parts(c):
        return sorted(tp.partition for tp in c.assignment())

    async def until(members, check, what):
        deadline = time.monotonic() + TIMEOUT_S
        while not check():
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {[parts(m) for m in members]}"
            for m in members:
                await m.getmany(timeout_ms=50)

    async def go():
        def member():
            return AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="aio-rebalance",
                                    session_timeout_ms=6000, heartbeat_interval_ms=300,
                                    request_timeout_ms=10000)
        a = member()
        await a.start()
        b = member()
        try:
            await until([a], lambda: parts(a) == [0, 1, 2, 3], "a alone owning all 4")
            await b.start()
            await until([a, b], lambda: len(parts(a)) == 2 and sorted(parts(a) + parts(b)) == [0, 1, 2, 3],
                        "an even split")
            await b.stop()
            await until([a], lambda: parts(a) == [0, 1, 2, 3], "a owning all 4 again")
        finally:
            await b.stop()
            await a.stop()

    run(go())
