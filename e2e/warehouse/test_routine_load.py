"""Routine load: Kafka topics into tables through StarRocks's statements, with real brokers
(ours and Tansu) and real clients (confluent-kafka producing, pymysql querying)."""

import json
import random
import threading
import time

import pytest

from brokers import KafkaProcess, produce
from qnode import QueryNode


@pytest.fixture
def broker(tmp_path):
    b = KafkaProcess("automq", tmp_path / "broker").start()
    yield b
    b.kill()


@pytest.fixture
def tansu(tmp_path):
    b = KafkaProcess("tansu", tmp_path / "tansu").start()
    yield b
    b.kill()


@pytest.fixture(params=["automq", "tansu"])
def source(request, tmp_path):
    """Each Kafka implementation the format tests run against."""
    b = KafkaProcess(request.param, tmp_path / request.param).start()
    yield b
    b.kill()


def wait_for(what, fn, timeout=30, interval=0.1):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last value: {last!r}")


def show(cur, job, all_=False):
    cur.execute(f"SHOW {'ALL ' if all_ else ''}ROUTINE LOAD FOR {job}")
    cols = [d[0] for d in cur.description]
    rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    return rows[0] if rows else None


def count(cur, table):
    cur.execute(f"SELECT count(*) FROM {table}")
    return cur.fetchone()[0]


def rows_of(cur, sql):
    cur.execute(sql)
    return [tuple(r) for r in cur.fetchall()]


def setup_db(node):
    conn = node.connect()
    cur = conn.cursor()
    cur.execute("CREATE DATABASE shop")
    cur.execute("USE shop")
    return conn, cur


def load_json(kafka, node, topic):
    kafka.create_topic(topic, partitions=2)
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE orders (id BIGINT NOT NULL, customer VARCHAR(20), amount DECIMAL(10,2), "
                "placed DATETIME) PRIMARY KEY (id) DISTRIBUTED BY HASH(id)")
    events = [{"id": i, "customer": f"c{i % 7}", "amount": f"{i}.25", "placed": f"2024-05-{1 + i % 28:02d} 10:00:00"}
              for i in range(300)]
    produce(kafka, topic, [json.dumps(e).encode() for e in events], keys=[str(e["id"]).encode() for e in events])
    cur.execute(f"""CREATE ROUTINE LOAD shop.orders_job ON orders
        PROPERTIES ("format" = "json", "max_batch_interval" = "0.2")
        FROM KAFKA ("kafka_broker_list" = "{kafka.bootstrap}", "kafka_topic" = "{topic}",
                    "property.kafka_default_offsets" = "OFFSET_BEGINNING", "property.group.id" = "g1")""")
    wait_for("300 rows", lambda: count(cur, "orders") == 300)
    assert rows_of(cur, "SELECT id, customer, amount, placed FROM orders WHERE id = 17") == [
        (17, "c3", __import__("decimal").Decimal("17.25"), __import__("datetime").datetime(2024, 5, 18, 10, 0))]
    return conn, cur


def test_json_load_show_pause_resume_stop(broker, node):
    conn, cur = load_json(broker, node, "orders")
    job = wait_for("statistics", lambda: (lambda j: j if json.loads(j["Statistic"])["loadedRows"] == 300 else None)(
        show(cur, "orders_job")))
    assert job["State"] == "RUNNING" and job["TableName"] == "orders" and job["DataSourceType"] == "KAFKA"
    stats = json.loads(job["Statistic"])
    assert stats["totalRows"] == 300 and stats["errorRows"] == 0, stats
    progress = json.loads(job["Progress"])
    assert sorted(progress) == ["0", "1"] and sum(int(v) + 1 for v in progress.values()) == 300, progress
    assert json.loads(job["Lag"]) == {"0": 0, "1": 0}
    assert json.loads(job["CustomProperties"])["group.id"] == "g1"

    cur.execute("PAUSE ROUTINE LOAD FOR orders_job")
    assert show(cur, "orders_job")["State"] == "PAUSED"
    produce(broker, "orders", [json.dumps({"id": 1000 + i, "customer": "late"}).encode() for i in range(10)])
    time.sleep(1.5)
    assert count(cur, "orders") == 300, "a paused job must not load"
    cur.execute("RESUME ROUTINE LOAD FOR orders_job")
    wait_for("rows after resume", lambda: count(cur, "orders") == 310)
    assert wait_for("running", lambda: show(cur, "orders_job")["State"] == "RUNNING")

    # Upserts by key: re-sent ids replace their rows.
    produce(broker, "orders", [json.dumps({"id": i, "customer": "again", "amount": "1"}).encode() for i in range(5)])
    wait_for("upserts", lambda: rows_of(cur, "SELECT count(*) FROM orders WHERE customer = 'again'") == [(5,)])
    assert count(cur, "orders") == 310

    cur.execute("STOP ROUTINE LOAD FOR orders_job")
    cur.execute("SHOW ROUTINE LOAD")
    assert cur.fetchall() == (), "stopped jobs only show with ALL"
    assert show(cur, "orders_job", all_=True)["State"] == "STOPPED"
    with pytest.raises(Exception, match="STOPPED"):
        cur.execute("RESUME ROUTINE LOAD FOR orders_job")
    assert "routine_load_rows_loaded_total{" in node.metrics()


