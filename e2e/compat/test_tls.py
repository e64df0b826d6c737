"""TLS on the Kafka listener (issue 12): SASL_SSL with SCRAM-SHA-512 and PLAIN, and SSL alone,
with confluent-kafka and kcat; clients that do not trust the certificate, or speak plaintext to
a TLS port, get nowhere; a renewed certificate is served to new connections without a restart.
Certificates are made for each test with `cryptography` (a CA and a server certificate for
127.0.0.1)."""

import datetime
import os
import re
import subprocess
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from support import wait_until

ADMIN, PASSWORD = "admin", "admin-secret"


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory, name):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name)).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key, path


def issue(ca, cn="127.0.0.1"):
    """A server certificate for 127.0.0.1 signed by `ca`: (chain PEM, key PEM)."""
    ca_cert, ca_key, _ = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    chain = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return chain, key_pem


def install(directory, chain, key):
    """Writes the pair as a renewal does: new files renamed over the old ones."""
    for name, data in (("server.key", key), ("server.pem", chain)):
        tmp = directory / (name + ".new")
        tmp.write_bytes(data)
        os.replace(tmp, directory / name)
    return directory / "server.pem", directory / "server.key"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca(d, "ca-one")
    cert, key = install(d, *issue(ca))
    return {"dir": d, "ca": ca, "cert": cert, "key": key}


def sasl_ssl(broker, ca_path, user=ADMIN, password=PASSWORD, mechanism="SCRAM-SHA-512", **extra):
    return {"bootstrap.servers": broker.bootstrap, "security.protocol": "SASL_SSL", "ssl.ca.location": str(ca_path),
            "sasl.mechanism": mechanism, "sasl.username": user, "sasl.password": password, **extra}


def round_trip(config, topic, text):
    p = Producer(config)
    p.produce(topic, text.encode())
    assert p.flush(20) == 0, f"could not produce with {config.get('security.protocol')}"
    c = Consumer({**config, "group.id": f"g-{text}", "auto.offset.reset": "earliest"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        got = []
        deadline = time.monotonic() + 20
        while text not in got and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(m.value().decode())
        assert text in got, got
    finally:
        c.close()


def fails(config):
    errors = []
    a = AdminClient({**config, "error_cb": errors.append})
    with pytest.raises(KafkaException):
        a.list_topics(timeout=4)
    deadline = time.monotonic() + 3
    while not errors and time.monotonic() < deadline:
        a.poll(0.1)
    return " ".join(str(e) for e in errors)


def test_sasl_ssl_with_scram_and_plain_and_untrusted_or_plaintext_clients_refused(make_broker, pki):
    b = make_broker(args=["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]),
                          "--sasl-mechanisms", "SCRAM-SHA-512,PLAIN", "--sasl-bootstrap-user", ADMIN],
                    env={"AUTOMQ_SASL_BOOTSTRAP_PASSWORD": PASSWORD})
    ca = pki["ca"][2]
    admin = AdminClient(sasl_ssl(b, ca))
    admin.create_topics([NewTopic("tls", 1, 1)])["tls"].result(20)
    round_trip(sasl_ssl(b, ca), "tls", "scram-over-tls")
    round_trip(sasl_ssl(b, ca, mechanism="PLAIN"), "tls", "plain-over-tls")
    assert "Authentication failed" in fails(sasl_ssl(b, ca, password="wrong"))
    other = make_ca(pki["dir"], "someone-else")[2]
    assert "certificate" in fails(sasl_ssl(b, other)).lower(), "a client that does not trust the certificate"
    fails({"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
           "sasl.username": ADMIN, "sasl.password": PASSWORD})
    assert int(re.search(r"automq_broker_tls_handshake_failures_total (\d+)", b.metrics()).group(1)) >= 2

    # kcat (Debian's librdkafka) over SASL_SSL.
    kcat = ["kcat", "-b", b.bootstrap, "-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={ca}",
            "-X", "sasl.mechanisms=PLAIN", "-X", f"sasl.username={ADMIN}", "-X", f"sasl.password={PASSWORD}"]
    subprocess.run(kcat + ["-P", "-t", "tls"], input=b"via kcat over tls\n", check=True, timeout=30)
    out = subprocess.run(kcat + ["-C", "-t", "tls", "-o", "beginning", "-e", "-q"], capture_output=True,
                         check=True, timeout=30).stdout.decode()
    assert "via kcat over tls" in out, out


def test_ssl_without_sasl_and_a_renewed_certificate_is_served_without_a_restart(make_broker, pki):
    b = make_broker(args=["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])])
    ssl = lambda ca: {"bootstrap.servers": b.bootstrap, "security.protocol": "SSL", "ssl.ca.location": str(ca)}  # noqa: E731
    admin = AdminClient(ssl(pki["ca"][2]))
    admin.create_topics([NewTopic("renewed", 1, 1)])["renewed"].result(20)
    round_trip(ssl(pki["ca"][2]), "renewed", "before-renewal")

    # The certificate is renewed under another CA (files replaced in place, as a Secret update
    # does): new connections get it, with the same broker process.
    new_ca = make_ca(pki["dir"], "ca-two")
    time.sleep(1.1)  # a new modification time, even on filesystems with 1 s resolution
    install(pki["dir"], *issue(new_ca))
    starts = b.starts
    wait_until(lambda: not fails_quietly(ssl(new_ca[2])), "the renewed certificate to be served", timeout=20)
    round_trip(ssl(new_ca[2]), "renewed", "after-renewal")
    assert "certificate" in fails(ssl(pki["ca"][2])).lower(), "the old CA no longer matches"
    assert b.starts == starts and b.running(), "no restart"


def fails_quietly(config):
    try:
        AdminClient(config).list_topics(timeout=3)
        return False
    except KafkaException:
        return True
