"""SASL authentication on the Kafka listener (issue 12, first part): SASL_PLAINTEXT with PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512 against SCRAM credentials the cluster stores salted and hashed,
managed with confluent-kafka's AlterUserScramCredentials / DescribeUserScramCredentials, with
kcat as a second client. A wrong password and an unknown user are refused the same way; a
client that does not authenticate gets nothing; failures are counted; users survive a SIGKILL.
(TLS, ACLs and the query node's users are later parts of the issue.)"""

import re
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
MECHANISMS = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"


@pytest.fixture
def secured(make_broker):
    return make_broker(args=["--sasl-mechanisms", MECHANISMS, "--sasl-bootstrap-user", ADMIN],
                       env={"AUTOMQ_SASL_BOOTSTRAP_PASSWORD": ADMIN_PASSWORD})


def client_config(broker, user, password, mechanism="SCRAM-SHA-512", **extra):
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}


def round_trip(broker, user, password, mechanism, topic):
    p = Producer(client_config(broker, user, password, mechanism))
    p.produce(topic, f"from {user} via {mechanism}".encode())
    assert p.flush(20) == 0, f"{user} could not produce with {mechanism}"
    c = Consumer(client_config(broker, user, password, mechanism, **{"group.id": f"g-{user}-{mechanism}",
                                                                     "auto.offset.reset": "earliest"}))
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(m == f"from {user} via {mechanism}" for m in got):
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value().decode())
        assert f"from {user} via {mechanism}" in got, got
    finally:
        c.close()


def auth_error(config):
    """The error a client with `config` gets (it must get one)."""
    errors = []
    a = AdminClient({**config, "error_cb": errors.append})
    with pytest.raises(KafkaException) as e:
        a.list_topics(timeout=5)
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        a.poll(0.1)
    return e.value, errors


def failures(broker, mechanism):
    m = re.search(r'automq_broker_authentications_total\{mechanism="' + mechanism + r'",result="failure"\} (\d+)',
                  broker.metrics())
    return int(m.group(1)) if m else 0


def test_users_authenticate_with_scram_and_plain_and_are_managed_through_the_admin_api(secured):
    admin = AdminClient(client_config(secured, ADMIN, ADMIN_PASSWORD))
    admin.create_topics([NewTopic("secured", 1, 1)])["secured"].result(20)
    round_trip(secured, ADMIN, ADMIN_PASSWORD, "SCRAM-SHA-512", "secured")

    # A new user, both SCRAM mechanisms, through AlterUserScramCredentials.
    upserts = [UserScramCredentialUpsertion("alice", ScramCredentialInfo(m, 8192), b"alice-secret")
               for m in (ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)]
    for f in admin.alter_user_scram_credentials(upserts).values():
        f.result(20)
    described = admin.describe_user_scram_credentials(["alice"])["alice"].result(20)
    assert sorted((i.mechanism, i.iterations) for i in described.scram_credential_infos) == [
        (ScramMechanism.SCRAM_SHA_256, 8192), (ScramMechanism.SCRAM_SHA_512, 8192)]
    everyone = admin.describe_user_scram_credentials().result(20)
    assert set(everyone) == {ADMIN, "alice"}, everyone
    for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"):
        round_trip(secured, "alice", "alice-secret", mechanism, "secured")

    # Deleting a mechanism's credential takes that mechanism away only.
    admin.alter_user_scram_credentials([UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_256)])[
        "alice"].result(20)
    err, _ = auth_error(client_config(secured, "alice", "alice-secret", "SCRAM-SHA-256"))
    round_trip(secured, "alice", "alice-secret", "SCRAM-SHA-512", "secured")
    # Out of Kafka's iteration range: refused with the reason.
    bad = admin.alter_user_scram_credentials(
        [UserScramCredentialUpsertion("bob", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 100), b"x")])["bob"]
    with pytest.raises(KafkaException, match="iterations"):
        bad.result(20)


def test_wrong_passwords_and_unknown_users_are_refused_alike_and_counted(secured):
    before = failures(secured, "SCRAM-SHA-512")
    wrong, wrong_errors = auth_error(client_config(secured, ADMIN, "not-the-password"))
    unknown, unknown_errors = auth_error(client_config(secured, "nobody", "whatever"))
    for errors in (wrong_errors, unknown_errors):
        auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
        assert auth, f"an authentication error is reported: {errors}"
        # The same answer whether the user exists or not.
        assert all("Authentication failed: Invalid username or password" in e.str() for e in auth), auth
    assert failures(secured, "SCRAM-SHA-512") >= before + 2
    plain_wrong, errs = auth_error(client_config(secured, ADMIN, "nope", "PLAIN"))
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errs), errs


def test_a_client_that_does_not_authenticate_gets_nothing(secured):
    err, errors = auth_error({"bootstrap.servers": secured.bootstrap})
    assert errors, "the broker closes the connection of a client that skips SASL"
    assert "closed" in " ".join(str(e) for e in errors).lower() or err is not None


def test_kcat_over_sasl_plaintext_with_plain_and_scram(secured):
    admin = AdminClient(client_config(secured, ADMIN, ADMIN_PASSWORD))
    admin.create_topics([NewTopic("kcat-secured", 1, 1)])["kcat-secured"].result(20)
    for mechanism in ("PLAIN", "SCRAM-SHA-256"):
        common = ["kcat", "-b", secured.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                  "-X", f"sasl.mechanisms={mechanism}", "-X", f"sasl.username={ADMIN}",
                  "-X", f"sasl.password={ADMIN_PASSWORD}"]
        subprocess.run(common + ["-P", "-t", "kcat-secured"], input=f"via kcat {mechanism}\n".encode(),
                       check=True, timeout=30)
        out = subprocess.run(common + ["-C", "-t", "kcat-secured", "-o", "beginning", "-e", "-q"],
                             capture_output=True, check=True, timeout=30).stdout.decode()
        assert f"via kcat {mechanism}" in out, out
    refused = subprocess.run(["kcat", "-b", secured.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
                              "-X", "sasl.mechanisms=PLAIN", "-X", f"sasl.username={ADMIN}",
                              "-X", "sasl.password=wrong", "-L", "-m", "5"], capture_output=True, timeout=30)
    assert refused.returncode != 0
    assert b"Authentication failed" in refused.stderr + refused.stdout, refused.stderr


def test_users_survive_a_sigkill(secured):
    admin = AdminClient(client_config(secured, ADMIN, ADMIN_PASSWORD))
    upsert = UserScramCredentialUpsertion("carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
                                          b"carol-secret")
    admin.alter_user_scram_credentials([upsert])["carol"].result(20)
    admin.create_topics([NewTopic("after-restart", 1, 1)])["after-restart"].result(20)
    secured.stop(kill=True)
    secured.start()
    round_trip(secured, "carol", "carol-secret", "SCRAM-SHA-512", "after-restart")
