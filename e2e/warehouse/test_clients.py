"""The query node with the clients its users have: the mysql CLI, pymysql, SQLAlchemy
(reflection and Core), and a crash-restart on the same directory."""

import subprocess

import sqlalchemy as sa


def test_mysql_cli_creates_loads_and_queries(node):
    script = """
        CREATE DATABASE shop;
        USE shop;
        CREATE TABLE orders (id BIGINT NOT NULL, customer VARCHAR(32), amount DECIMAL(10,2)) PRIMARY KEY(id)
            DISTRIBUTED BY HASH(id) BUCKETS 4;
        INSERT INTO orders VALUES (1, 'ada', 12.50), (2, 'bob', 7.25), (3, 'ada', 1.00);
        INSERT INTO orders VALUES (2, 'bob', 8.25);
        SELECT customer, SUM(amount) AS total FROM orders GROUP BY customer ORDER BY customer;
    """
    out = subprocess.run(
        ["mysql", "-h", "127.0.0.1", "-P", str(node.port), "-u", "root", "--batch", "--skip-column-names"],
        input=script, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["ada\t13.50", "bob\t8.25"]
    bad = subprocess.run(
        ["mysql", "-h", "127.0.0.1", "-P", str(node.port), "-u", "root", "shop", "-e", "SELECT * FROM nope"],
        capture_output=True, text=True, timeout=60,
    )
    assert bad.returncode != 0 and "1146" in bad.stderr


def test_sqlalchemy_reflects_and_round_trips(node):
    with node.connect() as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE app")
        cur.execute("USE app")
        cur.execute("CREATE TABLE users (id INT NOT NULL, name VARCHAR(40), born DATE, PRIMARY KEY (id)) "
                    "COMMENT 'people'")
        cur.execute("CREATE TABLE events (ts DATETIME, user_id INT, kind VARCHAR(10)) DUPLICATE KEY(ts)")
    engine = sa.create_engine(f"mysql+pymysql://root:@127.0.0.1:{node.port}/app")
    inspector = sa.inspect(engine)
    assert sorted(inspector.get_table_names()) == ["events", "users"]
    cols = {c["name"]: c for c in inspector.get_columns("users")}
    assert list(cols) == ["id", "name", "born"]
    assert isinstance(cols["id"]["type"], sa.INTEGER) and cols["id"]["nullable"] is False
    assert isinstance(cols["name"]["type"], sa.VARCHAR) and cols["name"]["type"].length == 40
    assert isinstance(cols["born"]["type"], sa.DATE)
    assert inspector.get_pk_constraint("users")["constrained_columns"] == ["id"]
    assert "app" in inspector.get_schema_names()

    users = sa.Table("users", sa.MetaData(), autoload_with=engine)
    with engine.begin() as conn:
        conn.execute(sa.insert(users), [{"id": 1, "name": "ada", "born": "1815-12-10"},
                                        {"id": 2, "name": "alan", "born": "1912-06-23"}])
        conn.execute(sa.insert(users), [{"id": 2, "name": "turing", "born": "1912-06-23"}])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(users.c.id, users.c.name).order_by(users.c.id)).all()
        assert [tuple(r) for r in rows] == [(1, "ada"), (2, "turing")]
        n = conn.execute(sa.text("SELECT COUNT(*) FROM users WHERE born < :d"), {"d": "1900-01-01"}).scalar()
        assert n == 1


def test_acknowledged_rows_survive_sigkill(node):
    with node.connect() as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE d")
        cur.execute("USE d")
        cur.execute("CREATE TABLE kv (k INT PRIMARY KEY, v VARCHAR(20))")
        for i in range(20):
            cur.execute("INSERT INTO kv VALUES (%s, %s)", (i % 7, f"v{i}"))
        cur.execute("DELETE FROM kv WHERE k = 3")
    node.kill()
    node.start()
    with node.connect("d") as c, c.cursor() as cur:
        cur.execute("SELECT k, v FROM kv ORDER BY k")
        assert cur.fetchall() == ((0, "v14"), (1, "v15"), (2, "v16"), (4, "v18"), (5, "v19"), (6, "v13"))
    text = node.metrics()
    assert "automq_mysql_statements_total" in text and "automq_warehouse_segment_cache_misses_total" in text
