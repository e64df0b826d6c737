"""Kafka transactions (KIP-98, KIP-447) with real clients: what a transactional producer and a
read_committed consumer rely on.

confluent-kafka (librdkafka 2.16) unless a test says otherwise:

- commit and abort: a committed transaction over 2 topics is read whole by both isolation levels;
  an aborted one only by read_uncommitted; every transaction leaves one control marker per
  partition, which takes an offset and which no client ever delivers;
- the last stable offset (LSO): an open transaction holds back read_committed consumers at its
  first offset, also for records written after it by a non-transactional producer;
- fencing: init_transactions with the same transactional.id aborts the old instance's open
  transaction and bumps the epoch; the old instance's sends and commit fail fatally;
- consume-transform-produce: offsets sent with send_offsets_to_transaction are committed with
  the transaction (exactly-once output) and not at all when it aborts;
- transaction.timeout.ms: the broker aborts a stalled transaction; a timeout above the broker's
  maximum (Kafka's transaction.max.timeout.ms, 900000 by default) is refused;
- the admin APIs ListTransactions/DescribeTransactions (KIP-664, through kafka-python: the
  confluent-kafka 2.16 AdminClient does not bind them);
- kafka-python 3.0 and aiokafka 0.14 commit and abort, read back with their own read_committed
  consumers;
- a SIGKILL: committed transactions stay, open ones stay invisible and are aborted at their
  timeout or when a new producer takes over their transactional.id.

Error codes librdkafka 2.16 reports for a fenced producer: it normalizes both of the broker's
answers, PRODUCER_FENCED (90, what Kafka's transaction coordinator returns to a stale epoch
since KIP-588) and INVALID_PRODUCER_EPOCH (47, what a partition leader returns to a Produce with
a stale epoch), to its own fatal `KafkaError._FENCED` (-144, "This instance has been fenced by a
newer instance"), which flush()/poll() raise and every later transactional call returns. Only a
refused message's delivery report keeps the broker's code (INVALID_PRODUCER_EPOCH). The tests
accept the three codes, and require `fatal()`.
"""

import asyncio
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import (OFFSET_BEGINNING, OFFSET_INVALID, Consumer, KafkaError, KafkaException,
                             Producer, TopicPartition, version as confluent_version)
from confluent_kafka.admin import AdminClient

from support import (BASE_TS, TIMEOUT_S, Rec, api_versions, assert_same_records, create_topic,
                     from_confluent, require_group_coordinator, wait_until)

# Client-facing transaction APIs (WriteTxnMarkers, 27, is broker-to-broker and not required).
TXN_APIS = {22: "InitProducerId", 24: "AddPartitionsToTxn", 25: "AddOffsetsToTxn", 26: "EndTxn",
            28: "TxnOffsetCommit"}
TXN_ADMIN_APIS = {65: "DescribeTransactions", 66: "ListTransactions"}

# What librdkafka reports when a newer instance fenced the producer (see the module docstring).
FENCED = {KafkaError._FENCED: "_FENCED", KafkaError.PRODUCER_FENCED: "PRODUCER_FENCED",
          KafkaError.INVALID_PRODUCER_EPOCH: "INVALID_PRODUCER_EPOCH"}

RC, RU = "read_committed", "read_uncommitted"


# --- helpers ----------------------------------------------------------------------------------

def require_apis(bootstrap, apis, what):
    """Fails fast, with the missing API names, when the broker does not advertise `apis`
    (instead of letting a client time out or report a vague fatal error)."""
    have = api_versions(bootstrap)
    missing = [name for key, name in sorted(apis.items()) if key not in have]
    if missing:
        pytest.fail(f"broker does not advertise the {what} APIs {', '.join(missing)} in ApiVersions: "
                    f"no {what} support yet", pytrace=False)


def require_transactions(bootstrap):
    require_apis(bootstrap, TXN_APIS, "transaction")


def records(tag, count, partitions=1, ts=BASE_TS):
    """`count` records spread round-robin over `partitions`, each value unique (`tag-i`)."""
    return [Rec(i % partitions, f"{tag}-k{i}".encode(), f"{tag}-{i}".encode(), [("tag", tag.encode())], ts + i)
            for i in range(count)]


def on(topic, recs):
    return [(topic, r) for r in recs]


def txn_producer(bootstrap, txn_id, init=True, **conf):
    """A transactional producer, initialized (init_transactions) unless `init` is false."""
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5, **conf})
    if init:
        p.init_transactions(TIMEOUT_S)
    return p


def plain_producer(bootstrap):
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})