def test_csv_columns_expressions_and_where(source, node):
    broker = source
    broker.create_topic("payments")
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE payments (id INT, amount DECIMAL(12,2), method VARCHAR(10)) DUPLICATE KEY (id)")
    lines = [f"{i},{i * 150},{'card' if i % 2 else 'cash'}" for i in range(100)]
    # Several rows per message, one bad line among them.
    msgs = ["\n".join(lines[i:i + 10]) for i in range(0, 100, 10)] + ["oops"]
    produce(broker, "payments", [m.encode() for m in msgs])
    cur.execute(f"""CREATE ROUTINE LOAD pay_job ON payments
        COLUMNS TERMINATED BY ',',
        COLUMNS (id, cents, method, amount = cents / 100),
        WHERE method = 'card'
        PROPERTIES ("format" = "csv", "max_error_number" = "5")
        FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "payments",
                    "kafka_partitions" = "0", "kafka_offsets" = "OFFSET_BEGINNING")""")
    wait_for("card rows", lambda: count(cur, "payments") == 50)
    assert rows_of(cur, "SELECT id, amount, method FROM payments WHERE id = 3") == [
        (3, __import__("decimal").Decimal("4.50"), "card")]
    job = wait_for("stats", lambda: (lambda j: j if json.loads(j["Statistic"])["totalRows"] == 101 else None)(
        show(cur, "pay_job")))
    stats = json.loads(job["Statistic"])
    assert (stats["loadedRows"], stats["unselectedRows"], stats["errorRows"]) == (50, 50, 1), stats
    assert "column count mismatch" in job["ErrorSamples"]
    cur.execute("DROP TABLE payments")
    job = wait_for("cancellation", lambda: (lambda j: j if j["State"] == "CANCELLED" else None)(show(cur, "pay_job")))
    assert "no longer exists" in job["ReasonOfStateChanged"], job


def debezium(op, before=None, after=None):
    return json.dumps({"before": before, "after": after, "op": op, "source": {"connector": "mysql"},
                       "ts_ms": int(time.time() * 1000)}).encode()


def test_debezium_upserts_deletes_and_tombstones(source, node):
    broker = source
    broker.create_topic("cdc.shop.staff", partitions=3)
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE staff (id BIGINT NOT NULL, name VARCHAR(30), active BOOLEAN) PRIMARY KEY (id)")
    rng = random.Random(7)
    model, msgs, keys = {}, [], []
    for _ in range(2000):
        k = rng.randrange(200)
        if k in model and rng.random() < 0.3:
            msgs.append(debezium("d", before={"id": k, "name": model[k][0], "active": model[k][1]}))
            del model[k]
            keys.append(str(k).encode())
            msgs.append(None)  # the tombstone that follows a delete
        else:
            row = (f"n{rng.randrange(10**6)}", rng.random() < 0.5)
            msgs.append(debezium("u" if k in model else "c", before=None, after={"id": k, "name": row[0], "active": row[1]}))
            model[k] = row
        keys.append(str(k).encode())
    produce(broker, "cdc.shop.staff", msgs, keys=keys)
    cur.execute(f"""CREATE ROUTINE LOAD staff_cdc ON staff
        PROPERTIES ("format" = "json")
        FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "cdc.shop.staff",
                    "property.kafka_default_offsets" = "OFFSET_BEGINNING")""")
    expected = sorted((k, v[0], int(v[1])) for k, v in model.items())
    wait_for("the table to equal the model",
             lambda: rows_of(cur, "SELECT id, name, CAST(active AS INT) FROM staff ORDER BY id") == expected)
    stats = json.loads(show(cur, "staff_cdc")["Statistic"])
    assert stats["errorRows"] == 0, stats


