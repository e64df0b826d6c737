"""The query node's users, privileges and TLS (issue 12) with real clients: pymysql and the
mysql CLI (MariaDB's), over plaintext and over TLS. A user lacking a privilege is refused with
MySQL's 1142 / 1044 and succeeds once granted it (on its open connection); a wrong password gets
1045; users survive a SIGKILL and restart and reach a second node on the same bucket; a client
that does not trust the certificate fails; --require-secure-transport refuses plaintext with
3159; a renewed certificate is served without a restart; failed logins are counted and logged
without telling an unknown user from a wrong password."""

import re
import subprocess
import time

import pymysql
import pytest

from qnode import QueryNode
from tlscerts import Ca, install

ROOT_PW = "root-secret"


@pytest.fixture
def pki(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    ca = Ca(d, "ca-one")
    cert_pem, key_pem, der = ca.issue()
    cert, key = install(d, cert_pem, key_pem)
    return {"dir": d, "ca": ca, "cert": cert, "key": key, "der": der, "other_ca": Ca(d, "ca-two")}


def start(tmp_path, pki=None, extra=(), name="qn", object_store=None):
    args = list(extra)
    if pki:
        args += ["--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"])]
    if object_store:
        args += ["--object-store", object_store]
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    return QueryNode(d, args=args, root_password=ROOT_PW).start()


@pytest.fixture
def tls_node(tmp_path, pki):
    n = start(tmp_path, pki)
    yield n
    n.kill()


def ssl_options(pki, ca=None):
    return {"ca": str(ca or pki["ca"].path)}


def connect(node, user, password, pki=None, tls=False, **kw):
    """pymysql over verified TLS, or over plaintext (PyMySQL 1.2 would otherwise switch to TLS
    on its own, unverified, whenever the server offers it)."""
    if tls:
        kw["ssl"] = ssl_options(pki)
    else:
        kw["ssl_disabled"] = True
    return node.connect(user=user, password=password, **kw)


def error_of(f):
    """The (code, message) a pymysql call fails with."""
    with pytest.raises(pymysql.MySQLError) as e:
        f()
    return e.value.args[0], e.value.args[1]


def mysql_cli(node, user, password, sql, pki=None, tls=False, ca=None, database=None):
    args = ["mysql", "-h", "127.0.0.1", "-P", str(node.port), "-u", user, f"--password={password}",
            "--batch", "--skip-column-names"]
    if tls:
        args += ["--ssl", f"--ssl-ca={ca or pki['ca'].path}", "--ssl-verify-server-cert"]
    else:
        args += ["--skip-ssl"]
    if database:
        args.append(database)
    return subprocess.run(args + ["-e", sql], capture_output=True, text=True, timeout=60)


def setup_shop(node, pki=None, tls=False):
    with connect(node, "root", ROOT_PW, pki, tls) as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE shop")
        cur.execute("CREATE TABLE shop.orders (id BIGINT NOT NULL, amount DOUBLE) PRIMARY KEY (id)")
        cur.execute("CREATE TABLE shop.customers (id BIGINT, name VARCHAR(20))")
        cur.execute("INSERT INTO shop.orders VALUES (1, 9.5), (2, 3.0)")
        cur.execute("CREATE USER 'alice'@'%' IDENTIFIED BY 'alice-pw'")


def root_sql(node, *statements, pki=None, tls=False):
    with connect(node, "root", ROOT_PW, pki, tls) as c, c.cursor() as cur:
        for s in statements:
            cur.execute(s)
        return cur.fetchall()


