"""Acknowledged writes survive SIGKILL: an idempotent acks=all producer (confluent-kafka) keeps
sending while the broker is killed and restarted several times; afterwards every record the
producer saw acknowledged is in the log exactly once, at the offset it was acknowledged with,
in order per partition, byte for byte. Runs on the file WAL and on the S3 WAL (SeaweedFS)."""

import random
import threading
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from support import TIMEOUT_S, assert_same_records, confluent_consume, create_topic, sample_records

PARTITIONS = 3
KILL_CYCLES = 3


def record(seq):
    """Deterministic, distinct record contents for sequence number `seq`."""
    rng = random.Random(seq)
    key = f"key-{seq:08d}".encode()
    value = f"{seq:08d}:".encode() + rng.randbytes(rng.randrange(0, 600))
    headers = [("seq", str(seq).encode()), ("crc", rng.randbytes(4))]
    return seq % PARTITIONS, key, value, headers


class Sender(threading.Thread):
    """Produces numbered records until stopped, recording each acknowledged one."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        self.producer = Producer({
            "bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
            "linger.ms": 2, "message.timeout.ms": 90000, "request.timeout.ms": 5000,
            "retry.backoff.ms": 50, "retry.backoff.max.ms": 300,
            "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 200,
            "queue.buffering.max.messages": 20000})
        self.acked = {}   # seq -> (partition, offset)
        self.failed = {}  # seq -> error
        self.sent = 0
        self.stopping = threading.Event()
        self.error = None

    def on_delivery(self, err, msg):
        seq = int(msg.value()[:8])
        if err is None:
            self.acked[seq] = (msg.partition(), msg.offset())
        else:
            self.failed[seq] = err

    def run(self):
        try:
            while not self.stopping.is_set():
                for _ in range(20):
                    partition, key, value, headers = record(self.sent)
                    try:
                        self.producer.produce("durable", key=key, value=value, headers=headers,
                                              partition=partition, on_delivery=self.on_delivery)
                    except BufferError:
                        break  # queue full while the broker is down: wait below
                    self.sent += 1
                self.producer.poll(0.005)
            left = self.producer.flush(120)
            assert left == 0, f"{left} records still undelivered after 120 s"
        except Exception as e:  # re-raised by finish()
            self.error = e

    def finish(self):
        self.stopping.set()
        self.join(150)
        assert not self.is_alive(), "producer thread did not finish"
        if self.error:
            raise self.error


def high_watermarks(bootstrap):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "durability-check"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition("durable", p), timeout=10)[1]
                for p in range(PARTITIONS)}
    finally:
        c.close()


@pytest.mark.parametrize("fixture", ["broker", "s3_broker"], ids=["file", "s3"])
def test_records_survive_restarts(request, fixture):
    """Records written before a graceful restart, then a crash right after it, read back
    exactly (the graceful stop uploads the WAL's data; the crash replays whatever is left)."""
    b = request.getfixturevalue(fixture)
    topic = create_topic(b.bootstrap, "restarts", partitions=3)
    recs = sample_records(partitions=3)
    p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for r in recs:
        p.produce(topic, key=r.key, value=r.value, headers=r.headers, partition=r.partition,
                  timestamp=r.timestamp)
    assert p.flush(TIMEOUT_S) == 0
    del p
    b.restart(kill=False)
    assert_same_records(recs, confluent_consume(b.bootstrap, topic, len(recs)))
    b.restart(kill=True)
    assert_same_records(recs, confluent_consume(b.bootstrap, topic, len(recs)))


@pytest.mark.parametrize("wal", ["file", "s3"])
def test_acknowledged_records_survive_sigkill(make_broker, wal):
    b = make_broker(wal)
    create_topic(b.bootstrap, "durable", partitions=PARTITIONS)
    sender = Sender(b.bootstrap)
    sender.start()
    rng = random.Random(42)
    acked_at_kill = []
    pending_at_kill = []  # records handed to the producer but not yet acknowledged at each kill
    try:
        for _ in range(KILL_CYCLES):
            start = len(sender.acked)
            deadline = time.monotonic() + TIMEOUT_S
            # Let the producer get going (acknowledgements flowing) before each kill.
            while len(sender.acked) < start + 500 and time.monotonic() < deadline and sender.is_alive():
                time.sleep(0.02)
            assert len(sender.acked) >= start + 500, (
                f"producer made no progress after restart: {len(sender.acked) - start} new acks")
            time.sleep(rng.uniform(0.05, 0.4))
            acked_at_kill.append(len(sender.acked))
            pending_at_kill.append(sender.sent - len(sender.acked))
            b.stop(kill=True)
            time.sleep(rng.uniform(0.0, 0.3))
            b.start()
        time.sleep(0.5)
    finally:
        sender.finish()

    assert not sender.failed, f"{len(sender.failed)} deliveries failed, e.g. {list(sender.failed.items())[:3]}"
    assert len(sender.acked) == sender.sent, "every record sent must end acknowledged"
    assert len(sender.acked) > acked_at_kill[-1], "no acknowledgements after the last restart"
    assert sum(pending_at_kill) > 0, "the kills hit no record in flight: the test proved nothing"

    # One more crash after the producer finished: nothing acknowledged may be lost either.
    b.stop(kill=True)
    b.start()

    highs = high_watermarks(b.bootstrap)
    log = confluent_consume(b.bootstrap, "durable", sum(highs.values()), timeout=60)
    print(f"{wal} WAL: {sender.sent} sent, acknowledged before each kill {acked_at_kill}, "
          f"unacknowledged at each kill {pending_at_kill}, {len(sender.acked)} acknowledged, "
          f"{len(log)} in the log")
    seen = {}
    for r in log:
        seq = int(r.value[:8])
        assert seq not in seen, f"seq {seq} appears twice: offsets {seen[seq]} and {(r.partition, r.offset)}"
        seen[seq] = (r.partition, r.offset)
        partition, key, value, headers = record(seq)
        assert (r.partition, r.key, r.value, r.headers) == (partition, key, value, headers), \
            f"seq {seq} differs from what was produced"
    missing = sorted(set(sender.acked) - set(seen))
    assert not missing, f"{len(missing)} acknowledged records lost, first: {missing[:10]}"
    moved = [(s, sender.acked[s], seen[s]) for s in sender.acked if sender.acked[s] != seen[s]]
    assert not moved, f"{len(moved)} records not at their acknowledged offset, e.g. {moved[:3]}"
    for p in range(PARTITIONS):
        seqs = [int(r.value[:8]) for r in log if r.partition == p]
        assert seqs == sorted(seqs), f"partition {p}: records out of production order"
        offsets = [r.offset for r in log if r.partition == p]
        assert offsets == list(range(highs[p])), f"partition {p}: offsets not dense"
