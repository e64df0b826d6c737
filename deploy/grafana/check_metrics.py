#!/usr/bin/env python3
"""Fails when a Grafana dashboard in deploy/grafana/ queries a metric nobody exports.

Every metric name in the dashboards' PromQL (panel targets and template-variable queries) must
be exported by the component the dashboard is for:

- broker.json: a live scrape of a broker this script starts (automq-broker),
- warehouse.json: a live scrape of a query node this script starts (automq-query-node),
- operator.json: deploy/grafana/operator-metrics.txt (the operator's test checks that list
  against the operator's real registry).

Both processes run on free loopback ports with temporary data directories. Before scraping,
the script produces and consumes a few records, runs a few SQL statements and one routine load
(from the broker it started), because labelled metric families appear only once used. Both
processes are stopped by PID at the end.

A name matches as Prometheus stores it: a counter family `x` is queried as `x_total`, a
histogram `x` as `x_bucket`, `x_sum` and `x_count`, a gauge as `x`. A bare counter or histogram
family name does not match.

Usage (from the repository root, after `cargo build -p automq-broker -p automq-warehouse`):
    python3 deploy/grafana/check_metrics.py --broker target/debug/automq-broker \\
        --query-node target/debug/automq-query-node
Needs confluent-kafka and PyMySQL (installed with pip when missing, at e2e/requirements.txt's
versions).
"""
import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))

# Which exporter each dashboard is checked against.
DASHBOARD_SOURCES = {
    "broker.json": "broker",
    "warehouse.json": "query-node",
    "operator.json": "operator",
}

# --- metric names: exposition parsing --------------------------------------------------------

SUFFIXES = {
    "counter": ["_total"],
    "histogram": ["_bucket", "_sum", "_count"],
    "summary": ["", "_sum", "_count"],
    "gauge": [""],
    "gaugehistogram": ["_bucket", "_gsum", "_gcount"],
    "info": ["_info"],
    "stateset": [""],
    "unknown": [""],
}


def stored_names(family, kind):
    """The series names Prometheus stores for one metric family of this type."""
    if kind not in SUFFIXES:
        raise ValueError(f"unknown metric type {kind!r} for {family}")
    return {family + s for s in SUFFIXES[kind]}


def names_from_exposition(text):
    """Series names a scrape exposes: every sample line, plus what each # TYPE line implies
    (a family that has not been used yet still has its TYPE line with some encoders)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                names |= stored_names(parts[2], parts[3])
        elif line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def names_from_list(path):
    """Series names from operator-metrics.txt: lines `family type [labels]`, # comments."""
    names = set()
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split()
            if len(parts) < 2:
                raise SystemExit(f"{path}:{number}: expected `family type [labels]`, got {raw!r}")
            names |= stored_names(parts[0], parts[1])
    return names


