"""Transactions through a topic link (issue 7): a transactional producer on the source commits
some transactions and aborts others, interleaved with plain writes. The mirror copies every
batch (aborted data and control markers too) at the same offsets, so a `read_committed`
consumer of the mirror sees exactly what one of the source sees, and a `read_uncommitted` one
sees the aborted records as well, at the same offsets."""

import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from linkcheck import admin, wait_for


def read_all(bootstrap, topic, isolation, end):
    """(offset, value) of every record below `end` in partition 0."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{isolation}-{time.monotonic_ns()}",
                  "isolation.level": isolation, "enable.auto.commit": False, "enable.partition.eof": True})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                # Partition EOF: everything up to the (last stable) end is read.
                if c.position([TopicPartition(topic, 0)])[0].offset >= end:
                    break
                continue
            out.append((m.offset(), m.value()))
    finally:
        c.close()
    return out


def test_read_committed_on_a_mirror_sees_what_it_sees_on_the_source(make_broker):
    source = make_broker(name="source")
    target = make_broker(name="target")
    a = AdminClient({"bootstrap.servers": source.bootstrap})
    a.create_topics([NewTopic("payments", 1, 1)])["payments"].result(20)
    tx = Producer({"bootstrap.servers": source.bootstrap, "transactional.id": "payments-app"})
    tx.init_transactions(20)
    plain = Producer({"bootstrap.servers": source.bootstrap, "enable.idempotence": True})
    for round_ in range(6):
        tx.begin_transaction()
        for i in range(5):
            tx.produce("payments", f"tx{round_}-{i}".encode(), partition=0)
        tx.flush(20)
        plain.produce("payments", f"plain{round_}".encode(), partition=0)
        assert plain.flush(20) == 0
        if round_ % 2 == 0:
            tx.commit_transaction(20)
        else:
            tx.abort_transaction(20)
    watermarks = Consumer({"bootstrap.servers": source.bootstrap, "group.id": "watermarks"})
    end = watermarks.get_watermark_offsets(TopicPartition("payments", 0), timeout=10)[1]
    watermarks.close()
    assert end == 6 * 5 + 6 + 6, "records, plus one control batch per transaction"

    body = {"source": {"bootstrap_servers": source.bootstrap, "security_protocol": "PLAINTEXT"},
            "topics": [{"name": "payments"}]}
    assert admin(target, "PUT", "/admin/v1/links/legacy", body)[0] == 200
    wait_for("the mirror to reach the source's end", lambda: (lambda s: s["topics"] and s["topics"][0][
        "partition_states"][0]["next_offset"] == end)(admin(target, "GET", "/admin/v1/links/legacy")[1]))

    committed_source = read_all(source.bootstrap, "payments", "read_committed", end)
    committed_mirror = read_all(target.bootstrap, "payments", "read_committed", end)
    assert committed_mirror == committed_source
    values = [v.decode() for _, v in committed_mirror]
    assert [v for v in values if v.startswith("tx")] == [f"tx{r}-{i}" for r in (0, 2, 4) for i in range(5)]
    assert [v for v in values if v.startswith("plain")] == [f"plain{r}" for r in range(6)]

    everything_source = read_all(source.bootstrap, "payments", "read_uncommitted", end)
    everything_mirror = read_all(target.bootstrap, "payments", "read_uncommitted", end)
    assert everything_mirror == everything_source
    assert len(everything_mirror) == 6 * 5 + 6, "aborted records are copied too"
