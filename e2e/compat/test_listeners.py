"""Per-listener settings (issue 12): an INTERNAL listener in plaintext and an EXTERNAL one with
SASL_SSL and SCRAM-SHA-512, on one broker and across a two-broker cluster. Each listener
enforces its own protocol; Metadata and FindCoordinator answer with the addresses of the
listener the client came in through (the advertised EXTERNAL name here is `localhost`, the
INTERNAL one `127.0.0.1`), so clients stay on their network. confluent-kafka and kcat."""

import subprocess
import time

from confluent_kafka import Consumer, Producer

from confluent_kafka.admin import AdminClient, NewTopic
from ports import free_port
from test_tls import fails, make_ca, install, issue, round_trip

USERS = {"admin": "admin-secret"}


def listener_args(root, internal, external, certificate, key):
    users = root / "users"
    users.mkdir(exist_ok=True)
    (users / "admin").write_text(USERS["admin"])
    return ["--listeners", f"INTERNAL://127.0.0.1:{internal},EXTERNAL://127.0.0.1:{external}",
            "--advertised-listeners", f"EXTERNAL://localhost:{external}",
            "--listener-security-protocol-map", "INTERNAL:PLAINTEXT,EXTERNAL:SASL_SSL",
            "--listener-option", "EXTERNAL:sasl.enabled.mechanisms=SCRAM-SHA-512",
            "--listener-option", f"EXTERNAL:ssl.certificate={certificate}",
            "--listener-option", f"EXTERNAL:ssl.key={key}",
            "--scram-users-dir", str(users)]


def pki(root):
    d = root / "pki"
    d.mkdir(exist_ok=True)
    ca = make_ca(d, "listeners-ca")
    cert, key = install(d, *issue(ca))
    return ca[2], cert, key


def external_config(port, ca, **extra):
    return {"bootstrap.servers": f"localhost:{port}", "security.protocol": "SASL_SSL", "ssl.ca.location": str(ca),
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "admin", "sasl.password": USERS["admin"], **extra}


def brokers_seen(config):
    a = AdminClient(config)
    md = a.list_topics(timeout=10)
    return sorted(f"{b.host}:{b.port}" for b in md.brokers.values())


def test_internal_plaintext_and_external_sasl_ssl_on_one_broker(make_broker, tmp_path):
    ca, cert, key = pki(tmp_path)
    internal, external = free_port(), free_port()
    make_broker(args=listener_args(tmp_path, internal, external, cert, key))
    inside = {"bootstrap.servers": f"127.0.0.1:{internal}"}
    outside = external_config(external, ca)
    admin = AdminClient(inside)
    admin.create_topics([NewTopic("split", 1, 1)])["split"].result(20)

    # Each listener tells its clients about itself.
    assert brokers_seen(inside) == [f"127.0.0.1:{internal}"]
    assert brokers_seen(outside) == [f"localhost:{external}"]
    round_trip(inside, "split", "from the inside")
    round_trip(outside, "split", "from the outside")

    # EXTERNAL requires TLS and SCRAM: plaintext, PLAIN and a wrong password get nowhere;
    # INTERNAL speaks no TLS.
    assert fails({"bootstrap.servers": f"127.0.0.1:{external}"})
    assert fails(external_config(external, ca, **{"sasl.mechanism": "PLAIN"}))
    assert fails(external_config(external, ca, **{"sasl.password": "wrong"}))
    assert fails({"bootstrap.servers": f"127.0.0.1:{internal}", "security.protocol": "SSL",
                  "ssl.ca.location": str(ca)})

    # kcat on both.
    subprocess.run(["kcat", "-b", f"127.0.0.1:{internal}", "-P", "-t", "split"], input=b"kcat inside\n",
                   check=True, timeout=60)
    kcat_out = ["kcat", "-b", f"localhost:{external}", "-X", "security.protocol=SASL_SSL", "-X",
                f"ssl.ca.location={ca}", "-X", "sasl.mechanisms=SCRAM-SHA-512", "-X", "sasl.username=admin",
                "-X", f"sasl.password={USERS['admin']}"]
    out = subprocess.run(kcat_out + ["-C", "-t", "split", "-o", "beginning", "-e", "-q"], capture_output=True,
                         timeout=60, check=True).stdout.decode()
    assert "kcat inside" in out and "from the outside" in out, out


def test_a_cluster_advertises_each_brokers_address_per_listener(make_cluster, tmp_path):
    ca, cert, key = pki(tmp_path)
    cluster = make_cluster()
    ports = {}
    for node in (1, 2):
        ports[node] = (free_port(), free_port())
        cluster.add(node, args=listener_args(tmp_path, *ports[node], cert, key))
    cluster.wait_settled([1, 2])
    inside = {"bootstrap.servers": f"127.0.0.1:{ports[1][0]}"}
    outside = external_config(ports[1][1], ca)
    assert brokers_seen(inside) == sorted(f"127.0.0.1:{ports[n][0]}" for n in (1, 2))
    assert brokers_seen(outside) == sorted(f"localhost:{ports[n][1]}" for n in (1, 2))
    admin = AdminClient(inside)
    admin.create_topics([NewTopic("spread", 4, 1)])["spread"].result(20)
    cluster.wait_settled([1, 2])
    # Partitions led by either broker, and a group coordinator found on the client's listener.
    leaders = {p.leader for p in admin.list_topics("spread", timeout=10).topics["spread"].partitions.values()}
    assert leaders == {1, 2}, leaders
    for config, label in ((outside, "external"), (inside, "internal")):
        p = Producer(config)
        for partition in range(4):
            p.produce("spread", f"{label}-{partition}".encode(), partition=partition)
        assert p.flush(30) == 0
        c = Consumer({**config, "group.id": f"g-{label}", "auto.offset.reset": "earliest"})
        want = {f"{label}-{partition}" for partition in range(4)}
        got = set()
        try:
            c.subscribe(["spread"])
            deadline = time.monotonic() + 30
            while not want <= got and time.monotonic() < deadline:
                m = c.poll(0.5)
                if m is not None and not m.error():
                    got.add(m.value().decode())
        finally:
            c.close()
        assert want <= got, (label, got)


def test_bad_listener_settings_stop_the_broker_with_the_reason(tmp_path, broker_bin):
    cases = [
        (["--listeners", "CLIENT://127.0.0.1:0"], "no protocol"),
        (["--listeners", "A://127.0.0.1:0", "--listener-security-protocol-map", "A:SSL"], "no certificate"),
        (["--listeners", "A://127.0.0.1:0", "--listener-security-protocol-map", "A:SASL_PLAINTEXT"],
         "no SASL mechanism"),
        (["--listener-option", "A:ssl.key=/k"], "need --listeners"),
    ]
    for args, why in cases:
        r = subprocess.run([str(broker_bin), "--data-dir", str(tmp_path / "d"), "--http-listen", "127.0.0.1:0",
                            *args], capture_output=True, timeout=60)
        assert r.returncode != 0 and why in (r.stdout + r.stderr).decode(), (args, r.stderr.decode()[-500:])
