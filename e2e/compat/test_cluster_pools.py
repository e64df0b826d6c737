"""One cluster, two broker pools (issue 13, broker side): an S3-WAL pool for bulk traffic and a
file-WAL pool for latency-sensitive topics. Topics are led only by brokers of their pool, and a
topic moved to the other pool mid-traffic (an IncrementalAlterConfigs of `automq.pool`) loses nothing."""

import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                  NewTopic)

from support import wait_until
from workload import Workload


def leaders_by_topic(c):
    out = {}
    for p in c.state(partitions=True)["partitions"]:
        out.setdefault(p["topic"], set()).add(p["leader"])
    return out


# Cluster-wide placement settings, the same on every broker (the controller's are used).
RULES = ["--default-pool", "default", "--pool-rule", r"outbox\..*=latency"]
# The latency pool's brokers: --node-id 3 and 4 with --node-id-base 1000.
LATENCY = {1003, 1004}


def two_pools(make_cluster):
    """Brokers 1-2 in the default pool (S3 WAL) and 3-4 in the latency pool (file WAL)."""
    c = make_cluster(wal="s3", store="file")
    for i in (1, 2):
        c.add(i, args=RULES)
    for i in (3, 4):
        # As the operator runs a pool: StatefulSet ordinals plus the pool's node id base.
        c.add(i, pool="latency", wal="file", args=[*RULES, "--node-id-base", "1000"])
    return c


def test_pools_place_topics_and_a_topic_moves_between_pools_without_loss(make_cluster):
    c = two_pools(make_cluster)
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    topics = [NewTopic("cdc", 6, 1), NewTopic("outbox", 4, 1, config={"automq.pool": "latency"})]
    for f in admin.create_topics(topics).values():
        f.result(30)
    # (Counts differ between pools, so not wait_settled's spread check: every partition led.)
    wait_until(lambda: all(p["leader"] is not None and p["leader"] == p["assigned"]
                           for p in c.state(partitions=True)["partitions"]), "every partition led", timeout=30)
    placed = wait_until(lambda: (lambda m: m if m.get("cdc") == {1, 2} and m.get("outbox") == LATENCY else None)(
        leaders_by_topic(c)), "each topic led by its pool only", timeout=30)
    print(f"placement: {placed}")

    # A topic that names no pool goes where the first matching name rule says, and
    # DescribeConfigs reports the pool it got and that it came from the brokers' settings.
    for f in admin.create_topics([NewTopic("outbox.payments", 2, 1), NewTopic("audit", 2, 1)]).values():
        f.result(30)
    wait_until(lambda: (lambda m: m.get("outbox.payments") == LATENCY and m.get("audit") == {1, 2})(
        leaders_by_topic(c)), "outbox.payments on the latency pool by its name, audit on the default", timeout=30)
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, "outbox.payments")])
    entry = next(iter(described.values())).result(30)["automq.pool"]
    assert (entry.value, entry.source) == ("latency", ConfigSource.STATIC_BROKER_CONFIG.value), entry

    w = Workload(c.bootstrap(), "cdc", 6).start()
    time.sleep(2)
    # Move the bulk topic onto the latency pool while producers and consumers run.
    resource = ConfigResource(ConfigResource.Type.TOPIC, "cdc", incremental_configs=[
        ConfigEntry("automq.pool", "latency", incremental_operation=AlterConfigOpType.SET)])
    for f in admin.incremental_alter_configs([resource]).values():
        f.result(30)
    wait_until(lambda: leaders_by_topic(c).get("cdc") == LATENCY, "cdc to move to the latency pool", timeout=30)
    time.sleep(2)
    w.stop()
    report = w.audit()
    print(f"cdc moved to brokers 1003-1004 mid-traffic; {report}")


def test_a_transaction_spans_topics_of_both_pools(make_cluster):
    """One transaction writes to a topic of the S3-WAL pool and one of the file-WAL pool (their
    leaders are different brokers, so the markers cross brokers): read_committed consumers see
    both topics' records after the commit and none of an aborted transaction."""
    c = two_pools(make_cluster)
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    for f in admin.create_topics([NewTopic("cdc.orders", 2, 1), NewTopic("outbox.orders", 2, 1)]).values():
        f.result(30)
    wait_until(lambda: (lambda m: m.get("cdc.orders") == {1, 2} and m.get("outbox.orders") == LATENCY)(
        leaders_by_topic(c)), "each topic led by its pool", timeout=30)
    p = Producer({"bootstrap.servers": c.bootstrap(), "transactional.id": "orders-service"})
    p.init_transactions(30)
    p.begin_transaction()
    for n in range(10):
        p.produce("cdc.orders", f"aborted-{n}".encode(), partition=n % 2)
        p.produce("outbox.orders", f"aborted-{n}".encode(), partition=n % 2)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for n in range(10):
        p.produce("cdc.orders", f"order-{n}".encode(), partition=n % 2)
        p.produce("outbox.orders", f"event-{n}".encode(), partition=n % 2)
    p.commit_transaction(30)

    consumer = Consumer({"bootstrap.servers": c.bootstrap(), "group.id": "both-pools", "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed"})
    consumer.subscribe(["cdc.orders", "outbox.orders"])
    got = []
    deadline = time.monotonic() + 30
    try:
        while len(got) < 20 and time.monotonic() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append((m.topic(), m.value().decode()))
    finally:
        consumer.close()
    assert sorted(got) == sorted([("cdc.orders", f"order-{n}") for n in range(10)]
                                 + [("outbox.orders", f"event-{n}") for n in range(10)]), got