def send(p, items):
    """Produces (topic, Rec) pairs in order and waits for every delivery report, so the records
    are in the log (also before an abort, which would purge unsent ones). Returns the
    (partition, offset) of each record in order; fails on any delivery error."""
    reports = [None] * len(items)

    def on_delivery(i):
        def cb(err, msg):
            reports[i] = err if err else (msg.partition(), msg.offset())
        return cb

    for i, (topic, r) in enumerate(items):
        p.produce(topic, key=r.key, value=r.value, headers=r.headers or None, partition=r.partition,
                  timestamp=r.timestamp or 0, on_delivery=on_delivery(i))
        p.poll(0)
    left = p.flush(TIMEOUT_S)
    assert left == 0, f"{left} messages not delivered within {TIMEOUT_S}s"
    errors = [(i, e) for i, e in enumerate(reports) if not isinstance(e, tuple)]
    assert not errors, f"delivery failed: {errors[:3]}"
    return reports


def reader(bootstrap, topic, isolation, partitions=None):
    """A consumer with `isolation` assigned to the start of each partition (no group), reporting
    partition EOF: librdkafka emits it when the fetch position reaches the end offset, which is
    the high watermark for read_uncommitted and the last stable offset for read_committed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"e2e-txn-reader-{isolation}",
                  "enable.auto.commit": False, "enable.partition.eof": True, "isolation.level": isolation,
                  "fetch.wait.max.ms": 100})
    if partitions is None:
        partitions = sorted(c.list_topics(topic, timeout=10).topics[topic].partitions)
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    return c


def read_all(bootstrap, topic, isolation, expect=None, timeout=TIMEOUT_S):
    """Every record a consumer with `isolation` gets from the start of each partition up to its
    end offset (see reader()), in consumption order (per partition: offset order). With `expect`,
    reads on until at least that many records have come and every partition is at its end (the
    broker may make a transaction's outcome visible a moment after the client's commit returned);
    the caller asserts the exact result."""
    c = reader(bootstrap, topic, isolation)
    try:
        parts = {tp.partition for tp in c.assignment()}
        out, at_end = [], set()
        deadline = time.monotonic() + timeout
        while not (at_end == parts and (expect is None or len(out) >= expect)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{isolation} read of {topic}: got {len(out)} records"
                    + (f", expected {expect}" if expect is not None else "")
                    + f", partitions at their end {sorted(at_end)} of {sorted(parts)} after {timeout}s: "
                    + f"{[(r.partition, r.offset, r.value) for r in out][:20]}")
            for m in c.consume(500, 0.2):
                err = m.error()
                if err is None:
                    out.append(from_confluent(m))
                    at_end.discard(m.partition())
                elif err.code() == KafkaError._PARTITION_EOF:
                    at_end.add(m.partition())
                else:
                    raise KafkaException(err)
        return out
    finally:
        c.close()


def consume_n(c, n, timeout=TIMEOUT_S):
    """The next `n` data records from consumer `c` (partition EOF events skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        if time.monotonic() > deadline:
            raise AssertionError(f"consumed {len(out)} of {n} records in {timeout}s: "
                                 f"{[(r.partition, r.offset, r.value) for r in out][:20]}")
        out.extend(data(c.consume(n - len(out), 0.2)))
    return out


def consume_for(c, seconds):
    """Whatever data records consumer `c` gets within `seconds`."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.extend(data(c.consume(100, min(0.2, max(0.01, end - time.monotonic())))))
    return out


def data(msgs):
    out = []
    for m in msgs:
        err = m.error()
        if err is None:
            out.append(from_confluent(m))
        elif err.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(err)
    return out


def values(recs, partition=None):
    return [r.value for r in recs if partition is None or r.partition == partition]


def by_partition(recs):
    out = {}
    for r in recs:
        out.setdefault(r.partition, []).append(r)
    return out


def watermarks(bootstrap, topic, partition, isolation):
    """(low, high) from ListOffsets with `isolation`: for read_committed, high is the last
    stable offset."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "e2e-txn-watermarks", "isolation.level": isolation})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    finally:
        c.close()


def group_committed(bootstrap, group, topic, partitions):
    """The group's committed offsets, fetched by a fresh read_committed consumer: librdkafka then
    asks for stable offsets (OffsetFetch RequireStable), so a transactional commit still being
    completed is waited for rather than missed."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "isolation.level": RC})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        for tp in tps:
            assert tp.error is None, f"committed offset of {topic}[{tp.partition}]: {tp.error}"
        return [tp.offset for tp in tps]
    finally:
        c.close()


def fenced_error(err, what):
    assert err.fatal(), f"{what}: expected a fatal error, got {err}"
    assert err.code() in FENCED, f"{what}: expected one of {sorted(FENCED.values())}, got {err}"


def within(fn, what, timeout=TIMEOUT_S):
    """Runs a blocking client call that has no timeout of its own (kafka-python's transaction
    calls) and fails instead of hanging the suite."""
    result = {}

    def run():
        try:
            result["value"] = fn()
        except BaseException as e:  # re-raised below
            result["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise AssertionError(f"{what} did not return within {timeout}s")
    if "error" in result:
        raise result["error"]
    return result.get("value")


# --- commit, abort, last stable offset ----------------------------------------------------------

def test_commit_is_visible_to_both_isolation_levels(broker):
    """One transaction over 2 topics (3 + 2 partitions), produced interleaved: after
    commit_transaction both a read_committed and a read_uncommitted consumer get exactly the
    records, byte for byte, in order at offsets 0..n-1 of each partition, and each partition's
    high watermark (also the LSO: nothing is open) is n + 1: the commit marker took one offset."""
    require_transactions(broker.bootstrap)
    topics = {create_topic(broker.bootstrap, "txn-commit-a", partitions=3): 3,
              create_topic(broker.bootstrap, "txn-commit-b", partitions=2): 2}
    sent = {t: records(t, 30, partitions=n) for t, n in topics.items()}
    p = txn_producer(broker.bootstrap, "txn-commit")
    p.begin_transaction()
    items = [(t, sent[t][i]) for i in range(30) for t in topics]
    reports = send(p, items)
    p.commit_transaction(TIMEOUT_S)

    next_offset = {}
    for (t, r), (part, off) in zip(items, reports):
        assert part == r.partition
        assert off == next_offset.get((t, part), 0), f"{t}[{part}]: delivery offsets not dense"
        next_offset[(t, part)] = off + 1
    for t, n in topics.items():
        for isolation in (RC, RU):
            got = read_all(broker.bootstrap, t, isolation, expect=len(sent[t]))
            assert_same_records(sent[t], got)
        for part in range(n):
            count = len([r for r in sent[t] if r.partition == part])
            for isolation in (RC, RU):
                assert watermarks(broker.bootstrap, t, part, isolation) == (0, count + 1), \
                    f"{t}[{part}] ({isolation}): {count} records and one commit marker expected"


def test_aborted_records_are_hidden_from_read_committed(broker):
    """M records produced (and delivered) then abort_transaction, then a committed transaction
    of K records: read_committed gets only the K, read_uncommitted all M + K data records (never a
    control record). The markers take offsets: per partition the aborted records sit at 0..m-1,
    the abort marker at m, the committed records from m + 1 on (as their delivery reports said),
    and the high watermark is m + k + 2."""
    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-abort", partitions=2)
    aborted = records("aborted", 6, partitions=2)
    committed = records("committed", 4, partitions=2, ts=BASE_TS + 1000)
    p = txn_producer(broker.bootstrap, "txn-abort")
    p.begin_transaction()
    send(p, on(topic, aborted))
    p.abort_transaction(TIMEOUT_S)
    p.begin_transaction()
    reports = send(p, on(topic, committed))
    p.commit_transaction(TIMEOUT_S)

    got = read_all(broker.bootstrap, topic, RC, expect=len(committed))
    assert sorted(values(got)) == sorted(values(committed)), "read_committed must get only the committed records"
    everything = read_all(broker.bootstrap, topic, RU, expect=len(aborted) + len(committed))
    assert sorted(values(everything)) == sorted(values(aborted + committed)), \
        "read_uncommitted gets every data record, aborted ones too, and no control record"

    for part in (0, 1):
        m = len([r for r in aborted if r.partition == part])
        mine = [r for r in committed if r.partition == part]
        k = len(mine)
        want_committed = [(m + 1 + j, r.content()) for j, r in enumerate(mine)]
        got_committed = [(r.offset, r.content()) for r in got if r.partition == part]
        assert got_committed == want_committed, \
            f"partition {part}: committed records must follow the abort marker at offset {m}"
        assert [off for (pp, off) in reports if pp == part] == [o for o, _ in want_committed], \
            f"partition {part}: delivery reports disagree with the offsets read back"
        want_all = list(range(m)) + list(range(m + 1, m + 1 + k))
        assert [r.offset for r in everything if r.partition == part] == want_all, \
            f"partition {part}: read_uncommitted offsets (the markers at {m} and {m + k + 1} are skipped)"
        for isolation in (RC, RU):
            assert watermarks(broker.bootstrap, topic, part, isolation) == (0, m + k + 2), \
                f"partition {part} ({isolation}): {m + k} records and 2 markers expected"


def test_open_transaction_holds_back_read_committed(broker):
    """While a transaction is open (its records delivered, not committed), the last stable offset
    stays at its first offset: a read_committed consumer gets nothing, also not the records a
    non-transactional producer wrote after it, and its ListOffsets(latest) answer is that first
    offset. read_uncommitted sees everything. After the commit the same read_committed consumer
    goes on and gets all of it, in offset order."""
    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-lso")
    tp = TopicPartition(topic, 0)
    t = txn_producer(broker.bootstrap, "txn-lso")
    t.begin_transaction()
    open_recs = records("open", 5)
    send(t, on(topic, open_recs))
    plain_recs = records("plain", 3, ts=BASE_TS + 100)
    send(plain_producer(broker.bootstrap), on(topic, plain_recs))

    rc = reader(broker.bootstrap, topic, RC)
    ru = reader(broker.bootstrap, topic, RU)
    try:
        seen = consume_n(ru, 8)
        assert [(r.offset, r.value) for r in seen] == list(enumerate(values(open_recs + plain_recs))), \
            "read_uncommitted sees the open transaction and the records after it"
        held = consume_for(rc, 2.0)
        assert held == [], f"read_committed read past the open transaction: {[(r.offset, r.value) for r in held]}"
        (pos,) = rc.position([tp])
        assert pos.offset in (0, OFFSET_INVALID), f"read_committed position moved to {pos.offset}"
        assert rc.get_watermark_offsets(tp, timeout=10) == (0, 0), \
            "read_committed's latest offset must be the LSO: the open transaction's first offset"
        assert ru.get_watermark_offsets(tp, timeout=10) == (0, 8)

        t.commit_transaction(TIMEOUT_S)
        got = consume_n(rc, 8)
        assert [(r.offset, r.value) for r in got] == list(enumerate(values(open_recs + plain_recs))), \
            "after the commit read_committed gets the transaction and the records held back behind it"
        # The commit marker (offset 8) is the end for both now; nobody gets it as a record.
        assert rc.get_watermark_offsets(tp, timeout=10) == (0, 9)
        assert ru.get_watermark_offsets(tp, timeout=10) == (0, 9)
        extra = consume_for(rc, 0.5) + consume_for(ru, 0.5)
        assert extra == [], f"a control record was delivered: {[(r.offset, r.value) for r in extra]}"
    finally:
        rc.close()
        ru.close()


# --- fencing ------------------------------------------------------------------------------------

def test_zombie_producer_is_fenced(broker):
    """Producer A (transactional.id T) has an open transaction with delivered records; producer B
    with the same T calls init_transactions, which aborts A's transaction (its markers are
    written before B's init returns, so nothing is open) and bumps the epoch. A's next send is
    refused by the partition leader (stale epoch) and A's commit fails with a fatal fencing error
    (librdkafka: _FENCED; see the module docstring). B's transaction commits, and read_committed
    sees only B's records; A's late record is not in the log at all."""
    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-fence", partitions=2)
    a = txn_producer(broker.bootstrap, "txn-fence")
    a.begin_transaction()
    a_recs = records("a", 4, partitions=2)
    send(a, on(topic, a_recs))

    b = txn_producer(broker.bootstrap, "txn-fence")  # init_transactions fences A
    for part in (0, 1):
        assert watermarks(broker.bootstrap, topic, part, RC) == (0, 3), \
            f"partition {part}: B's init_transactions must have aborted A's transaction (2 records + abort marker)"

    # No delivery callback: confluent-kafka 2.16 raises the fatal error out of flush()/poll(), and a
    # Python delivery callback served in the same call would then fail with a SystemError. (The
    # delivery report itself carries the broker's INVALID_PRODUCER_EPOCH.)
    a.produce(topic, value=b"a-late", partition=0)
    raised = None
    try:
        a.flush(TIMEOUT_S)
        a.poll(0.5)  # the fatal error event may be served after the delivery report
    except KafkaException as e:
        raised = e.args[0]
    if raised is not None:
        fenced_error(raised, "the fenced producer's send")
    with pytest.raises(KafkaException) as e:
        a.commit_transaction(TIMEOUT_S)
    fenced_error(e.value.args[0], "commit_transaction of the fenced producer")

    b.begin_transaction()
    b_recs = records("b", 4, partitions=2, ts=BASE_TS + 100)
    send(b, on(topic, b_recs))
    b.commit_transaction(TIMEOUT_S)

    got = read_all(broker.bootstrap, topic, RC, expect=len(b_recs))
    assert sorted(values(got)) == sorted(values(b_recs)), "read_committed must see only B's records"
    everything = read_all(broker.bootstrap, topic, RU, expect=len(a_recs) + len(b_recs))
    assert sorted(values(everything)) == sorted(values(a_recs + b_recs)), \
        "the fenced producer's late record must not be in the log (the partition refuses its stale epoch)"


# --- consume-transform-produce ------------------------------------------------------------------

def ctp_consumer(bootstrap, group):
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                     "isolation.level": RC, "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 300, "fetch.wait.max.ms": 100})


def transformed(r):
    return b"out-" + r.value


def test_consume_transform_produce_exactly_once(broker):
    """The exactly-once loop: a group member (read_committed, no auto commit) consumes a batch,
    a transactional producer writes the transformed records and sends the consumer's positions
    with send_offsets_to_transaction, then commits; repeated until the input is done. The output
    holds every input record's transform exactly once, in input order per partition, and the
    group's committed offsets are the input's end offsets."""
    require_transactions(broker.bootstrap)
    require_group_coordinator(broker.bootstrap)
    src = create_topic(broker.bootstrap, "ctp-in", partitions=2)
    dst = create_topic(broker.bootstrap, "ctp-out", partitions=2)
    inputs = records("in", 20, partitions=2)
    send(plain_producer(broker.bootstrap), on(src, inputs))
    group = "ctp-group"

    p = txn_producer(broker.bootstrap, "ctp")
    c = ctp_consumer(broker.bootstrap, group)
    c.subscribe([src])
    processed, txns = [], 0
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while len(processed) < len(inputs):
            assert time.monotonic() < deadline, f"processed {len(processed)} of {len(inputs)} records"
            batch = data(c.consume(5, 0.5))
            if not batch:
                continue
            p.begin_transaction()
            for r in batch:
                p.produce(dst, key=r.key, value=transformed(r), partition=r.partition,
                          headers=[("src-offset", str(r.offset).encode())])
            p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), TIMEOUT_S)
            p.commit_transaction(TIMEOUT_S)
            processed.extend(batch)
            txns += 1
    finally:
        c.close()
    assert txns >= 4, f"batches of at most 5 records: expected at least 4 transactions, ran {txns}"
    assert sorted(values(processed)) == sorted(values(inputs)), "the loop must consume each input record once"

    out = read_all(broker.bootstrap, dst, RC, expect=len(inputs))
    for part in (0, 1):
        assert values(out, part) == [transformed(r) for r in inputs if r.partition == part], \
            f"output partition {part}: each input record's transform exactly once, in order"
    ends = [watermarks(broker.bootstrap, src, part, RU)[1] for part in (0, 1)]
    assert ends == [10, 10]
    assert group_committed(broker.bootstrap, group, src, [0, 1]) == ends, \
        "the group's committed offsets must be the input's end offsets"


def test_aborted_transaction_does_not_move_group_offsets(broker):
    """Offsets sent to a transaction are committed only with it: after a committed transaction
    with offset 3, an aborted one with offset 6 leaves the group at 3. The application rewinds
    to 3, processes again and commits: the group is at 6 and read_committed output holds each
    transform once (the aborted attempt's records only reach read_uncommitted)."""
    require_transactions(broker.bootstrap)
    require_group_coordinator(broker.bootstrap)
    src = create_topic(broker.bootstrap, "ctp-abort-in")
    dst = create_topic(broker.bootstrap, "ctp-abort-out")
    inputs = records("in", 6)
    send(plain_producer(broker.bootstrap), on(src, inputs))
    group = "ctp-abort-group"
    assert group_committed(broker.bootstrap, group, src, [0]) == [OFFSET_INVALID]

    p = txn_producer(broker.bootstrap, "ctp-abort")
    c = ctp_consumer(broker.bootstrap, group)
    c.subscribe([src])

    def process(batch, offset, commit):
        p.begin_transaction()
        for r in batch:
            p.produce(dst, key=r.key, value=transformed(r), partition=0)
        p.send_offsets_to_transaction([TopicPartition(src, 0, offset)], c.consumer_group_metadata(), TIMEOUT_S)
        if commit:
            p.commit_transaction(TIMEOUT_S)
        else:
            assert p.flush(TIMEOUT_S) == 0  # in the log before the abort
            p.abort_transaction(TIMEOUT_S)

    try:
        got = consume_n(c, 6)
        assert [r.offset for r in got] == list(range(6))
        process(got[:3], 3, commit=True)
        assert group_committed(broker.bootstrap, group, src, [0]) == [3]
        process(got[3:], 6, commit=False)
        assert group_committed(broker.bootstrap, group, src, [0]) == [3], \
            "an aborted transaction's offsets must not be committed"

        c.seek(TopicPartition(src, 0, 3))
        again = consume_n(c, 3)
        assert [r.offset for r in again] == [3, 4, 5]
        (pos,) = c.position([TopicPartition(src, 0)])
        assert pos.offset == 6
        process(again, pos.offset, commit=True)
    finally:
        c.close()
    assert group_committed(broker.bootstrap, group, src, [0]) == [6]
    out = read_all(broker.bootstrap, dst, RC, expect=6)
    assert values(out) == [transformed(r) for r in inputs], "each transform exactly once, in order"
    everything = read_all(broker.bootstrap, dst, RU, expect=9)
    assert values(everything) == [transformed(r) for r in inputs[:3] + inputs[3:] + inputs[3:]]


# --- transaction timeout ------------------------------------------------------------------------

def test_stalled_transaction_is_aborted_at_its_timeout(broker):
    """A producer with transaction.timeout.ms=2000 begins, sends 3 records and then stalls. The
    broker aborts the transaction once it is older than its timeout (Kafka checks every 10 s by
    default, so this waits up to TIMEOUT_S): a read_committed consumer then gets past it to a
    record written after it, and never gets its records. Kafka fences the epoch when it aborts
    on timeout, so the producer's late commit fails with a fatal fencing error."""
    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-timeout")
    a = txn_producer(broker.bootstrap, "txn-timeout", **{"transaction.timeout.ms": 2000})
    a.begin_transaction()
    started = time.monotonic()
    stalled = records("stalled", 3)
    send(a, on(topic, stalled))
    after = records("after", 1, ts=BASE_TS + 100)
    send(plain_producer(broker.bootstrap), on(topic, after))

    rc = reader(broker.bootstrap, topic, RC)
    try:
        got = consume_n(rc, 1, timeout=TIMEOUT_S)
    finally:
        rc.close()
    waited = time.monotonic() - started
    assert values(got) == values(after), "read_committed must get past the aborted transaction, not into it"
    assert waited >= 1.5, f"the transaction was aborted {waited:.1f}s after it began, before its 2 s timeout"
    assert watermarks(broker.bootstrap, topic, 0, RC) == (0, 5), "3 records, the later record, the abort marker"
    assert values(read_all(broker.bootstrap, topic, RU, expect=4)) == values(stalled + after)

    with pytest.raises(KafkaException) as e:
        a.commit_transaction(TIMEOUT_S)
    fenced_error(e.value.args[0], "commit_transaction after the broker aborted the transaction on timeout")
    assert values(read_all(broker.bootstrap, topic, RC)) == values(after)


def test_transaction_timeout_above_broker_maximum_is_refused(broker):
    """transaction.timeout.ms=3600000 is above the broker's maximum (Kafka's
    transaction.max.timeout.ms, 900000 by default): InitProducerId answers
    INVALID_TRANSACTION_TIMEOUT (50), which librdkafka raises from init_transactions as is."""
    require_transactions(broker.bootstrap)
    p = txn_producer(broker.bootstrap, "txn-too-long", init=False, **{"transaction.timeout.ms": 3_600_000})
    with pytest.raises(KafkaException) as e:
        p.init_transactions(TIMEOUT_S)
    err = e.value.args[0]
    assert err.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, f"expected INVALID_TRANSACTION_TIMEOUT, got {err}"
    # A timeout within the maximum is accepted for the same transactional.id.
    ok = txn_producer(broker.bootstrap, "txn-too-long", **{"transaction.timeout.ms": 900_000})
    ok.begin_transaction()
    ok.commit_transaction(TIMEOUT_S)


# --- admin ----------------------------------------------------------------------------------------

CONFLUENT_TXN_ADMIN = ("list_transactions", "describe_transactions")


@pytest.mark.skipif(not all(hasattr(AdminClient, n) for n in CONFLUENT_TXN_ADMIN),
                    reason=f"confluent-kafka {confluent_version()} AdminClient does not bind "
                           f"{' / '.join(CONFLUENT_TXN_ADMIN)} (KIP-664); kafka-python's are tested in "
                           "test_admin_list_and_describe_transactions_kafka_python")
def test_admin_list_and_describe_transactions_confluent(broker):
    pytest.fail("this confluent-kafka binds list_transactions/describe_transactions now: assert them here "
                "like test_admin_list_and_describe_transactions_kafka_python does", pytrace=False)


def test_admin_list_and_describe_transactions_kafka_python(broker):
    """kafka-python 3.0's KIP-664 admin calls: while a transaction is open, ListTransactions lists
    its transactional.id as Ongoing and DescribeTransactions reports its producer id, timeout,
    start time and partitions; after the commit it is CompleteCommit; an unknown id is
    TRANSACTIONAL_ID_NOT_FOUND."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTopicPartition
    from kafka.admin import TransactionState
    from kafka.errors import TransactionalIdNotFoundError

    require_transactions(broker.bootstrap)
    require_apis(broker.bootstrap, TXN_ADMIN_APIS, "transaction admin")
    topic = create_topic(broker.bootstrap, "txn-admin", partitions=2)
    txn_id = "txn-admin"
    p = txn_producer(broker.bootstrap, txn_id, **{"transaction.timeout.ms": 45000})
    began_ms = int(time.time() * 1000)
    p.begin_transaction()
    send(p, on(topic, records("admin", 2, partitions=2)))

    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        listed = [t for rows in a.list_transactions().values() for t in rows if t.transactional_id == txn_id]
        assert len(listed) == 1, f"ListTransactions must list {txn_id} once: {listed}"
        assert listed[0].state == TransactionState.ONGOING, listed
        d = a.describe_transactions([txn_id])[txn_id]
        assert d.state == TransactionState.ONGOING, d
        assert d.producer_id == listed[0].producer_id and d.producer_id >= 0, d
        assert d.producer_epoch >= 0, d
        assert d.transaction_timeout_ms == 45000, d
        assert began_ms - 5000 <= d.transaction_start_time_ms <= int(time.time() * 1000) + 5000, d
        assert d.topic_partitions == {KTopicPartition(topic, 0), KTopicPartition(topic, 1)}, d
        ongoing = [t.transactional_id for rows in a.list_transactions(state_filters=["Ongoing"]).values()
                   for t in rows]
        assert txn_id in ongoing

        p.commit_transaction(TIMEOUT_S)
        wait_until(lambda: a.describe_transactions([txn_id])[txn_id].state == TransactionState.COMPLETE_COMMIT,
                   f"{txn_id} described as CompleteCommit after the commit")
        ongoing = [t.transactional_id for rows in a.list_transactions(state_filters=["Ongoing"]).values()
                   for t in rows]
        assert txn_id not in ongoing, "a committed transaction is no longer Ongoing"
        with pytest.raises(TransactionalIdNotFoundError):
            a.describe_transactions(["never-used-txn-id"])
    finally:
        a.close()


# --- kafka-python and aiokafka ------------------------------------------------------------------

def test_kafka_python_commit_and_abort(broker):
    """kafka-python 3.0 (transactional_id, isolation_level): an aborted transaction of 4 records
    (sent and acknowledged first) and a committed one of 3; its read_committed consumer gets only
    the 3, its read_uncommitted consumer all 7, and librdkafka agrees."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTopicPartition

    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-kafka-python", partitions=2)
    aborted = [(i % 2, f"kp-aborted-{i}".encode()) for i in range(4)]
    committed = [(i % 2, f"kp-committed-{i}".encode()) for i in range(3)]

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-kafka-python",
                      request_timeout_ms=10000, max_block_ms=int(TIMEOUT_S * 1000))
    try:
        within(p.init_transactions, "init_transactions")
        for batch, commit in ((aborted, False), (committed, True)):
            p.begin_transaction()
            futures = [p.send(topic, value=v, partition=part) for part, v in batch]
            within(lambda: p.flush(timeout=TIMEOUT_S), "flush")
            for f in futures:
                f.get(timeout=TIMEOUT_S)
            if commit:
                within(p.commit_transaction, "commit_transaction")
            else:
                within(p.abort_transaction, "abort_transaction")
    finally:
        p.close(timeout=5)

    def consume(isolation, count):
        c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                          isolation_level=isolation, fetch_max_wait_ms=100, request_timeout_ms=10000)
        try:
            c.assign([KTopicPartition(topic, 0), KTopicPartition(topic, 1)])
            c.seek_to_beginning()
            out = []
            deadline = time.monotonic() + TIMEOUT_S
            while len(out) < count:
                assert time.monotonic() < deadline, f"{isolation}: consumed {len(out)} of {count} records"
                for recs in c.poll(timeout_ms=200).values():
                    out.extend((m.partition, m.value) for m in recs)
            end = time.monotonic() + 0.5
            while time.monotonic() < end:  # nothing more may come
                for recs in c.poll(timeout_ms=100).values():
                    out.extend((m.partition, m.value) for m in recs)
            return out
        finally:
            c.close()

    assert sorted(consume("read_committed", 3)) == sorted(committed)
    assert sorted(consume("read_uncommitted", 7)) == sorted(aborted + committed)
    assert sorted(values(read_all(broker.bootstrap, topic, RC, expect=3))) == sorted(v for _, v in committed)


