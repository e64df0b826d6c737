"""A producer and a consumer group running against a cluster while it changes, and the audit
afterwards: every acknowledged record is in the log exactly once at the offset it was
acknowledged at, offsets are contiguous, each partition keeps the producer's order, and the
group consumed everything, resuming from committed offsets (no gap in what it read)."""

import threading
import time
from collections import defaultdict

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


class Workload:
    def __init__(self, bootstrap, topic, partitions, group="audit", consumers=2, rate=400):
        self.bootstrap = bootstrap
        self.topic = topic
        self.partitions = partitions
        self.group = group
        self.rate = rate
        self.acked = {}  # value -> (partition, offset)
        self.ack_times = defaultdict(list)  # partition -> monotonic times of its acknowledgements
        self.failed = {}
        self.sent = 0
        self.consumed = defaultdict(list)  # partition -> [(offset, value)] in delivery order
        self.errors = []
        self._stop = threading.Event()
        self._stop_consumers = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._produce, daemon=True)]
        self._threads += [threading.Thread(target=self._consume, args=(i,), daemon=True) for i in range(consumers)]

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def _produce(self):
        p = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
                      "linger.ms": 5, "message.timeout.ms": 120000, "retry.backoff.ms": 50,
                      "topic.metadata.refresh.interval.ms": 1000})

        def done(err, msg):
            v = msg.value().decode()
            with self._lock:
                if err is None:
                    self.acked[v] = (msg.partition(), msg.offset())
                    self.ack_times[msg.partition()].append(time.monotonic())
                else:
                    self.failed[v] = str(err)

        seq = 0
        started = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - started) * self.rate)
            while seq < due:
                value = f"m{seq:08d}"
                try:
                    p.produce(self.topic, value.encode(), key=str(seq % 97).encode(), on_delivery=done)
                except BufferError:
                    break
                seq += 1
                with self._lock:
                    self.sent = seq
            p.poll(0.01)
        left = p.flush(120)
        if left:
            self.errors.append(f"{left} records still unacknowledged after 120 s")

    def _consume(self, i):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": self.group, "auto.offset.reset": "earliest",
                      "enable.auto.commit": True, "auto.commit.interval.ms": 200,
                      "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                      "topic.metadata.refresh.interval.ms": 1000})
        c.subscribe([self.topic])
        try:
            while not self._stop_consumers.is_set() or self._behind():
                msg = c.poll(0.1)
                if msg is None:
                    continue
                if msg.error():
                    if msg.error().retriable() or msg.error().code() < 0:
                        continue
                    self.errors.append(f"consumer {i}: {msg.error()}")
                    continue
                with self._lock:
                    self.consumed[msg.partition()].append((msg.offset(), msg.value().decode()))
        finally:
            c.close()

    def _behind(self):
        with self._lock:
            seen = {v for recs in self.consumed.values() for _, v in recs}
            return len(seen) < len(self.acked) and time.monotonic() < self._drain_until

    def longest_pause(self, since, until):
        """The longest time any partition went without an acknowledgement between the
        monotonic times `since` and `until`, and that partition: how long writes to it stalled
        (the producer sends to every partition many times a second)."""
        worst = (0.0, None)
        with self._lock:
            for p in range(self.partitions):
                times = [since] + [t for t in self.ack_times[p] if since < t < until] + [until]
                gap = max(b - a for a, b in zip(times, times[1:]))
                worst = max(worst, (gap, p))
        return worst

    def stop(self, drain_timeout=60):
        """Stops producing (waiting for every acknowledgement), then lets the group read up to
        the end (at most `drain_timeout`)."""
        self._stop.set()
        self._threads[0].join(timeout=130)
        self._drain_until = time.monotonic() + drain_timeout
        self._stop_consumers.set()
        for t in self._threads[1:]:
            t.join(timeout=drain_timeout + 10)

    def audit(self):
        assert not self.errors, self.errors
        assert not self.failed, f"{len(self.failed)} records failed, e.g. {list(self.failed.items())[:3]}"
        assert len(self.acked) == self.sent, f"{self.sent - len(self.acked)} records never acknowledged"
        assert self.sent > 0
        # The log: read every partition from the start.
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "auditor", "enable.auto.commit": False,
                      "auto.offset.reset": "earliest"})
        log = {}
        try:
            for p in range(self.partitions):
                low, high = c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
                c.assign([TopicPartition(self.topic, p, low)])
                got = []
                deadline = time.monotonic() + 60
                while (not got or got[-1][0] < high - 1) and high > low:
                    assert time.monotonic() < deadline, f"reading partition {p} back timed out at {len(got)}"
                    msg = c.poll(0.5)
                    if msg is None:
                        continue
                    if msg.error():
                        raise KafkaException(msg.error())
                    got.append((msg.offset(), msg.value().decode()))
                offsets = [o for o, _ in got]
                assert offsets == list(range(low, high)), f"partition {p}: offsets not contiguous"
                log[p] = got
        finally:
            c.close()
        where = {}
        for p, recs in log.items():
            seqs = [int(v[1:]) for _, v in recs]
            assert seqs == sorted(seqs), f"partition {p}: the producer's order is broken"
            for o, v in recs:
                assert v not in where, f"{v} is in the log twice: {where[v]} and {(p, o)}"
                where[v] = (p, o)
        lost = [v for v in self.acked if v not in where]
        assert not lost, (f"{len(lost)} acknowledged records lost, e.g. "
                          f"{[(v, self.acked[v]) for v in sorted(lost)[:8]]} (value, (partition, offset) acknowledged); "
                          f"log ends: {[(p, len(r) and r[-1][0]) for p, r in sorted(log.items())]}")
        moved = [(v, a, where[v]) for v, a in self.acked.items() if where[v] != a]
        assert not moved, f"records not where they were acknowledged: {moved[:5]}"
        # The group: it read everything, and within each partition never skipped ahead (a
        # consumer resuming after a rebalance starts at the committed offset, at or before
        # where the last one stopped).
        seen = {v for recs in self.consumed.values() for _, v in recs}
        missing = set(self.acked) - seen
        assert not missing, f"the group never consumed {len(missing)} records, e.g. {sorted(missing)[:5]}"
        for p, recs in self.consumed.items():
            high = -1
            for o, _ in recs:
                assert o <= high + 1, f"partition {p}: the group jumped from {high} to {o}"
                high = max(high, o)
        return {"acked": len(self.acked), "log": sum(len(r) for r in log.values()),
                "consumed": sum(len(r) for r in self.consumed.values())}