def test_bad_rows_pause_with_reason_then_alter_and_resume(broker, node):
    broker.create_topic("events")
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE events (id INT NOT NULL, qty INT) DUPLICATE KEY (id)")
    good = [json.dumps({"id": i, "qty": i}).encode() for i in range(20)]
    bad = [b"{broken", json.dumps({"id": "x", "qty": 1}).encode(), json.dumps({"qty": 1}).encode()]
    produce(broker, "events", good[:10] + bad + good[10:])
    cur.execute(f"""CREATE ROUTINE LOAD ev ON events PROPERTIES ("format" = "json", "max_error_number" = "2")
        FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "events",
                    "kafka_partitions" = "0", "kafka_offsets" = "0")""")
    job = wait_for("pause", lambda: (lambda j: j if j["State"] == "PAUSED" else None)(show(cur, "ev")))
    assert "max_error_number 2" in job["ReasonOfStateChanged"], job["ReasonOfStateChanged"]
    assert count(cur, "events") == 0, "a batch over the error limit is not loaded"
    with pytest.raises(Exception, match="PAUSE it before ALTER"):
        cur.execute("RESUME ROUTINE LOAD FOR ev")
        cur.execute('ALTER ROUTINE LOAD FOR ev PROPERTIES ("max_error_number" = "10")')
    wait_for("paused again", lambda: show(cur, "ev")["State"] == "PAUSED", timeout=30)
    cur.execute('ALTER ROUTINE LOAD FOR ev PROPERTIES ("max_error_number" = "10")')
    cur.execute("RESUME ROUTINE LOAD FOR ev")
    wait_for("good rows", lambda: count(cur, "events") == 20)
    stats = wait_for("stats", lambda: (lambda s: s if s["errorRows"] == 3 else None)(
        json.loads(show(cur, "ev")["Statistic"])))
    assert stats["loadedRows"] == 20, stats
    samples = json.loads(show(cur, "ev")["ErrorSamples"])
    assert any("invalid JSON" in s for s in samples) and any("'x' is not a valid Int32" in s for s in samples) \
        and any("cannot be NULL" in s for s in samples), samples


def test_bad_statements_get_clear_errors(broker, node):
    broker.create_topic("t1")
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE t (id INT) DUPLICATE KEY (id)")
    src = f'FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "t1")'
    for sql, code, text in [
        (f"CREATE ROUTINE LOAD j ON missing {src}", 1146, "doesn't exist"),
        (f'CREATE ROUTINE LOAD j ON t PROPERTIES ("format" = "avro") {src}', 1105, "not supported"),
        (f'CREATE ROUTINE LOAD j ON t PROPERTIES ("max_batch_rows" = "x") {src}', 1105, "invalid value"),
        ('CREATE ROUTINE LOAD j ON t FROM KAFKA ("kafka_broker_list" = "'
         + broker.bootstrap + '", "kafka_topic" = "nope")', 1105, "does not exist"),
        (f"CREATE ROUTINE LOAD j ON t COLUMNS (id, x = nosuch + 1) {src}", 1054, "Unknown column 'x'"),
        (f"CREATE ROUTINE LOAD j ON t WHERE nosuch > 1 {src}", 1105, "WHERE"),
        ("CREATE ROUTINE LOAD j ON t PROPERTIES", 1064, "syntax"),
        ("PAUSE ROUTINE LOAD FOR nojob", 1105, "does not exist"),
    ]:
        with pytest.raises(Exception) as e:
            cur.execute(sql)
        assert e.value.args[0] == code and text in e.value.args[1], (sql, e.value.args)