def test_aiokafka_commit_and_abort(broker):
    """aiokafka 0.14 (transactional_id, isolation_level): the same as for kafka-python, with
    `async with producer.transaction()` for the committed one."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as ATopicPartition

    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-aiokafka", partitions=2)
    aborted = [(i % 2, f"aio-aborted-{i}".encode()) for i in range(4)]
    committed = [(i % 2, f"aio-committed-{i}".encode()) for i in range(3)]

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="txn-aiokafka",
                             request_timeout_ms=10000)
        await p.start()  # InitProducerId
        try:
            await p.begin_transaction()
            for part, v in aborted:
                await p.send_and_wait(topic, value=v, partition=part)
            await p.abort_transaction()
            async with p.transaction():
                for part, v in committed:
                    await p.send_and_wait(topic, value=v, partition=part)
        finally:
            await p.stop()

    async def consume(isolation, count):
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             isolation_level=isolation, fetch_max_wait_ms=100, request_timeout_ms=10000)
        await c.start()
        try:
            c.assign([ATopicPartition(topic, 0), ATopicPartition(topic, 1)])
            await c.seek_to_beginning()
            out = []
            deadline = time.monotonic() + TIMEOUT_S
            while len(out) < count:
                assert time.monotonic() < deadline, f"{isolation}: consumed {len(out)} of {count} records"
                for recs in (await c.getmany(timeout_ms=200)).values():
                    out.extend((m.partition, m.value) for m in recs)
            for recs in (await c.getmany(timeout_ms=500)).values():  # nothing more may come
                out.extend((m.partition, m.value) for m in recs)
            return out
        finally:
            await c.stop()

    async def go():
        await produce()
        return await consume("read_committed", 3), await consume("read_uncommitted", 7)

    got_rc, got_ru = asyncio.run(asyncio.wait_for(go(), timeout=60))
    assert sorted(got_rc) == sorted(committed)
    assert sorted(got_ru) == sorted(aborted + committed)
    assert sorted(values(read_all(broker.bootstrap, topic, RC, expect=3))) == sorted(v for _, v in committed)


# --- restart --------------------------------------------------------------------------------------

# Leaves two transactions open and waits to be SIGKILLed, like a crashed application: one with a
# short timeout on partition 0, one with a long timeout on partition 1.
OPEN_TRANSACTIONS = """
import sys, time
from confluent_kafka import Producer
bootstrap, topic = sys.argv[1], sys.argv[2]
errors = []
producers = []
for txn_id, timeout_ms, partition in (("restart-timeout", 3000, 0), ("restart-fenced", 60000, 1)):
    p = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id,
                  "transaction.timeout.ms": timeout_ms})
    p.init_transactions(20)
    p.begin_transaction()
    for i in range(2):
        p.produce(topic, value=f"{txn_id}-open-{i}".encode(), partition=partition,
                  on_delivery=lambda err, msg: err and errors.append(err))
    assert p.flush(20) == 0 and not errors, errors
    producers.append(p)
