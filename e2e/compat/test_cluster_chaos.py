"""Randomized faults against a 4-broker cluster while an idempotent producer (acks=all) and a
consumer group run: SIGKILLs, SIGTERMs, pauses shorter and longer than the session timeout,
drains, the controller killed. The audit afterwards (workload.py) checks that no acknowledged
record was lost or doubled, offsets are contiguous, each partition keeps its order, and the
group resumed from its committed offsets.

The seed is printed and appears in every failure. CI runs a few steps; run longer with
`AUTOMQ_CHAOS_STEPS=200 e2e/run.sh e2e/compat/test_cluster_chaos.py -s`, and replay a failure
with `AUTOMQ_CHAOS_SEED=<seed>`."""

import os
import random
import time

from support import wait_until
from test_cluster import TOPIC_PARTITIONS, create
from workload import Workload

BROKERS = (1, 2, 3, 4)


def test_random_faults_lose_and_double_nothing(make_cluster):
    seed = int(os.environ.get("AUTOMQ_CHAOS_SEED", random.randrange(1 << 32)))
    steps = int(os.environ.get("AUTOMQ_CHAOS_STEPS", "6"))
    rng = random.Random(seed)
    print(f"chaos seed {seed}, {steps} steps (replay: AUTOMQ_CHAOS_SEED={seed})")
    c = make_cluster(wal="s3")
    for i in BROKERS:
        c.add(i)
    create(c.bootstrap(), "orders")
    c.wait_settled(list(BROKERS))
    w = Workload(c.bootstrap(), "orders", TOPIC_PARTITIONS).start()
    done = []
    try:
        for step in range(steps):
            time.sleep(rng.uniform(0.3, 1.5))
            victim = rng.choice(BROKERS)
            action = rng.choice(["kill", "term", "long_pause", "short_pause", "drain", "kill_controller"])
            if action == "kill_controller":
                victim = c.controller() or victim
                action = "kill"
            done.append(f"{step}:{action}:{victim}")
            b = c.brokers[victim]
            if action == "kill":
                c.kill(victim)
                time.sleep(rng.uniform(0, 2.5))
                b.start()
            elif action == "term":
                b.stop()
                b.start()
            elif action == "long_pause":
                c.pause(victim)
                # Past the controller timeout plus the session timeout (if it was the controller,
                # the others first elect a new one): declared dead, its WAL taken over.
                time.sleep(7.0)
                c.resume(victim)
                code = c.wait_exit(victim)
                assert code == 75, f"seed {seed}: a fenced broker exits with 75, got {code} ({done})"
                b.start()
            elif action == "short_pause":
                c.pause(victim)
                time.sleep(rng.uniform(0.1, 0.8))  # under the session timeout: nothing happens
                c.resume(victim)
            elif action == "drain":
                c.admin("POST", victim, f"/admin/v1/brokers/{victim}/drain")
                wait_until(lambda: c.leading().get(victim, 0) == 0, f"seed {seed}: drain of {victim}", timeout=30)
                c.admin("DELETE", victim, f"/admin/v1/brokers/{victim}/drain")
            c.wait_settled(list(BROKERS), timeout=60)
    finally:
        print(f"chaos seed {seed}: {done}")
    w.stop()
    try:
        report = w.audit()
    except AssertionError as e:
        raise AssertionError(f"seed {seed} (steps {done}): {e}") from e
    print(f"chaos seed {seed}: audit {report}")
