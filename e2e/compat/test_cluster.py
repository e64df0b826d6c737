"""Several brokers on one bucket as one Kafka cluster, with real clients (confluent-kafka)
running through scale-out and scale-in, SIGKILL, SIGSTOP/SIGCONT, a killed controller and a
drain. Every scenario ends with the workload audit (see workload.py): nothing acknowledged is
lost or doubled, offsets stay contiguous, order holds, the group resumes where it committed."""

import time

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from support import wait_until
from workload import Workload

TOPIC_PARTITIONS = 12


def create(bootstrap, name, partitions=TOPIC_PARTITIONS):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(name, partitions, 1)])[name].result(30)


def leaders(bootstrap, topic):
    md = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return {p: m.leader for p, m in md.topics[topic].partitions.items()}, sorted(md.brokers)


def led_by(cluster, node_id):
    return sum(1 for p in cluster.state(partitions=True)["partitions"] if p["leader"] == node_id)


def three_with_clients(make_cluster, wal, store="file"):
    """Brokers 1-3, the topic, settled, with the audited workload running for a moment."""
    c = make_cluster(wal=wal, store=store)
    for i in (1, 2, 3):
        c.add(i)
    create(c.bootstrap(), "orders")
    c.wait_settled([1, 2, 3])
    w = Workload(c.bootstrap(), "orders", TOPIC_PARTITIONS).start()
    time.sleep(1.5)
    return c, w


def test_three_brokers_spread_partitions_and_serve_a_group(make_cluster):
    c = make_cluster(wal="file")
    for i in (1, 2, 3):
        c.add(i)
    create(c.bootstrap(), "orders")
    s = c.wait_settled([1, 2, 3])
    assert s["controller"]["node_id"] in (1, 2, 3)
    by_partition, brokers = leaders(c.bootstrap(), "orders")
    assert brokers == [1, 2, 3], "Metadata lists every broker"
    assert set(by_partition.values()) == {1, 2, 3}, f"leaders spread over the brokers: {by_partition}"
    w = Workload(c.bootstrap(), "orders", TOPIC_PARTITIONS).start()
    time.sleep(3)
    w.stop()
    report = w.audit()
    assert report["acked"] > 500, report


# Each S3-WAL scenario runs with the bucket in a local directory and on SeaweedFS.
STORES = pytest.mark.parametrize("store", ["file", "s3"])


@STORES
def test_scale_out_to_six_and_back_to_three_while_clients_run(make_cluster, store):
    c = make_cluster(wal="s3", store=store)
    for i in (1, 2, 3):
        c.add(i)
    create(c.bootstrap(), "orders")
    c.wait_settled([1, 2, 3])
    w = Workload(c.bootstrap(), "orders", TOPIC_PARTITIONS).start()
    time.sleep(1)
    started = time.monotonic()
    for i in (4, 5, 6):
        c.add(i)
    c.wait_settled([1, 2, 3, 4, 5, 6])
    scale_out = time.monotonic() - started
    wait_until(lambda: all(n >= 3 for n in c.leading().values()), "every new broker to take its share", timeout=10)
    time.sleep(1)
    for i in (6, 5, 4):
        c.brokers[i].stop()  # SIGTERM: a planned shutdown hands the partitions off first
    c.wait_settled([1, 2, 3])
    time.sleep(1)
    w.stop()
    report = w.audit()
    print(f"scale-out to 6 settled in {scale_out:.1f} s; audit {report}")


@STORES
def test_a_killed_s3_wal_broker_loses_nothing_and_its_partitions_move(make_cluster, store):
    c, w = three_with_clients(make_cluster, "s3", store)
    victim = next(i for i in (1, 2, 3) if i != c.controller())
    had = led_by(c, victim)
    assert had > 0
    killed = time.monotonic()
    c.kill(victim)
    wait_until(lambda: led_by(c, victim) == 0 and c.settled([i for i in (1, 2, 3) if i != victim]),
               "the dead broker's partitions to reopen elsewhere", timeout=20)
    moved_after = time.monotonic() - killed
    time.sleep(1)
    c.brokers[victim].start()
    c.wait_settled([1, 2, 3])
    w.stop()
    report = w.audit()
    print(f"{had} partitions writable elsewhere {moved_after:.1f} s after SIGKILL (session timeout 1.5 s); {report}")


