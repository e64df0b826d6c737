"""Exactly-once on a cluster under faults (issue 11): a consume-transform-produce pipeline with
confluent-kafka's transactional producer and a read_committed consumer runs while the broker
holding the transaction coordinator is killed, another is paused past the session timeout, and
a third is drained. Transaction markers cross brokers (the coordinator writes them through the
partitions' leaders), and the coordinator's state moves with its `__transaction_state`
partition.

The audit: the output topic, read with read_committed, holds every input record exactly once,
transformed; nothing from an aborted transaction is visible; the group's committed offsets
equal the input's end. Aborted attempts are expected (a killed coordinator aborts what it had
open, and the pipeline aborts every 7th transaction on purpose after writing it); duplicates
never are."""

import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from support import wait_until

IN, OUT, GROUP, TXN_ID = "eos-in", "eos-out", "eos-group", "eos-pipeline"
PARTITIONS = 6
RECORDS = 3000
# Java's String.hashCode, as the brokers place transactional ids on __transaction_state.
TXN_STATE_PARTITIONS = 8


def java_hash(s):
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h


def coordinator_of(c, txn_id):
    index = (java_hash(txn_id) & 0x7FFFFFFF) % TXN_STATE_PARTITIONS
    for p in c.state(partitions=True)["partitions"]:
        if p["topic"] == "__transaction_state" and p["partition"] == index:
            return p["leader"]
    return None


