"""Topic links from a secured source (issue 12): the source is one of our brokers with SASL_SSL
and SCRAM-SHA-512 (and, in the second test, SASL_PLAINTEXT with PLAIN). The link mirrors a topic
at the same offsets with the same records, syncs a consumer group's offsets (its coordinator is
reached through the same TLS and SASL settings), and a wrong password shows up in the link's
status and copies nothing. The group sync works when the target's own listener requires SASL. The link's password never appears in what the admin API returns."""

import json
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from linkcheck import admin, wait_for
from test_tls import make_ca, install, issue

PASSWORD = "source-secret"


def source_broker(make_broker, tmp_path, protocol):
    users = tmp_path / "source-users"
    users.mkdir()
    (users / "linker").write_text(PASSWORD)
    args = ["--sasl-mechanisms", "PLAIN,SCRAM-SHA-512", "--scram-users-dir", str(users)]
    ca_pem = None
    if protocol == "SASL_SSL":
        d = tmp_path / "pki"
        d.mkdir()
        ca = make_ca(d, "source-ca")
        cert, key = install(d, *issue(ca))
        args += ["--tls-cert", str(cert), "--tls-key", str(key)]
        ca_pem = ca[2].read_text()
    return make_broker(args=args, name="source"), ca_pem


def client(source, protocol, ca_pem, tmp_path, mechanism="SCRAM-SHA-512", **extra):
    config = {"bootstrap.servers": source.bootstrap, "security.protocol": protocol, "sasl.mechanism": mechanism,
              "sasl.username": "linker", "sasl.password": PASSWORD, **extra}
    if ca_pem:
        path = tmp_path / "client-ca.pem"
        path.write_text(ca_pem)
        config["ssl.ca.location"] = str(path)
    return config


def link_body(source, protocol, mechanism, ca_pem, password=PASSWORD):
    body = {"source": {"bootstrap_servers": source.bootstrap, "security_protocol": protocol,
                       "sasl_mechanism": mechanism, "username": "linker", "password": password},
            "topics": [{"name": "orders"}], "consumer_groups": [{"name": "billing"}]}
    if ca_pem:
        body["source"]["ca_pem"] = ca_pem
    return body


def records(config, topic, count):
    c = Consumer({**config, "group.id": f"reader-{time.monotonic_ns()}", "enable.auto.commit": False})
    out = []
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 30
        while len(out) < count and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                out.append((m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return out


def mirror_and_sync(make_broker, tmp_path, protocol, mechanism, secured_target=False):
    source, ca_pem = source_broker(make_broker, tmp_path, protocol)
    plain = {}
    if secured_target:
        # The target's own listener requires SASL too: the group sync must not need it.
        users = tmp_path / "target-users"
        users.mkdir()
        (users / "reader").write_text("reader-secret")
        target = make_broker(name="target", args=["--sasl-mechanisms", "PLAIN", "--scram-users-dir", str(users)])
        plain = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN", "sasl.username": "reader",
                 "sasl.password": "reader-secret"}
    else:
        target = make_broker(name="target")
    src = client(source, protocol, ca_pem, tmp_path, mechanism)
    a = AdminClient(src)
    a.create_topics([NewTopic("orders", 1, 1)])["orders"].result(20)
    p = Producer(src)
    for i in range(50):
        p.produce("orders", key=f"k{i}".encode(), value=f"order {i}".encode())
    assert p.flush(20) == 0
    # The group "billing" has read 20 records on the source.
    c = Consumer({**src, "group.id": "billing", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("orders", 0, 20)], asynchronous=False)
    c.close()

    status, _ = admin(target, "PUT", "/admin/v1/links/legacy", link_body(source, protocol, mechanism, ca_pem))
    assert status == 200
    wait_for("the mirror to catch up", lambda: (lambda s: s["topics"] and s["topics"][0]["lag"] == 0
                                                and s["topics"][0]["partition_states"][0]["next_offset"] == 50)(
        admin(target, "GET", "/admin/v1/links/legacy")[1]))
    plain = {"bootstrap.servers": target.bootstrap, **plain}
    assert records(plain, "orders", 50) == records(src, "orders", 50), "same offsets, keys and values"

    def synced():
        t = AdminClient(plain)
        from confluent_kafka import ConsumerGroupTopicPartitions
        got = t.list_consumer_group_offsets([ConsumerGroupTopicPartitions("billing")])["billing"].result(20)
        return [tp.offset for tp in got.topic_partitions if tp.topic == "orders"] == [20]

    wait_for("the group's offset to be synced", synced, timeout=30)
    for path in ("/admin/v1/links/legacy", "/admin/v1/links"):
        status, body = admin(target, "GET", path)
        assert PASSWORD not in json.dumps(body), f"{path} shows the source password"
    return source, target, ca_pem


def test_a_link_mirrors_and_syncs_groups_from_a_sasl_ssl_source(make_broker, tmp_path):
    source, target, ca_pem = mirror_and_sync(make_broker, tmp_path, "SASL_SSL", "SCRAM-SHA-512")
    # A second link with a wrong password: the reason shows in its status, nothing is copied.
    body = link_body(source, "SASL_SSL", "SCRAM-SHA-512", ca_pem, password="wrong")
    body["topics"] = [{"name": "orders-2"}]
    body["consumer_groups"] = []
    assert admin(target, "PUT", "/admin/v1/links/wrong", body)[0] == 200

    def refused():
        s = admin(target, "GET", "/admin/v1/links/wrong")[1]
        return "refused the login" in json.dumps(s) and s

    wait_for("the wrong password to show in the link status", refused, timeout=30)


def test_a_link_from_a_sasl_plaintext_source_with_plain_into_a_sasl_target(make_broker, tmp_path):
    mirror_and_sync(make_broker, tmp_path, "SASL_PLAINTEXT", "PLAIN", secured_target=True)


def test_invalid_secured_sources_are_refused_with_the_reason(make_broker):
    target = make_broker(name="target")
    body = {"source": {"bootstrap_servers": "127.0.0.1:1", "security_protocol": "SASL_SSL",
                       "sasl_mechanism": "GSSAPI", "username": "u", "password": "p"},
            "topics": [{"name": "t"}]}
    status, answer = admin(target, "PUT", "/admin/v1/links/bad", body)
    assert status == 400 and "sasl_mechanism" in answer["error"], answer
    body["source"]["sasl_mechanism"] = "SCRAM-SHA-256"
    del body["source"]["password"]
    status, answer = admin(target, "PUT", "/admin/v1/links/bad", body)
    assert status == 400 and "password" in answer["error"], answer