# --- metric names: PromQL extraction ---------------------------------------------------------

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "inf", "nan", "atan2", "start", "end"}
IDENT = re.compile(r"(?<![A-Za-z0-9_:.$])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr):
    """Metric names referenced by one PromQL expression (with Grafana variables)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # string literals
    e = re.sub(r"\$\{[^}]*\}|\$\w+|\[\[\w+\]\]", " 1 ", e)                  # Grafana variables
    e = re.sub(r"\{[^}]*\}", " ", e)                                          # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                                         # ranges, subqueries
    e = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\boffset\s+-?\w+", " ", e)
    names = set()
    for m in IDENT.finditer(e):
        word = m.group(0)
        if word.lower() in KEYWORDS or re.match(r"\s*\(", e[m.end():]):
            continue  # a keyword, or a function / aggregation being called
        names.add(word)
    return names


def template_names(query):
    """Metric names in a Grafana Prometheus template-variable query."""
    q = query.strip()
    m = re.fullmatch(r"label_values\(\s*(.*?)\s*,\s*\w+\s*\)", q, re.S)
    if m:
        return metric_names(m.group(1))
    if re.fullmatch(r"label_values\(\s*\w+\s*\)|label_names\(.*\)|metrics\(.*\)", q, re.S):
        return set()
    m = re.fullmatch(r"query_result\((.*)\)", q, re.S)
    return metric_names(m.group(1) if m else q)


def dashboard_names(dashboard):
    """{metric name: [where it is used]} for every PromQL query in a dashboard."""
    found = {}

    def add(names, where):
        for n in names:
            found.setdefault(n, []).append(where)

    def walk_panels(panels):
        for p in panels:
            for t in p.get("targets", []):
                if t.get("expr"):
                    add(metric_names(t["expr"]), f"panel {p.get('title')!r}")
            walk_panels(p.get("panels", []))  # collapsed rows

    walk_panels(dashboard.get("panels", []))
    for v in dashboard.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query", "") if isinstance(q, dict) else (q or "")
            add(template_names(q), f"variable ${v.get('name')}")
    return found


def self_test():
    """The extraction and suffix rules on known inputs, so a broken checker cannot pass."""
    exposition = "\n".join([
        "# TYPE a_requests counter", 'a_requests_total{api="Fetch"} 1',
        "# TYPE a_latency_seconds histogram", "# TYPE a_open gauge", "a_open 0", "# EOF"])
    known = names_from_exposition(exposition)
    expected = {"a_requests_total", "a_latency_seconds_bucket", "a_latency_seconds_sum",
                "a_latency_seconds_count", "a_open"}
    assert known == expected, known
    assert "a_requests" not in known and "a_latency_seconds" not in known
    expr = ('histogram_quantile(0.99, sum by (le, api) (rate(a_latency_seconds_bucket'
            '{job=~"$job", api!="x(y)"}[$__rate_interval]))) / on(instance) group_left '
            'sum without (topic) (increase(a_requests_total[5m] offset 1h)) > 1e3 '
            'and ignoring(pod) a_open{instance=~"${instance:regex}"}')
    got = metric_names(expr)
    assert got == {"a_latency_seconds_bucket", "a_requests_total", "a_open"}, got
    assert template_names("label_values(a_open{job=\"x\"}, instance)") == {"a_open"}
    assert template_names("label_values(instance)") == set()


# --- running the components -------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8")


def wait_ready(proc, http, name, log, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"FAIL: {name} exited with {proc.returncode}; log:\n{read(log)}")
        try:
            if http_get(f"http://{http}/readyz", timeout=1).strip() == "ready":
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"FAIL: {name} not ready on http://{http}/readyz after {seconds} s; log:\n"
                     f"{read(log)}")


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-4000:]


def stop(proc):
    """Stops one process this script started, by its PID."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ensure_clients():
    try:
        import confluent_kafka  # noqa: F401
        import pymysql  # noqa: F401
    except ImportError:
        print("==> installing confluent-kafka and PyMySQL (pip)", file=sys.stderr)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet",
                               "confluent-kafka==2.16.*", "PyMySQL==1.2.*"])


def broker_traffic(bootstrap):
    """Produce and consume a little, so per-API and per-topic families appear."""
    import confluent_kafka as ck
    producer = ck.Producer({"bootstrap.servers": bootstrap})
    for i in range(50):
        producer.produce("metrics-check", f"v{i}".encode(), key=str(i).encode())
    for i in range(20):
        producer.produce("metrics-check-load", f"{i},name{i}".encode())
    if producer.flush(30) != 0:
        raise SystemExit("FAIL: records not acknowledged by the broker within 30 s")
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "metrics-check",
                            "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["metrics-check"])
    got, deadline = 0, time.time() + 30
    while got < 50 and time.time() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            got += 1
    consumer.commit(asynchronous=False)
    consumer.close()
    if got < 50:
        raise SystemExit(f"FAIL: consumed {got}/50 records from the broker")


def query_node_traffic(mysql_port, bootstrap):
    """SQL statements (one failing) and a routine load, so statement and load families appear."""
    import pymysql
    conn = pymysql.connect(host="127.0.0.1", port=mysql_port, user="root", password="",
                           autocommit=True)
    cur = conn.cursor()
    cur.execute("CREATE DATABASE metrics_check")
    cur.execute("USE metrics_check")
    cur.execute("CREATE TABLE t (id INT, name VARCHAR(32)) PRIMARY KEY (id)")
    cur.execute("INSERT INTO t VALUES (1000, 'a'), (1001, 'b')")
    cur.execute("SELECT count(*) FROM t")
    try:
        cur.execute("SELECT * FROM no_such_table")
    except pymysql.MySQLError:
        pass
    cur.execute(f"""CREATE ROUTINE LOAD load_t ON t COLUMNS TERMINATED BY ','
        PROPERTIES ("format" = "csv", "max_batch_interval" = "0.2")
        FROM KAFKA ("kafka_broker_list" = "{bootstrap}", "kafka_topic" = "metrics-check-load",
                    "property.kafka_default_offsets" = "OFFSET_BEGINNING")""")
    deadline = time.time() + 60
    while time.time() < deadline:
        cur.execute("SELECT count(*) FROM t")
        if cur.fetchone()[0] >= 22:
            break
        time.sleep(0.3)
    else:
        raise SystemExit("FAIL: the routine load did not load 20 rows within 60 s")
    cur.execute("ALTER TABLE t COMPACT")
    cur.execute("SELECT name FROM t WHERE id = 3")
    conn.close()