@STORES
def test_a_paused_broker_is_fenced_and_acknowledges_nothing_after(make_cluster, store):
    c, w = three_with_clients(make_cluster, "s3", store)
    victim = next(i for i in (1, 2, 3) if i != c.controller())
    c.pause(victim)
    wait_until(lambda: led_by(c, victim) == 0 and c.settled([i for i in (1, 2, 3) if i != victim]),
               "the paused broker's partitions to move", timeout=20)
    time.sleep(1)
    c.resume(victim)
    code = c.wait_exit(victim)
    assert code == 75, f"a fenced broker exits with EX_TEMPFAIL (75), got {code}"
    c.brokers[victim].start()
    c.wait_settled([1, 2, 3])
    w.stop()
    w.audit()


@STORES
def test_the_controller_killed_another_takes_over(make_cluster, store):
    c, w = three_with_clients(make_cluster, "s3", store)
    old = c.controller()
    c.kill(old)
    wait_until(lambda: c.controller() not in (None, old), "a new controller", timeout=20)
    c.wait_settled([i for i in (1, 2, 3) if i != old])
    c.brokers[old].start()
    c.wait_settled([1, 2, 3])
    w.stop()
    w.audit()


def test_file_wal_partitions_wait_for_their_broker_and_a_drain_empties_one(make_cluster):
    c, w = three_with_clients(make_cluster, "file")
    victim = next(i for i in (1, 2, 3) if i != c.controller())
    had = led_by(c, victim)
    c.kill(victim)
    time.sleep(3)  # twice the session timeout: declared dead
    s = c.state(partitions=True)
    assert not next(b for b in s["brokers"] if b["node_id"] == victim)["alive"]
    waiting = [p for p in s["partitions"] if p["assigned"] == victim]
    assert len(waiting) == had and all(p["leader"] is None for p in waiting), \
        "a dead file-WAL broker's partitions wait for it (what it acknowledged is on its disk)"
    c.brokers[victim].start()
    c.wait_settled([1, 2, 3])

    status, body = c.admin("POST", victim, f"/admin/v1/brokers/{victim}/drain")
    assert status == 202 and body["draining"], body
    wait_until(lambda: led_by(c, victim) == 0, "the drained broker to lead nothing", timeout=20)
    assert c.state()["brokers"][victim - 1]["draining"]
    c.admin("DELETE", victim, f"/admin/v1/brokers/{victim}/drain")
    c.wait_settled([1, 2, 3])
    w.stop()
    w.audit()


def test_on_seaweedfs_a_drain_and_a_killed_broker_lose_nothing(make_cluster):
    """The same cluster with its bucket on a real S3 server (SeaweedFS): metadata log, WALs and
    data objects all in S3."""
    c, w = three_with_clients(make_cluster, "s3", store="s3")
    victim = next(i for i in (1, 2, 3) if i != c.controller())
    c.admin("POST", victim, f"/admin/v1/brokers/{victim}/drain")
    wait_until(lambda: led_by(c, victim) == 0, "the drain", timeout=30)
    c.admin("DELETE", victim, f"/admin/v1/brokers/{victim}/drain")
    c.wait_settled([1, 2, 3])
    c.kill(victim)
    wait_until(lambda: led_by(c, victim) == 0 and c.settled([i for i in (1, 2, 3) if i != victim]),
               "the dead broker's partitions to reopen elsewhere", timeout=30)
    c.brokers[victim].start()
    c.wait_settled([1, 2, 3])
    w.stop()
    w.audit()