def test_source_outage_is_visible_and_recovers(broker, node):
    broker.create_topic("feed")
    conn, cur = setup_db(node)
    cur.execute("CREATE TABLE feed (id INT) DUPLICATE KEY (id)")
    produce(broker, "feed", [json.dumps({"id": i}).encode() for i in range(5)])
    cur.execute(f"""CREATE ROUTINE LOAD f ON feed PROPERTIES ("format" = "json")
        FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "feed",
                    "property.kafka_default_offsets" = "OFFSET_BEGINNING")""")
    wait_for("rows", lambda: count(cur, "feed") == 5)
    broker.kill()
    job = wait_for("the outage to show", lambda: (lambda j: j if j["OtherMsg"] else None)(show(cur, "f")), timeout=60)
    assert job["State"] == "RUNNING", job
    broker.start()
    produce(broker, "feed", [json.dumps({"id": i}).encode() for i in range(5, 8)])
    wait_for("rows after the outage", lambda: count(cur, "feed") == 8, timeout=60)
    wait_for("the message to clear", lambda: show(cur, "f")["OtherMsg"] == "", timeout=30)


def test_tansu_source(tansu, node):
    conn, cur = load_json(tansu, node, "orders")
    assert show(cur, "orders_job")["State"] == "RUNNING"


def test_exactly_once_across_sigkills(broker, tmp_path):
    """The query node is SIGKILLed at random points while two jobs load the same change feed:
    a primary-key table must equal the model and an append-only table must hold every event
    exactly once (a doubled batch would show as extra rows)."""
    node = QueryNode(tmp_path / "qn")
    (tmp_path / "qn").mkdir()
    node.start()
    broker.create_topic("cdc", partitions=3)
    with node.connect() as c, c.cursor() as cur:
        cur.execute("CREATE DATABASE db")
        cur.execute("USE db")
        cur.execute("CREATE TABLE latest (k INT NOT NULL, v BIGINT) PRIMARY KEY (k)")
        cur.execute("CREATE TABLE log (k INT, v BIGINT, op VARCHAR(1)) DUPLICATE KEY (k)")
        src = (f'FROM KAFKA ("kafka_broker_list" = "{broker.bootstrap}", "kafka_topic" = "cdc", '
               '"property.kafka_default_offsets" = "OFFSET_BEGINNING")')
        cur.execute(f'CREATE ROUTINE LOAD j1 ON latest PROPERTIES ("format" = "json", "max_batch_interval" = "0.05") {src}')
        cur.execute(f'CREATE ROUTINE LOAD j2 ON log COLUMNS (k, v, op) PROPERTIES ("format" = "json", '
                    f'"jsonpaths" = \'["$.after.k", "$.after.v", "$.op"]\', "max_batch_interval" = "0.05") {src}')
    rng = random.Random(11)
    model, total = {}, 0
    stop = threading.Event()
    produced = []

    def producer():
        p = broker.producer()
        seq = 0
        while not stop.is_set() and seq < 6000:
            batch = []
            for _ in range(100):
                k = rng.randrange(300)
                seq += 1
                if k in model and rng.random() < 0.2:
                    msg = {"before": {"k": k, "v": model.pop(k)}, "after": {"k": k, "v": None}, "op": "d"}
                else:
                    model[k] = seq
                    msg = {"before": None, "after": {"k": k, "v": seq}, "op": "c"}
                batch.append((str(k).encode(), json.dumps(msg).encode()))
            for key, val in batch:
                p.produce("cdc", val, key=key)
            assert p.flush(30) == 0
            produced.extend(batch)
            time.sleep(0.1)
        stop.set()

    t = threading.Thread(target=producer)
    t.start()
    kills = 0
    try:
        while not stop.is_set() or kills < 3:
            time.sleep(rng.uniform(0.3, 1.2))
            node.kill()
            kills += 1
            node.start()
        t.join()
        total = len(produced)
        with node.connect("db") as c, c.cursor() as cur:
            expected = sorted(model.items())
            wait_for("the primary-key table to equal the model",
                     lambda: rows_of(cur, "SELECT k, v FROM latest ORDER BY k") == expected, timeout=90)
            wait_for("every event once", lambda: count(cur, "log") == total, timeout=90)
            cur.execute("SELECT count(*), count(DISTINCT v) FROM log WHERE op = 'c'")
            n, distinct = cur.fetchone()
            assert n == distinct, "an insert event was loaded twice"
            time.sleep(1)
            assert count(cur, "log") == total, "rows appeared after the table matched: doubled batches"
        assert kills >= 3
    finally:
        stop.set()
        t.join()
        node.kill()
