"""Topic links (issue 7): a topic of another Kafka cluster (ours, and separately Tansu) is
mirrored into our broker at the same offsets, byte for byte; the mirror refuses produce until it
is promoted, and then continues the source's offset sequence. The bytes are compared with a raw
Fetch on both sides, so nothing a client library decodes can hide a difference."""

import time
import urllib.request

import pytest
from confluent_kafka import KafkaError, Producer

from brokers import KafkaProcess
from linkcheck import admin, batches, produce, wait_for


@pytest.fixture(params=["automq", "tansu"])
def source(request, tmp_path):
    b = KafkaProcess(request.param, tmp_path / f"source-{request.param}").start()
    yield b
    b.kill()


@pytest.fixture
def dest(tmp_path):
    b = KafkaProcess("automq", tmp_path / "dest").start()
    yield b
    b.kill()


def link_body(source, promote=()):
    return {"source": {"bootstrap_servers": source.bootstrap, "security_protocol": "PLAINTEXT"},
            "topics": [{"name": "orders"}, {"pattern": "pay\\..*"}],
            "start_from": "earliest", "promote": [{"topic": t, "force": False} for t in promote]}


def test_mirror_is_byte_identical_refuses_produce_and_continues_after_promotion(source, dest):
    partitions = 3
    source.create_topic("orders", partitions)
    source.create_topic("pay.eu", 1)
    source.create_topic("ignored", 1)
    errors, _ = produce(source.bootstrap, "orders", 600, partitions)
    assert not errors, errors
    errors, _ = produce(source.bootstrap, "pay.eu", 50, 1, prefix="pay")
    assert not errors, errors

    status, body = admin(dest, "PUT", "/admin/v1/links/legacy", link_body(source))
    assert status == 200, body

    def caught_up():
        status, state = admin(dest, "GET", "/admin/v1/links/legacy")
        assert status == 200, state
        topics = {t["topic"]: t for t in state["topics"]}
        ok = set(topics) == {"orders", "pay.eu"} and all(t["lag"] == 0 and t["state"] == "mirroring" for t in topics.values())
        ok = ok and all(len(t["partition_states"]) == t["partitions"] and
                        all(p["source_high_watermark"] >= 0 for p in t["partition_states"]) for t in topics.values())
        return state if ok else None

    state = wait_for("the mirror to catch up", caught_up)
    assert {t["topic"]: t["partitions"] for t in state["topics"]} == {"orders": 3, "pay.eu": 1}
    with urllib.request.urlopen(dest.http + "/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert 'automq_broker_link_partitions{link="legacy",state="mirroring"} 4' in metrics, metrics[-2000:]
    assert 'automq_broker_link_lag_records{link="legacy",topic="orders"} 0' in metrics
    assert 'automq_broker_link_copied_bytes_total{link="legacy"}' in metrics

    # Every offset's bytes: the same batches, at the same offsets, on both sides.
    total = 0
    for topic, n in (("orders", partitions), ("pay.eu", 1)):
        for p in range(n):
            src, src_hwm = batches(source.bootstrap, topic, p)
            dst, dst_hwm = batches(dest.bootstrap, topic, p)
            assert dst_hwm == src_hwm, f"{topic}-{p}: high watermark {dst_hwm} != source {src_hwm}"
            assert [b for b, _ in dst] == [b for b, _ in src], f"{topic}-{p}: batch offsets differ"
            for (base, a), (_, b) in zip(src, dst):
                assert a == b, f"{topic}-{p}: batch at {base} differs"
            total += src_hwm
    assert total == 650

    # A mirror is read-only: Kafka's INVALID_REQUEST, not retried.
    p = Producer({"bootstrap.servers": dest.bootstrap, "message.timeout.ms": 10000})
    failures = []
    p.produce("orders", b"too early", partition=0, on_delivery=lambda err, _m: failures.append(err))
    p.flush(15)
    assert failures and failures[0] is not None and failures[0].code() == KafkaError.INVALID_REQUEST, failures

    # Promote: the topic becomes ordinary and continues the source's offsets.
    ends = {i: batches(dest.bootstrap, "orders", i)[1] for i in range(partitions)}
    status, body = admin(dest, "PUT", "/admin/v1/links/legacy", link_body(source, promote=["orders"]))
    assert status == 200, body

    def promoted():
        _, state = admin(dest, "GET", "/admin/v1/links/legacy")
        return {t["topic"]: t["state"] for t in state["topics"]}.get("orders") == "promoted"

    wait_for("the promotion", promoted)
    errors, offsets = produce(dest.bootstrap, "orders", 30, partitions, prefix="after")
    assert not errors, errors
    for part, end in ends.items():
        mine = sorted(o for p_, o in offsets if p_ == part)
        assert mine == list(range(end, end + len(mine))), f"partition {part}: {mine[:3]}... after end {end}"
    # pay.eu is still a mirror.
    _, state = admin(dest, "GET", "/admin/v1/links/legacy")
    assert {t["topic"]: t["state"] for t in state["topics"]}["pay.eu"] == "mirroring"

    # The link cannot go while a mirror follows it, unless forced: then pay.eu becomes ordinary.
    status, body = admin(dest, "DELETE", "/admin/v1/links/legacy")
    assert status == 409 and "pay.eu" in body["error"], body
    assert admin(dest, "DELETE", "/admin/v1/links/legacy?force=true")[0] == 200
    assert admin(dest, "GET", "/admin/v1/links/legacy")[0] == 404
    end = batches(dest.bootstrap, "pay.eu", 0)[1]
    errors, offsets = wait_for("pay.eu to take produce", lambda: (lambda r: r if not r[0] else None)(
        produce(dest.bootstrap, "pay.eu", 5, 1, prefix="own")))
    assert sorted(o for _, o in offsets) == list(range(end, end + 5))


def test_link_errors_are_clear(dest):
    status, body = admin(dest, "PUT", "/admin/v1/links/bad", {
        "source": {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "SASL_SSL"},
        "topics": [{"name": "x"}]})
    assert status == 400 and "sasl_mechanism must be" in body["error"], body
    status, body = admin(dest, "PUT", "/admin/v1/links/bad", {
        "source": {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "PLAINTEXT"},
        "topics": [{"pattern": "("}]})
    assert status == 400 and "pattern" in body["error"], body
    assert admin(dest, "GET", "/admin/v1/links/none")[0] == 404
    assert admin(dest, "DELETE", "/admin/v1/links/none")[0] == 404


def test_an_unreachable_source_shows_and_recovers(tmp_path, dest):
    source = KafkaProcess("automq", tmp_path / "source").start()
    try:
        source.create_topic("orders", 1)
        assert not produce(source.bootstrap, "orders", 100, 1)[0]
        assert admin(dest, "PUT", "/admin/v1/links/l", link_body(source))[0] == 200

        def lag_zero():
            _, s = admin(dest, "GET", "/admin/v1/links/l")
            return s["topics"] and s["topics"][0]["lag"] == 0 and s["topics"][0]["partition_states"][0]["next_offset"] == 100

        wait_for("the first copy", lag_zero)
        source.kill()

        def failed():
            _, s = admin(dest, "GET", "/admin/v1/links/l")
            t = s["topics"][0]
            return t["state"] == "failed" and t["last_error"]

        error = wait_for("the error to show", failed, timeout=90)
        assert "127.0.0.1" in error or "connect" in error, error

        source.start()
        assert not produce(source.bootstrap, "orders", 40, 1, prefix="later")[0]

        def resumed():
            _, s = admin(dest, "GET", "/admin/v1/links/l")
            t = s["topics"][0]
            return t["state"] == "mirroring" and t["partition_states"][0]["next_offset"] == 140

        wait_for("the copy to resume", resumed, timeout=90)
        src, _ = batches(source.bootstrap, "orders", 0)
        dst, _ = batches(dest.bootstrap, "orders", 0)
        assert dst == src
    finally:
        source.kill()


def committed(bootstrap, group, topic, partitions):
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    from confluent_kafka.admin import AdminClient
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    client = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the answer is in
    result = client.list_consumer_group_offsets([request])[group].result(10)
    return {tp.partition: tp.offset for tp in result.topic_partitions}


def test_a_consumer_group_moves_to_the_mirror_without_gap_or_duplicate(tmp_path, dest):
    from confluent_kafka import Consumer, TopicPartition
    source = KafkaProcess("automq", tmp_path / "source").start()
    try:
        partitions = 2
        source.create_topic("orders", partitions)
        assert not produce(source.bootstrap, "orders", 400, partitions)[0]
        # The group consumes part of the topic on the source and stops there.
        c = Consumer({"bootstrap.servers": source.bootstrap, "group.id": "billing", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        c.subscribe(["orders"])
        seen = 0
        while seen < 150:
            m = c.poll(5)
            if m is not None and not m.error():
                seen += 1
        c.commit(asynchronous=False)
        c.close()
        at_source = committed(source.bootstrap, "billing", "orders", partitions)
        assert sum(o for o in at_source.values() if o >= 0) == 150, at_source
        # Where the group continues: its committed offset, else (never committed) the start.
        start = {p: max(o, 0) for p, o in at_source.items()}

        body = link_body(source)
        body["consumer_groups"] = [{"pattern": "bill.*"}]
        assert admin(dest, "PUT", "/admin/v1/links/legacy", body)[0] == 200
        wait_for("the group's offsets to sync",
                 lambda: committed(dest.bootstrap, "billing", "orders", partitions) == at_source, timeout=90)

        # The source keeps taking writes while consumers move.
        assert not produce(source.bootstrap, "orders", 100, partitions, prefix="mid")[0]
        ends = {p: batches(source.bootstrap, "orders", p)[1] for p in range(partitions)}
        wait_for("the mirror to catch up", lambda: all(batches(dest.bootstrap, "orders", p)[1] == ends[p] for p in range(partitions)))

        c = Consumer({"bootstrap.servers": dest.bootstrap, "group.id": "billing", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        c.subscribe(["orders"])
        got = {p: [] for p in range(partitions)}
        deadline = time.time() + 60
        while sum(len(v) for v in got.values()) < sum(ends[p] - start[p] for p in range(partitions)):
            assert time.time() < deadline, {p: len(v) for p, v in got.items()}
            m = c.poll(1)
            if m is not None and not m.error():
                got[m.partition()].append(m.offset())
        # Drain anything extra (a duplicate would show here).
        extra = c.consume(num_messages=100, timeout=2)
        c.close()
        assert [m for m in extra if not m.error()] == []
        for p in range(partitions):
            assert got[p] == list(range(start[p], ends[p])), f"partition {p}: not exactly the rest of the log"
    finally:
        source.kill()


def test_producers_switched_first_through_forwarding_lose_nothing(tmp_path, dest):
    source = KafkaProcess("automq", tmp_path / "source").start()
    try:
        partitions = 2
        source.create_topic("orders", partitions)
        assert not produce(source.bootstrap, "orders", 100, partitions)[0]
        body = link_body(source)
        body["producer_forwarding"] = True
        assert admin(dest, "PUT", "/admin/v1/links/legacy", body)[0] == 200
        wait_for("the mirror topic", lambda: admin(dest, "GET", "/admin/v1/links/legacy")[1]["topics"])

        # The producer now writes to the destination (idempotent, acks=all): every ack is the
        # source's, and the records come back through the mirror at the same offsets.
        errors, acked = produce(dest.bootstrap, "orders", 300, partitions, prefix="switched")
        assert not errors, errors
        assert len(acked) == 300
        ends = {p: batches(source.bootstrap, "orders", p)[1] for p in range(partitions)}
        assert sum(ends.values()) == 400, ends
        for p, o in acked:
            assert o < ends[p]
        wait_for("the forwarded records to come back through the mirror",
                 lambda: all(batches(dest.bootstrap, "orders", p)[1] == ends[p] for p in range(partitions)))
        for p in range(partitions):
            assert batches(dest.bootstrap, "orders", p)[0] == batches(source.bootstrap, "orders", p)[0]
    finally:
        source.kill()


def test_a_mirror_starts_where_the_source_log_starts(tmp_path, dest):
    from confluent_kafka import TopicPartition
    from confluent_kafka.admin import AdminClient
    source = KafkaProcess("automq", tmp_path / "source").start()
    try:
        source.create_topic("orders", 1)
        assert not produce(source.bootstrap, "orders", 200, 1)[0]
        client = AdminClient({"bootstrap.servers": source.bootstrap})
        client.delete_records([TopicPartition("orders", 0, 120)])[TopicPartition("orders", 0, 120)].result(10)

        def earliest(bootstrap):
            from confluent_kafka import Consumer
            c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
            low, _ = c.get_watermark_offsets(TopicPartition("orders", 0), timeout=10)
            c.close()
            return low

        src_start = earliest(source.bootstrap)
        assert src_start > 0
        src_batches, src_end = batches(source.bootstrap, "orders", 0, src_start)
        assert admin(dest, "PUT", "/admin/v1/links/l", link_body(source))[0] == 200
        wait_for("the mirror", lambda: batches(dest.bootstrap, "orders", 0, src_start)[1] == src_end)
        wait_for("the mirror's log start to follow the source's", lambda: earliest(dest.bootstrap) == src_start)
        dst_batches, _ = batches(dest.bootstrap, "orders", 0, src_start)
        assert dst_batches == src_batches
    finally:
        source.kill()
