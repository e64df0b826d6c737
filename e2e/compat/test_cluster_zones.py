"""Zone-aware routing: brokers in zones a, b and c; a producer and a consumer that say they are
in zone b (a zone in the client id, and client.rack) talk to zone b's broker only: it is
every partition's leader in their Metadata, it relays their produce to the real leaders
through the bucket, and it serves their fetches from the bucket. Nothing is lost or doubled,
and the other zones' brokers get no Produce or Fetch request from these clients."""

import re
import urllib.request

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from support import wait_until
from test_cluster import create

ZONES = {1: "a", 2: "b", 3: "c"}


def metric(broker, name, api=None):
    with urllib.request.urlopen(broker.http + "/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (api is None or f'api="{api}"' in line):
            m = re.search(r"\s([0-9.e+]+)$", line)
            if m:
                total += float(m.group(1))
    return total


def test_a_zoned_client_only_talks_to_its_zone(make_cluster):
    c = make_cluster(wal="s3")
    for i, zone in ZONES.items():
        c.add(i, rack=zone)
    create(c.bootstrap(), "orders", partitions=6)
    s = c.wait_settled([1, 2, 3])
    led_elsewhere = [p for p in s["partitions"] if p["topic"] == "orders" and p["leader"] != 2]
    assert led_elsewhere, "some partitions are led outside zone b (else the test proves nothing)"
    zone_b = c.brokers[2]
    client = {"bootstrap.servers": zone_b.bootstrap, "client.id": "orders-svc,automq_az=b", "client.rack": "b"}

    md = AdminClient(client).list_topics("orders", timeout=10)
    assert {p.leader for p in md.topics["orders"].partitions.values()} == {2}, \
        "a zone-b client sees zone b's broker as every partition's leader"

    others = [c.brokers[1], c.brokers[3]]
    before = {b.name: (metric(b, "automq_broker_requests_total", "Produce"),
                       metric(b, "automq_broker_requests_total", "Fetch")) for b in others}
    p = Producer({**client, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    acked = {}

    def done(err, msg):
        assert err is None, err
        acked[msg.value().decode()] = (msg.partition(), msg.offset())
    for i in range(600):
        p.produce("orders", f"v{i}".encode(), key=str(i % 13).encode(), on_delivery=done)
    assert p.flush(60) == 0
    assert len(acked) == 600

    cons = Consumer({**client, "group.id": "zoned", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    cons.subscribe(["orders"])
    seen = {}
    try:
        def read_all():
            msg = cons.poll(0.2)
            if msg is not None and not msg.error():
                seen[msg.value().decode()] = (msg.partition(), msg.offset())
            return len(seen) >= 600
        wait_until(read_all, "the zoned consumer to read everything", timeout=60, interval=0)
    finally:
        cons.close()
    assert seen == acked, "every record once, where it was acknowledged"

    for b in others:
        produce, fetch = (metric(b, "automq_broker_requests_total", "Produce"),
                          metric(b, "automq_broker_requests_total", "Fetch"))
        assert (produce, fetch) == before[b.name], \
            f"broker {b.name} (another zone) got Produce/Fetch requests from zone b's clients"
    assert metric(zone_b, "automq_broker_zone_relayed_produce_bytes") > 0
    assert metric(zone_b, "automq_broker_zone_fetch_bytes") > 0
