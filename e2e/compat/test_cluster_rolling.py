"""A rolling restart of every broker while an idempotent producer and a consumer group run
(issue 13), done the way the operator does it (`operator/src/cluster/rolling.rs`): one broker at
a time, drained first (its partitions moved away), stopped once it leads nothing, started again,
and only when it is back and ready is its drain cancelled and the next one taken. The audit
afterwards: nothing acknowledged lost, nothing doubled, offsets contiguous, the group resumed
where it committed. The longest stall any partition's writes saw is printed (target < 2 s)."""

import time

import pytest

from support import wait_until
from test_cluster import led_by, three_with_clients


def restart_one(c, node_id):
    """Drain, stop (SIGTERM), start, cancel the drain, wait for the cluster to settle."""
    status, body = c.admin("POST", node_id, f"/admin/v1/brokers/{node_id}/drain")
    assert status == 202 and body["draining"], body
    wait_until(lambda: led_by(c, node_id) == 0, f"broker {node_id} to lead nothing", timeout=30)
    c.brokers[node_id].stop()
    assert c.brokers[node_id].exit_codes[-1] == 0, f"broker {node_id} exited {c.brokers[node_id].exit_codes}"
    c.brokers[node_id].start()  # returns once its /readyz answers: registered, storage writable
    wait_until(lambda: any(b["node_id"] == node_id and b["alive"] for b in c.state()["brokers"]),
               f"broker {node_id} alive again in the controller's view", timeout=30)
    c.admin("DELETE", node_id, f"/admin/v1/brokers/{node_id}/drain")
    c.wait_settled(list(c.brokers))


@pytest.mark.parametrize("wal", ["file", "s3"])
def test_rolling_restart_of_every_broker_loses_nothing(make_cluster, wal):
    c, w = three_with_clients(make_cluster, wal)
    started = time.monotonic()
    for node_id in (1, 2, 3):
        restart_one(c, node_id)
    rolled = time.monotonic() - started
    time.sleep(1)
    pause, partition = w.longest_pause(started, time.monotonic())
    w.stop()
    report = w.audit()
    assert all(b.starts == 2 for b in c.brokers.values()), "every broker was restarted once"
    print(f"rolling restart of 3 {wal}-WAL brokers took {rolled:.1f} s; longest stall of a partition's "
          f"writes {pause * 1000:.0f} ms (partition {partition}; target < 2 s); audit {report}")