print("open", flush=True)
time.sleep(600)
"""


def test_transactions_survive_sigkill(broker, tmp_path):
    """A committed transaction and two open ones (their producer process SIGKILLed too), then the
    broker SIGKILLed and restarted: read_committed gets the committed records and none of the
    open ones; partition 1 stays held back behind its open transaction (a 60 s timeout), so a
    record written after the restart is not visible there; on partition 0 the open transaction's
    3 s timeout runs out and the broker aborts it, so the record after it becomes visible. New
    producers with both transactional.ids init (aborting the long one) and commit."""
    require_transactions(broker.bootstrap)
    topic = create_topic(broker.bootstrap, "txn-restart", partitions=2)
    committed = records("committed", 6, partitions=2)
    c = txn_producer(broker.bootstrap, "restart-committed")
    c.begin_transaction()
    send(c, on(topic, committed))
    c.commit_transaction(TIMEOUT_S)
    del c
    assert sorted(values(read_all(broker.bootstrap, topic, RC, expect=6))) == sorted(values(committed))

    out_path = tmp_path / "open-transactions.out"
    with open(out_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-c", OPEN_TRANSACTIONS, broker.bootstrap, topic],
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "open" in out_path.read_text() or proc.poll() is not None,
                   "the open transactions' producers")
        assert proc.poll() is None, f"the producer process failed:\n{out_path.read_text()}"
        broker.stop(kill=True)
    finally:
        if proc.poll() is None:
            proc.kill()  # SIGKILL: the producers never end their transactions
        proc.wait()
    broker.start()

    late = [Rec(0, None, b"late-0", [], BASE_TS + 500), Rec(1, None, b"late-1", [], BASE_TS + 501)]
    send(plain_producer(broker.bootstrap), on(topic, late))
    got = read_all(broker.bootstrap, topic, RC, expect=6)
    assert values(got, 1) == values(committed, 1), \
        "partition 1: the committed records, then nothing past the open transaction (LSO)"
    assert values(got, 0) in (values(committed, 0), values(committed, 0) + [b"late-0"]), \
        "partition 0: the committed records, and the later record only once the open one is aborted"

    wait_until(lambda: b"late-0" in values(read_all(broker.bootstrap, topic, RC, expect=6), 0),
               "the broker to abort the open transaction past its 3 s timeout after the restart")
    assert values(read_all(broker.bootstrap, topic, RC, expect=6), 1) == values(committed, 1), \
        "partition 1 must stay held back: its transaction's 60 s timeout has not run out"

    fencer = txn_producer(broker.bootstrap, "restart-fenced")  # aborts the long transaction
    fencer.begin_transaction()
    send(fencer, on(topic, [Rec(1, None, b"fencer-0", [], BASE_TS + 600)]))
    fencer.commit_transaction(TIMEOUT_S)
    again = txn_producer(broker.bootstrap, "restart-timeout")
    again.begin_transaction()
    send(again, on(topic, [Rec(0, None, b"again-0", [], BASE_TS + 700)]))
    again.commit_transaction(TIMEOUT_S)

    got = read_all(broker.bootstrap, topic, RC, expect=10)
    assert values(got, 0) == values(committed, 0) + [b"late-0", b"again-0"]
    assert values(got, 1) == values(committed, 1) + [b"late-1", b"fencer-0"]
    everything = read_all(broker.bootstrap, topic, RU, expect=14)
    assert values(everything, 0) == values(committed, 0) + [b"restart-timeout-open-0", b"restart-timeout-open-1",
                                                            b"late-0", b"again-0"]
    assert values(everything, 1) == values(committed, 1) + [b"restart-fenced-open-0", b"restart-fenced-open-1",
                                                            b"late-1", b"fencer-0"]
    for part in (0, 1):
        assert watermarks(broker.bootstrap, topic, part, RC) == watermarks(broker.bootstrap, topic, part, RU), \
            f"partition {part}: no transaction may be left open"
