"""A topic link on a cluster of three S3-WAL brokers: the broker copying a mirror partition is
SIGKILLed mid-copy while the source keeps taking writes; the copy resumes on another broker from
the acknowledged log end, and in the end every offset's bytes match the source's (no gap, no
duplicate)."""

import threading
import time

from brokers import KafkaProcess
from linkcheck import admin, batches, produce, wait_for


def test_the_broker_copying_a_mirror_partition_is_killed_mid_copy(make_cluster, tmp_path):
    c = make_cluster(wal="s3", store="file")
    for i in (1, 2, 3):
        c.add(i)
    c.wait_settled([1, 2, 3])
    source = KafkaProcess("automq", tmp_path / "source").start()
    try:
        partitions = 3
        source.create_topic("orders", partitions)
        assert not produce(source.bootstrap, "orders", 2000, partitions)[0]
        writer_errors = []

        def keep_writing():
            for round_ in range(20):
                writer_errors.extend(produce(source.bootstrap, "orders", 300, partitions, prefix=f"w{round_}")[0])
                time.sleep(0.1)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        entry = c.brokers[1]
        body = {"source": {"bootstrap_servers": source.bootstrap, "security_protocol": "PLAINTEXT"},
                "topics": [{"name": "orders"}]}
        assert admin(entry, "PUT", "/admin/v1/links/legacy", body)[0] == 200

        def copying():
            _, s = admin(c.brokers[1] if c.brokers[1].running() else c.brokers[2], "GET", "/admin/v1/links/legacy")
            parts = [p for t in s["topics"] for p in t["partition_states"]]
            return len(parts) == partitions and all(p["next_offset"] > 0 for p in parts) and parts

        parts = wait_for("every mirror partition to copy something", copying)
        leaders = {p["partition"]: None for p in parts}
        state = c.state(partitions=True)
        for p in state["partitions"]:
            if p["topic"] == "orders":
                leaders[p["partition"]] = p["leader"]
        victim = leaders[0]
        assert victim is not None
        c.kill(victim)
        survivors = [i for i in (1, 2, 3) if i != victim]
        c.wait_settled(survivors, timeout=30)
        writer.join()
        assert not writer_errors, writer_errors

        ends = {p: batches(source.bootstrap, "orders", p)[1] for p in range(partitions)}

        def leader(p):
            led = {q["partition"]: q["leader"] for q in c.state(partitions=True)["partitions"] if q["topic"] == "orders"}
            return c.brokers[led[p]].bootstrap

        wait_for("the mirror to catch up after the kill",
                 lambda: all(batches(leader(p), "orders", p)[1] == ends[p] for p in range(partitions)), timeout=90)
        for p in range(partitions):
            src, _ = batches(source.bootstrap, "orders", p)
            dst, _ = batches(leader(p), "orders", p)
            assert [b for b, _ in dst] == [b for b, _ in src], f"orders-{p}: batch offsets differ"
            assert dst == src, f"orders-{p}: bytes differ"
        print(f"killed broker {victim} mid-copy; {sum(ends.values())} records byte-identical on {survivors}")
    finally:
        source.kill()
