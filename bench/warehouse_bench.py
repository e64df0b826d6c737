"""TPC-H and dashboard concurrency: automq-query-node against DuckDB, chDB and
datafusion-python on the same data. Run through bench/warehouse.sh."""

import argparse
import math
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e" / "warehouse"))
import tpch  # noqa: E402
from qnode import QueryNode  # noqa: E402

JOIN_HEAVY = [5, 7, 8, 9, 21]

DASHBOARD = """
SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue, count(DISTINCT o_orderkey) AS orders
FROM customer, orders, lineitem, supplier, nation, region
WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND l_suppkey = s_suppkey
  AND c_nationkey = s_nationkey AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey
  AND r_name = '{region}' AND o_orderdate >= DATE '{day}' AND o_orderdate < DATE '{day}' + INTERVAL 30 DAY
GROUP BY n_name ORDER BY revenue DESC
"""
REGIONS = ["AFRICA", "AMERICA", "ASIA", "EUROPE", "MIDDLE EAST"]


def best(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def engines(con, parquet_dir):
    out = {"duckdb": lambda q: con.execute(q).fetchall()}
    import duckdb

    pq = duckdb.connect()
    for t in tpch.TABLES:
        pq.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{parquet_dir}/{t}.parquet')")
    out["duckdb-parquet"] = lambda q: pq.execute(q).fetchall()
    try:
        import chdb.session

        sess = chdb.session.Session()
        for t in tpch.TABLES:
            sess.query(f"CREATE VIEW IF NOT EXISTS {t} AS SELECT * FROM file('{parquet_dir}/{t}.parquet', Parquet)")
        out["chdb"] = lambda q: sess.query(q, "CSV")
    except Exception as e:  # noqa: BLE001 - report, do not hide
        print(f"chdb unavailable: {e}", file=sys.stderr)
    try:
        import datafusion

        ctx = datafusion.SessionContext()
        for t in tpch.TABLES:
            ctx.register_parquet(t, f"{parquet_dir}/{t}.parquet")
        out["datafusion-python"] = lambda q: ctx.sql(q).collect()
    except Exception as e:  # noqa: BLE001
        print(f"datafusion-python unavailable: {e}", file=sys.stderr)
    return out


def dashboard(node, clients, seconds):
    latencies, errors = [], []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(seed):
        rng = random.Random(seed)
        conn = node.connect("tpch")
        cur = conn.cursor()
        mine = []
        while time.perf_counter() < stop:
            day = f"199{rng.randint(3, 7)}-{rng.randint(1, 12):02d}-01"
            t = time.perf_counter()
            try:
                cur.execute(DASHBOARD.format(region=rng.choice(REGIONS), day=day))
                cur.fetchall()
                mine.append(time.perf_counter() - t)
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(str(e))
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")  # noqa: E731
    return len(latencies) / elapsed, pct(0.5), pct(0.99), len(errors)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--sf", type=float, default=1.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", default="1,16,64")
    args = ap.parse_args()
    os.environ["AUTOMQ_QUERY_NODE_BIN"] = str(Path(args.binary).resolve())

    work = Path(tempfile.mkdtemp(prefix="automq-wh-bench-"))
    print(f"generating TPC-H SF{args.sf} ...", flush=True)
    con = tpch.generate(args.sf)
    for t in tpch.TABLES:
        con.execute(f"COPY {t} TO '{work}/{t}.parquet' (FORMAT parquet)")
    node = QueryNode(work / "node")
    (work / "node").mkdir()
    node.start()
    try:
        with node.connect() as c, c.cursor() as cur:
            cur.execute("CREATE DATABASE tpch")
            cur.execute("USE tpch")
            tpch.create_tables(cur, con)
            t0 = time.perf_counter()
            last = [0.0]

            def progress(table, total):
                if time.perf_counter() - last[0] > 5:
                    last[0] = time.perf_counter()
                    print(f"  loading {table}: {total} rows so far", flush=True)

            rows = tpch.load(cur, con, progress=progress)
            load_s = time.perf_counter() - t0
        print(f"loaded {rows} rows through the MySQL protocol in {load_s:.1f} s ({rows / load_s:,.0f} rows/s)")

        ours_conn = node.connect("tpch")
        ours_cur = ours_conn.cursor()

        def ours(q):
            ours_cur.execute(q)
            return ours_cur.fetchall()

        others = engines(con, work)
        names = ["automq"] + list(others)
        print("\nTPC-H SF%s, best of %d, seconds (ratio = automq / engine)" % (args.sf, args.runs))
        print("query " + " ".join(f"{n:>18}" for n in names))
        ratios = {n: [] for n in others}
        for i, q in enumerate(tpch.queries(con), start=1):
            cells = []
            ours(q)  # warm the segment cache
            t_ours = best(lambda: ours(q), args.runs)
            cells.append(f"{t_ours:18.3f}")
            for n, fn in others.items():
                try:
                    fn(q)
                    t = best(lambda: fn(q), args.runs)
                    ratios[n].append((i, t_ours / t))
                    cells.append(f"{t:9.3f} ({t_ours / t:5.2f}x)")
                except Exception as e:  # noqa: BLE001
                    cells.append(f"{'error':>18}")
                    print(f"  Q{i} on {n}: {str(e).splitlines()[0][:100]}", file=sys.stderr)
            print(f"Q{i:<4} " + " ".join(cells), flush=True)
        print("\ngeometric mean of ratios (automq / engine; below 1 = automq faster):")
        for n, rs in ratios.items():
            if rs:
                all_g = math.exp(sum(math.log(r) for _, r in rs) / len(rs))
                jh = [r for i, r in rs if i in JOIN_HEAVY]
                jh_g = math.exp(sum(math.log(r) for r in jh) / len(jh)) if jh else float("nan")
                print(f"  {n:>18}: all {all_g:5.2f}x over {len(rs)} queries; join-heavy (Q5,7,8,9,21) {jh_g:5.2f}x")
        ours_conn.close()

        print(f"\ndashboard query (6 tables, 5 joins), {args.seconds:.0f} s per level:")
        for c in [int(x) for x in args.concurrency.split(",")]:
            qps, p50, p99, errs = dashboard(node, c, args.seconds)
            print(f"  {c:>3} connections: {qps:8.1f} QPS  p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms  errors {errs}")
    finally:
        node.kill()


if __name__ == "__main__":
    main()