def scrape_components(broker_bin, query_node_bin):
    ensure_clients()
    work = tempfile.mkdtemp(prefix="automq-metrics-check-")
    procs = []
    try:
        kafka, bhttp = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        blog = os.path.join(work, "broker.log")
        broker = subprocess.Popen(
            [broker_bin, "--data-dir", os.path.join(work, "broker"), "--listen", kafka,
             "--http-listen", bhttp, "--num-partitions", "2"],
            stdout=open(blog, "w"), stderr=subprocess.STDOUT)
        procs.append(broker)
        mysql_port, qhttp = free_port(), f"127.0.0.1:{free_port()}"
        qlog = os.path.join(work, "query-node.log")
        qnode = subprocess.Popen(
            [query_node_bin, "--data-dir", os.path.join(work, "query-node"),
             "--mysql-listen", f"127.0.0.1:{mysql_port}", "--http-listen", qhttp,
             "--cache-mb", "64"],
            stdout=open(qlog, "w"), stderr=subprocess.STDOUT)
        procs.append(qnode)
        wait_ready(broker, bhttp, "broker", blog)
        wait_ready(qnode, qhttp, "query node", qlog)
        broker_traffic(kafka)
        query_node_traffic(mysql_port, kafka)
        time.sleep(1)  # let the routine load's gauges and the storage uploads settle
        return {"broker": http_get(f"http://{bhttp}/metrics"),
                "query-node": http_get(f"http://{qhttp}/metrics")}
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(work, ignore_errors=True)


# --- the check --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", required=True, help="path to the automq-broker binary")
    ap.add_argument("--query-node", required=True, help="path to the automq-query-node binary")
    ap.add_argument("--operator-metrics", default=os.path.join(HERE, "operator-metrics.txt"))
    ap.add_argument("--dashboards", default=HERE, help="directory of the dashboard JSON files")
    ap.add_argument("--print-exported", action="store_true",
                    help="also print every series name each component exports")
    args = ap.parse_args()

    self_test()
    files = sorted(glob.glob(os.path.join(args.dashboards, "*.json")))
    unknown = [os.path.basename(f) for f in files if os.path.basename(f) not in DASHBOARD_SOURCES]
    if unknown or not files:
        raise SystemExit(f"FAIL: dashboards without a known exporter: {unknown or 'none found'} "
                         f"(known: {sorted(DASHBOARD_SOURCES)})")

    scrapes = scrape_components(args.broker, args.query_node)
    exported = {name: names_from_exposition(text) for name, text in scrapes.items()}
    exported["operator"] = names_from_list(args.operator_metrics)
    if args.print_exported:
        for source, names in exported.items():
            print(f"{source} exports: {' '.join(sorted(names))}")

    failures = 0
    for path in files:
        base = os.path.basename(path)
        source = DASHBOARD_SOURCES[base]
        with open(path, encoding="utf-8") as f:
            used = dashboard_names(json.load(f))
        missing = {n: w for n, w in used.items() if n not in exported[source]}
        if not used:
            print(f"FAIL {base}: no metric names found in its queries")
            failures += 1
        for name, where in sorted(missing.items()):
            print(f"FAIL {base}: {name} is not exported by the {source} "
                  f"(used in {', '.join(sorted(set(where)))})")
            failures += 1
        if used and not missing:
            print(f"PASS {base}: all {len(used)} metric names exported by the {source}")
    if failures:
        print(f"FAIL: {failures} problem(s): dashboards query metrics nobody exports", file=sys.stderr)
        return 1
    print("all dashboard metrics are exported")
    return 0


if __name__ == "__main__":
    sys.exit(main())
