"""Routine load from secured Kafka (issue 12): a job reads a broker of ours that requires
SASL_SSL with SCRAM-SHA-512 (the CA given by `property.ssl.ca.location`), and one that requires
SASL_PLAINTEXT with PLAIN; the password never shows in SHOW ROUTINE LOAD; a job with a wrong
password is refused when created, with the reason."""

import json

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from brokers import KafkaProcess
from test_routine_load import count, setup_db, show, wait_for
from tlscerts import Ca

PASSWORD = "loader-secret"


class SecuredKafka(KafkaProcess):
    """Our broker with SASL (and TLS when given a certificate pair)."""

    def __init__(self, root, mechanisms, tls=None):
        super().__init__("automq", root)
        users = self.root / "users"
        users.mkdir()
        (users / "loader").write_text(PASSWORD)
        self.extra = ["--sasl-mechanisms", mechanisms, "--scram-users-dir", str(users)]
        if tls:
            self.extra += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]

    def command(self):
        return super().command() + self.extra


def client(kafka, protocol, mechanism, ca=None):
    config = {"bootstrap.servers": kafka.bootstrap, "security.protocol": protocol, "sasl.mechanism": mechanism,
              "sasl.username": "loader", "sasl.password": PASSWORD}
    if ca:
        config["ssl.ca.location"] = str(ca)
    return config


def fill(config, topic, n):
    admin = AdminClient(config)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    p = Producer(config)
    for i in range(n):
        p.produce(topic, json.dumps({"id": i, "who": f"u{i}"}).encode())
    assert p.flush(30) == 0


def create_job(cur, name, kafka, topic, properties):
    props = "".join(f', "property.{k}" = "{v}"' for k, v in properties.items())
    cur.execute(f"""CREATE ROUTINE LOAD shop.{name} ON users_{name}
        PROPERTIES ("format" = "json", "max_batch_interval" = "0.2")
        FROM KAFKA ("kafka_broker_list" = "{kafka.bootstrap}", "kafka_topic" = "{topic}",
                    "property.kafka_default_offsets" = "OFFSET_BEGINNING"{props})""")


def test_routine_load_over_sasl_ssl_and_sasl_plaintext(tmp_path, node):
    ca = Ca(tmp_path, "kafka-ca")
    cert_pem, key_pem, _ = ca.issue()
    (tmp_path / "kafka.pem").write_bytes(cert_pem)
    (tmp_path / "kafka.key").write_bytes(key_pem)
    ssl = SecuredKafka(tmp_path / "ssl", "SCRAM-SHA-512", (tmp_path / "kafka.pem", tmp_path / "kafka.key")).start()
    plain = SecuredKafka(tmp_path / "plain", "PLAIN").start()
    try:
        fill(client(ssl, "SASL_SSL", "SCRAM-SHA-512", ca.path), "events", 200)
        fill(client(plain, "SASL_PLAINTEXT", "PLAIN"), "events", 150)
        conn, cur = setup_db(node)
        for name in ("tls", "plain", "wrong"):
            cur.execute(f"CREATE TABLE users_{name} (id BIGINT NOT NULL, who VARCHAR(20)) PRIMARY KEY (id) "
                        "DISTRIBUTED BY HASH(id)")
        create_job(cur, "tls", ssl, "events", {"security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512",
                                               "sasl.username": "loader", "sasl.password": PASSWORD,
                                               "ssl.ca.location": ca.path})
        create_job(cur, "plain", plain, "events", {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                                                   "sasl.username": "loader", "sasl.password": PASSWORD})
        wait_for("200 rows over SASL_SSL", lambda: count(cur, "users_tls") == 200)
        wait_for("150 rows over SASL_PLAINTEXT", lambda: count(cur, "users_plain") == 150)
        job = show(cur, "tls")
        assert PASSWORD not in json.dumps(job), "SHOW ROUTINE LOAD shows the password"
        assert json.loads(job["CustomProperties"])["sasl.password"] == "******"

        # A wrong password: the job is refused when created (the topic is checked then), with
        # the reason, and nothing is loaded.
        try:
            create_job(cur, "wrong", plain, "events", {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                                                       "sasl.username": "loader", "sasl.password": "not-it"})
        except Exception as e:  # pymysql's OperationalError
            assert "SaslAuthenticationFailed" in str(e) and "not-it" not in str(e), e
        else:
            raise AssertionError("a job with a wrong password was created")
        assert show(cur, "wrong", all_=True) is None and count(cur, "users_wrong") == 0
    finally:
        ssl.kill()
        plain.kill()


def test_secured_jobs_are_checked_when_created(node):
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE t (id BIGINT NOT NULL) PRIMARY KEY (id) DISTRIBUTED BY HASH(id)")
    base = """CREATE ROUTINE LOAD shop.j ON t PROPERTIES ("format" = "json")
        FROM KAFKA ("kafka_broker_list" = "127.0.0.1:1", "kafka_topic" = "x" {})"""
    for props, why in [(', "property.security.protocol" = "SASL_SSL"', "sasl.username"),
                       (', "property.security.protocol" = "KERBEROS"', "security.protocol"),
                       (', "property.sasl.mechanism" = "GSSAPI"', "not supported")]:
        try:
            cur.execute(base.format(props))
        except Exception as e:  # pymysql raises its own error classes
            assert why in str(e), (props, e)
        else:
            raise AssertionError(f"{props} was accepted")