class Pipeline:
    """Reads IN with read_committed, writes "out-" + value to OUT and the input offsets in one
    transaction per batch, as an exactly-once stream job does. On an abortable error it aborts
    and rewinds to the committed offsets; on a fatal one (fenced, or a producer that cannot
    recover) it starts a new producer instance with the same transactional id."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.stop = threading.Event()
        self.commits = 0
        self.attempts = 0
        self.aborts = 0
        self.restarts = 0
        self.errors = []
        self.thread = threading.Thread(target=self.run, daemon=True)

    def producer(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "transactional.id": TXN_ID,
                      "transaction.timeout.ms": 10000, "message.timeout.ms": 9000,
                      "topic.metadata.refresh.interval.ms": 1000, "retry.backoff.ms": 50})
        p.init_transactions(60)
        return p

    def consumer(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                      "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                      "session.timeout.ms": 10000, "topic.metadata.refresh.interval.ms": 1000})
        c.subscribe([IN])
        return c

    def rewind(self, consumer):
        assignment = consumer.assignment()
        if not assignment:
            return
        for tp in consumer.committed(assignment, timeout=30):
            consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))

    def run(self):
        producer = consumer = None
        while not self.stop.is_set():
            try:
                if producer is None:
                    producer = self.producer()
                if consumer is None:
                    consumer = self.consumer()
                batch = consumer.consume(50, 0.5)
                batch = [m for m in batch if not m.error()]
                if not batch:
                    continue
                producer.begin_transaction()
                for m in batch:
                    producer.produce(OUT, b"out-" + m.value(), key=m.key(), partition=m.partition())
                producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                                     consumer.consumer_group_metadata(), 30)
                self.attempts += 1
                if self.attempts % 7 == 0:
                    # A job failing mid-batch: its records and offsets are in the log, then
                    # aborted; the batch is processed again.
                    producer.flush(30)
                    producer.abort_transaction(30)
                    self.aborts += 1
                    self.rewind(consumer)
                    continue
                producer.commit_transaction(30)
                self.commits += 1
            except KafkaException as e:
                err = e.args[0]
                if isinstance(err, KafkaError) and err.txn_requires_abort():
                    try:
                        producer.abort_transaction(30)
                        self.aborts += 1
                        self.rewind(consumer)
                        continue
                    except KafkaException:
                        pass
                if isinstance(err, KafkaError) and err.retriable() and not err.fatal():
                    # e.g. a commit that timed out while the coordinator moved: retry as a
                    # new instance, which aborts or completes what was left.
                    pass
                self.restarts += 1
                producer = None
                if consumer is not None:
                    try:
                        consumer.close()
                    except Exception:
                        pass
                    consumer = None
                time.sleep(0.2)
            except Exception as e:  # a bug in the test or the client: stop and report
                self.errors.append(repr(e))
                return
        for handle in (consumer,):
            if handle is not None:
                handle.close()


def committed_offsets(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False,
                  "isolation.level": "read_committed"})
    try:
        return {tp.partition: tp.offset for tp in
                c.committed([TopicPartition(IN, p) for p in range(PARTITIONS)], timeout=30)}
    finally:
        c.close()


def read_all(bootstrap, topic, isolation):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"audit-{isolation}", "enable.auto.commit": False,
                  "isolation.level": isolation, "auto.offset.reset": "earliest"})
    out = []
    try:
        ends = {}
        for p in range(PARTITIONS):
            ends[p] = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
        c.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        positions = {p: 0 for p in range(PARTITIONS)}
        deadline = time.monotonic() + 60
        while any(positions[p] < ends[p] for p in positions):
            assert time.monotonic() < deadline, f"reading {topic} back timed out at {positions} of {ends}"
            for m in c.consume(500, 0.5):
                if m.error():
                    if m.error().code() == KafkaError._PARTITION_EOF:
                        continue
                    raise KafkaException(m.error())
                out.append((m.partition(), m.offset(), m.value().decode()))
            for p in positions:
                pos = c.position([TopicPartition(topic, p)])[0].offset
                positions[p] = max(positions[p], pos)
    finally:
        c.close()
    return out


def test_exactly_once_pipeline_survives_a_killed_coordinator_a_paused_broker_and_a_drain(make_cluster):
    c = make_cluster(wal="s3", store="file")
    for i in (1, 2, 3):
        c.add(i)
    admin = AdminClient({"bootstrap.servers": c.bootstrap()})
    for f in admin.create_topics([NewTopic(IN, PARTITIONS, 1), NewTopic(OUT, PARTITIONS, 1)]).values():
        f.result(30)
    c.wait_settled([1, 2, 3])
    # Input keeps arriving through the faults (about 150 records/s), as a live stream does.
    feeder_done = threading.Event()

    feeder_restarts = []

    def feed():
        acked = set()

        def producer():
            return Producer({"bootstrap.servers": c.bootstrap(), "enable.idempotence": True, "linger.ms": 5,
                             "message.timeout.ms": 120000, "topic.metadata.refresh.interval.ms": 1000})

        def done(err, msg):
            if err is None:
                acked.add(int(msg.value()[1:]))

        p = producer()
        n = 0
        while n < RECORDS or len(acked) < RECORDS:
            try:
                if n < RECORDS:
                    p.produce(IN, f"v{n:06d}".encode(), key=str(n).encode(), partition=n % PARTITIONS,
                              on_delivery=done)
                    n += 1
                    p.poll(0)
                    time.sleep(1 / 150)
                else:
                    p.flush(120)
                    missing = [m for m in range(RECORDS) if m not in acked]
                    assert not missing or not p.flush(0), f"records never acknowledged: {missing[:5]}"
            except KafkaException as e:
                # A fatal idempotence error (seen once in CI under these faults, see NOTES.md):
                # a new producer re-sends what was not acknowledged. The audit below compares
                # the output with the input as written, so a re-sent record is still checked.
                feeder_restarts.append(str(e))
                p = producer()
                for m in [m for m in range(n) if m not in acked]:
                    p.produce(IN, f"v{m:06d}".encode(), key=str(m).encode(), partition=m % PARTITIONS,
                              on_delivery=done)
        feeder_done.set()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()

    pipeline = Pipeline(c.bootstrap())
    pipeline.thread.start()
    wait_until(lambda: pipeline.commits >= 3 or pipeline.errors, "the pipeline to commit transactions", timeout=60)

    # 1. Kill the broker holding the pipeline's transaction coordinator.
    coordinator = wait_until(lambda: coordinator_of(c, TXN_ID), "the transaction coordinator", timeout=30)
    c.kill(coordinator)
    wait_until(lambda: coordinator_of(c, TXN_ID) not in (None, coordinator), "the coordinator to move", timeout=30)
    before = pipeline.commits
    wait_until(lambda: pipeline.commits > before or pipeline.errors, "commits with the new coordinator", timeout=60)
    c.brokers[coordinator].start()
    c.wait_settled([1, 2, 3], timeout=60)

    # 2. Pause another broker past the session timeout; it is fenced and restarts.
    paused = next(i for i in (1, 2, 3) if i != c.controller())
    c.pause(paused)
    wait_until(lambda: c.settled([i for i in (1, 2, 3) if i != paused]), "the paused broker's partitions to move",
               timeout=30)
    c.resume(paused)
    assert c.wait_exit(paused) == 75
    c.brokers[paused].start()
    c.wait_settled([1, 2, 3], timeout=60)

    # 3. Drain one (a planned move of everything it leads, coordinator partitions included).
    drained = next(i for i in (1, 2, 3) if i != c.controller())
    c.admin("POST", drained, f"/admin/v1/brokers/{drained}/drain")
    wait_until(lambda: all(n == 0 for i, n in c.leading().items() if i == drained), "the drain", timeout=30)
    c.admin("DELETE", drained, f"/admin/v1/brokers/{drained}/drain")

    feeder.join(120)
    assert feeder_done.is_set(), "the input producer did not finish"
    # Until every input record is processed and its offset committed.
    inputs = read_all(c.bootstrap(), IN, "read_uncommitted")
    ends = {p: 0 for p in range(PARTITIONS)}
    for part, offset, _ in inputs:
        ends[part] = max(ends[part], offset + 1)
    wait_until(lambda: pipeline.errors or committed_offsets(c.bootstrap()) == ends,
               "the pipeline to commit the input's end", timeout=180)
    pipeline.stop.set()
    pipeline.thread.join(60)
    assert not pipeline.errors, pipeline.errors

    committed = read_all(c.bootstrap(), OUT, "read_committed")
    values = [v for _, _, v in committed]
    expected = sorted("out-" + v for _, _, v in inputs)
    assert len(expected) >= RECORDS and {v[1:] for _, _, v in inputs} >= {f"{n:06d}" for n in range(RECORDS)}
    dupes = sorted({v for v in values if values.count(v) > expected.count(v)})[:5]
    assert not dupes, f"records delivered more often than they were input, to read_committed consumers: {dupes}"
    assert sorted(values) == expected, (f"{len(set(expected) - set(values))} input records missing from the "
                                        f"output, e.g. {sorted(set(expected) - set(values))[:5]}")
    # Each output partition is its input partition, transformed, in order.
    for part in range(PARTITIONS):
        want = ["out-" + v for p, _, v in sorted(inputs, key=lambda r: r[1]) if p == part]
        got = [v for p, _, v in sorted(committed, key=lambda r: r[1]) if p == part]
        assert got == want, f"output partition {part} is not its input, in order"
    uncommitted = read_all(c.bootstrap(), OUT, "read_uncommitted")
    assert len(uncommitted) > len(values), "the aborted attempts' records are in the log (read_uncommitted)"
    print(f"exactly-once audit: {len(inputs)} input records ({len(feeder_restarts)} input producer restarts), {pipeline.commits} transactions committed, "
          f"{pipeline.aborts} aborted, {pipeline.restarts} producer restarts; read_uncommitted sees "
          f"{len(uncommitted)} records (aborted attempts included), read_committed exactly {len(values)}")