def metric(node, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in node.metrics().splitlines():
        if line.startswith(f"{name}{{{want}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_pymysql_user_refused_then_granted(tls_node, pki, tls):
    setup_shop(tls_node, pki, tls)
    alice = connect(tls_node, "alice", "alice-pw", pki, tls)
    if tls:
        assert alice._sock.version() in ("TLSv1.2", "TLSv1.3")
    with alice, alice.cursor() as cur:
        assert error_of(lambda: cur.execute("USE shop")) == (
            1044, "Access denied for user 'alice'@'%' to database 'shop'")
        assert error_of(lambda: cur.execute("SELECT * FROM shop.orders")) == (
            1142, "SELECT command denied to user 'alice'@'%' for table 'orders'")
        cur.execute("SHOW DATABASES")
        assert [r[0] for r in cur.fetchall()] == ["information_schema"]
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        assert bool(cur.fetchone()[1]) == tls

        root_sql(tls_node, "GRANT SELECT ON shop.* TO 'alice'@'%'", pki=pki, tls=tls)
        # The open connection: the grant applies from its next statement.
        cur.execute("USE shop")
        cur.execute("SELECT id, amount FROM orders ORDER BY id")
        assert cur.fetchall() == ((1, 9.5), (2, 3.0))
        cur.execute("SELECT o.id FROM orders o JOIN customers c ON o.id = c.id")
        assert error_of(lambda: cur.execute("INSERT INTO orders VALUES (3, 1.0)")) == (
            1142, "INSERT command denied to user 'alice'@'%' for table 'orders'")
        assert error_of(lambda: cur.execute("DROP TABLE orders"))[0] == 1142
        assert error_of(lambda: cur.execute("CREATE USER bob"))[0] == 1227

        root_sql(tls_node, "GRANT INSERT ON shop.orders TO alice", pki=pki, tls=tls)
        cur.execute("INSERT INTO orders VALUES (3, 1.0)")
        cur.execute("SELECT count(*) FROM orders")
        assert cur.fetchone() == (3,)
        cur.execute("SHOW GRANTS")
        assert [r[0] for r in cur.fetchall()] == [
            "GRANT USAGE ON *.* TO `alice`@`%`",
            "GRANT SELECT ON `shop`.* TO `alice`@`%`",
            "GRANT INSERT ON `shop`.`orders` TO `alice`@`%`",
        ]
        root_sql(tls_node, "REVOKE SELECT ON shop.* FROM alice", pki=pki, tls=tls)
        assert error_of(lambda: cur.execute("SELECT amount FROM orders WHERE id = %s", (1,)))[0] == 1142

    assert error_of(lambda: connect(tls_node, "alice", "wrong", pki, tls))[0] == 1045
    assert error_of(lambda: connect(tls_node, "nobody", "alice-pw", pki, tls))[0] == 1045


def test_prepared_statements_are_checked_with_mysql_connector(tls_node, pki):
    """mysql-connector's prepared cursor: COM_STMT_PREPARE and COM_STMT_EXECUTE, over verified TLS."""
    import mysql.connector

    setup_shop(tls_node)
    root_sql(tls_node, "GRANT SELECT ON shop.orders TO alice")
    c = mysql.connector.connect(host="127.0.0.1", port=tls_node.port, user="alice", password="alice-pw",
                                database="shop", ssl_ca=str(pki["ca"].path), ssl_verify_cert=True,
                                ssl_verify_identity=True, use_pure=True)
    try:
        cur = c.cursor(prepared=True)
        cur.execute("SELECT amount FROM orders WHERE id = ?", (2,))
        assert cur.fetchall() == [(3.0,)]
        with pytest.raises(mysql.connector.Error) as e:
            cur.execute("SELECT name FROM customers WHERE id = ?", (1,))
        assert e.value.errno == 1142, e.value
        root_sql(tls_node, "REVOKE SELECT ON shop.orders FROM alice")
        with pytest.raises(mysql.connector.Error) as e:
            cur.execute("SELECT amount FROM orders WHERE id = ?", (2,))
        assert e.value.errno == 1142, e.value
    finally:
        c.close()


@pytest.mark.parametrize("tls", [False, True], ids=["plaintext", "tls"])
def test_mysql_cli_user_refused_then_granted(tls_node, pki, tls):
    setup_shop(tls_node)
    out = mysql_cli(tls_node, "alice", "alice-pw", "SELECT * FROM orders", pki, tls, database="shop")
    assert out.returncode != 0
    assert "ERROR 1044 (42000): Access denied for user 'alice'@'%' to database 'shop'" in out.stderr, out.stderr
    out = mysql_cli(tls_node, "alice", "alice-pw", "SELECT * FROM shop.orders", pki, tls)
    assert "ERROR 1142 (42000) at line 1: SELECT command denied to user 'alice'@'%' for table 'orders'" in out.stderr, \
        out.stderr

    root_sql(tls_node, "GRANT SELECT ON shop.orders TO alice")
    out = mysql_cli(tls_node, "alice", "alice-pw",
                    "SELECT id FROM orders ORDER BY id; SHOW STATUS LIKE 'Ssl_version'", pki, tls, database="shop")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["1", "2"]
    if tls:
        assert re.fullmatch(r"Ssl_version\tTLSv1\.[23]", lines[2]), lines
    else:
        assert lines[2] == "Ssl_version\t", lines
    out = mysql_cli(tls_node, "alice", "alice-pw", "SELECT * FROM customers", pki, tls, database="shop")
    assert "ERROR 1142" in out.stderr and "'customers'" in out.stderr, out.stderr
    out = mysql_cli(tls_node, "alice", "not-her-password", "SELECT 1", pki, tls)
    assert out.returncode != 0 and "ERROR 1045 (28000)" in out.stderr, out.stderr


def test_users_survive_a_sigkill_and_restart(tmp_path, pki):
    node = start(tmp_path, pki)
    setup_shop(node)
    root_sql(node, "GRANT SELECT ON shop.* TO alice", "CREATE USER bob IDENTIFIED BY 'bob-pw'",
             "ALTER USER alice IDENTIFIED BY 'alice-pw-2'")
    node.kill()  # SIGKILL
    node.start()
    try:
        with connect(node, "alice", "alice-pw-2", pki, tls=True, database="shop") as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone() == (2,)
            assert error_of(lambda: cur.execute("DELETE FROM orders"))[0] == 1142
        assert error_of(lambda: connect(node, "alice", "alice-pw", pki, tls=True))[0] == 1045, "the old password"
        out = mysql_cli(node, "bob", "bob-pw", "SELECT 1", pki, tls=True)
        assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
        root_sql(node, "DROP USER bob")
        assert error_of(lambda: connect(node, "bob", "bob-pw"))[0] == 1045
    finally:
        node.kill()


def test_a_user_created_on_one_node_logs_in_on_another(tmp_path):
    bucket = f"file://{tmp_path / 'bucket'}"
    a = start(tmp_path, name="a", object_store=bucket, extra=["--node-id", "1"])
    b = start(tmp_path, name="b", object_store=bucket, extra=["--node-id", "2"])
    try:
        setup_shop(a)
        root_sql(a, "GRANT SELECT ON shop.orders TO alice")
        with connect(b, "alice", "alice-pw", database="shop") as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone() == (2,)
            root_sql(a, "REVOKE SELECT ON shop.orders FROM alice")
            time.sleep(0.3)  # node B sees node A's commits within its refresh interval (200 ms)
            assert error_of(lambda: cur.execute("SELECT count(*) FROM orders"))[0] == 1142, "revoked on node A"
    finally:
        a.kill()
        b.kill()


def test_untrusting_clients_fail(tls_node, pki):
    other = pki["other_ca"].path
    with pytest.raises(pymysql.MySQLError) as e:
        tls_node.connect(password=ROOT_PW, ssl={"ca": str(other)})
    assert "CERTIFICATE_VERIFY_FAILED" in str(e.value), e.value
    out = mysql_cli(tls_node, "root", ROOT_PW, "SELECT 1", tls=True, ca=other)
    assert out.returncode != 0 and out.stdout == "", out
    assert "SSL" in out.stderr or "certificate" in out.stderr, out.stderr
    assert metric(tls_node, "automq_mysql_tls_handshake_failures_total") >= 1


def test_require_secure_transport_refuses_plaintext(tmp_path, pki):
    node = start(tmp_path, pki, extra=["--require-secure-transport"])
    try:
        refused = (3159, "Connections using insecure transport are prohibited while --require_secure_transport=ON.")
        assert error_of(lambda: connect(node, "root", ROOT_PW)) == refused
        out = mysql_cli(node, "root", ROOT_PW, "SELECT 1")
        assert out.returncode != 0 and "ERROR 3159" in out.stderr, out.stderr
        with connect(node, "root", ROOT_PW, pki, tls=True) as c, c.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
        out = mysql_cli(node, "root", ROOT_PW, "SELECT 1", pki, tls=True)
        assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
        assert metric(node, "automq_mysql_logins_total", outcome="insecure_transport") == 2
        assert metric(node, "automq_mysql_logins_total", outcome="ok") == 2
    finally:
        node.kill()


def test_a_renewed_certificate_is_served_without_a_restart(tls_node, pki):
    def served():
        with tls_node.connect(password=ROOT_PW, ssl=ssl_options(pki)) as c:
            return c._sock.getpeercert(binary_form=True)

    assert served() == pki["der"]
    cert_pem, key_pem, der = pki["ca"].issue()
    install(pki["dir"], cert_pem, key_pem)
    assert served() == der


def test_failed_logins_are_counted_slowed_and_logged_alike(tls_node, pki):
    setup_shop(tls_node)
    before = metric(tls_node, "automq_mysql_logins_total", outcome="denied")
    wrong = error_of(lambda: tls_node.connect(user="alice", password="nope"))
    unknown = error_of(lambda: tls_node.connect(user="mallory", password="nope"))
    assert wrong == (1045, "Access denied for user 'alice'@'127.0.0.1' (using password: YES)")
    assert unknown == (1045, "Access denied for user 'mallory'@'127.0.0.1' (using password: YES)")
    assert metric(tls_node, "automq_mysql_logins_total", outcome="denied") == before + 2
    log = re.sub(r"\x1b\[[0-9;]*m", "", (tls_node.data_dir / "node.log").read_text())  # coloured
    refusals = [line for line in log.splitlines() if "MySQL login refused" in line]
    assert len(refusals) == 2, refusals
    assert all("unknown user or wrong password" in line for line in refusals)
    assert "delay_ms=200" in refusals[1], "the second failure in a row from one address waits longer"
    # A success from the address starts the delay over.
    with tls_node.connect(user="alice", password="alice-pw"):
        pass


def test_users_from_a_directory_of_password_files(tmp_path):
    """--users-dir (what the operator renders from Secrets): a file per user; a changed file is
    the new password without a restart; grants given with SQL stay."""
    users = tmp_path / "users"
    users.mkdir()
    (users / "carol").write_text("carol-pw\n")
    node = start(tmp_path, extra=["--users-dir", str(users)])
    try:
        setup_shop(node)
        root_sql(node, "GRANT SELECT ON shop.* TO carol")
        with connect(node, "carol", "carol-pw", database="shop") as c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone() == (2,)
        (users / "carol.new").write_text("carol-pw-2\n")
        (users / "carol.new").rename(users / "carol")
        deadline = time.monotonic() + 15
        while True:
            try:
                c = connect(node, "carol", "carol-pw-2", database="shop")
                break
            except pymysql.MySQLError:
                assert time.monotonic() < deadline, "the new password never took effect"
                time.sleep(0.2)
        with c, c.cursor() as cur:
            cur.execute("SELECT count(*) FROM orders")
            assert cur.fetchone() == (2,), "grants kept"
        assert error_of(lambda: connect(node, "carol", "carol-pw"))[0] == 1045
    finally:
        node.kill()
