"""Small-INSERT latency and object-store writes of automq-query-node on a real S3 server
(SeaweedFS), two modes side by side in one run. Run through bench/inserts.sh.

(a) default: a write whose encoded rows are small commits them inline in its metadata-log
    record (one object-store PUT per INSERT); compaction later flushes them into Parquet.
(b) --inline-max-kb 0 (the anchor): every INSERT uploads a Parquet segment object, then
    commits it (two PUTs; a third when an upsert leaves a delete vector behind).

Each mode gets a fresh query node on its own prefix of one SeaweedFS bucket, a DUPLICATE KEY
and a PRIMARY KEY table, and runs three phases: sequential single-row INSERTs on one
connection, the same on 8 concurrent connections, and sequential upserts of repeating keys
into the primary-key table. The modes run in interleaved rounds (a b, b a, a b: a fresh node
and prefix each time) so that a noisy machine weighs on both alike; latency percentiles are
over the INSERTs of all rounds, rows/s is the median round. Around every phase the node's
/metrics give segments uploaded and inlined, commits and object-store PUT requests
(automq_storage_object_requests_total, which also counts whatever background compaction wrote
during the phase); at the end the objects left under each prefix are counted through the
SeaweedFS filer. Row counts (and the upserted values) are checked through SQL; a mismatch
fails the run.
"""

import argparse
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "bench"))
sys.path.insert(0, str(HERE / "e2e" / "warehouse"))
from broker_bench import ACCESS, BUCKET, SECRET, start_seaweed  # noqa: E402
from qnode import QueryNode  # noqa: E402

MODES = [("a default (inline)", []), ("b inline-max-kb 0", ["--inline-max-kb", "0"])]
ANCHOR = 1
PAYLOAD = "p" * 48


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * q)))] if xs else float("nan")


def mean_ms(seconds, count):
    return 1000 * seconds / count if count else float("nan")


def ms(x):
    return "     -" if x != x else f"{x:6.2f}"


def scrape(node):
    """The counters this benchmark diffs, from the node's /metrics."""
    out = {"put": 0, "put_bytes": 0, "put_s": 0.0, "put_n": 0, "put_if_absent_s": 0.0, "put_if_absent_n": 0}
    for line in node.metrics().splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"automq_warehouse_(\w+)_total (\d+)", line)
        if m:
            out[m[1]] = int(m[2])
            continue
        m = re.match(r'automq_storage_object_requests_total\{op="(put|put_if_absent)",outcome="\w+"\} (\d+)', line)
        if m:
            out["put"] += int(m[2])
            continue
        m = re.match(r'automq_storage_object_bytes_total\{op="(put|put_if_absent)"\} (\d+)', line)
        if m:
            out["put_bytes"] += int(m[2])
            continue
        m = re.match(
            r'automq_storage_object_request_duration_seconds_(sum|count)\{op="(put|put_if_absent)"\} ([\d.e+-]+)', line)
        if m:
            out[f"{m[2]}_{'s' if m[1] == 'sum' else 'n'}"] = float(m[3])
    return out


def count_objects(filer, path):
    """Objects under `path` of the SeaweedFS filer (its HTTP listing, no S3 credentials needed)."""
    total, stack = 0, [path.rstrip("/")]
    while stack:
        d, last = stack.pop(), ""
        while True:
            q = urllib.parse.urlencode({"limit": 1000, "lastFileName": last})
            req = urllib.request.Request(f"{filer}{urllib.parse.quote(d)}/?{q}", headers={"Accept": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    listing = json.load(r)
            except urllib.error.HTTPError as e:
                if e.code == 404:
                    break
                raise
            entries = listing.get("Entries") or []
            for e in entries:
                if e.get("Mode", 0) & (1 << 31):  # os.ModeDir
                    stack.append(e["FullPath"])
                else:
                    total += 1
            if not listing.get("ShouldDisplayLoadMore") or not entries:
                break
            last = listing["LastFileName"]
    return total


def sequential(cur, sql, rows):
    lat = []
    started = time.perf_counter()
    for r in rows:
        t = time.perf_counter()
        cur.execute(sql, r)
        lat.append((time.perf_counter() - t) * 1000)
    return lat, time.perf_counter() - started


def concurrent(node, sql, conns, per_conn, first_id):
    lat = [[] for _ in range(conns)]
    errors = []
    cursors = [node.connect("bench").cursor() for _ in range(conns)]
    barrier = threading.Barrier(conns + 1)

    def worker(k):
        barrier.wait()
        try:
            for i in range(per_conn):
                t = time.perf_counter()
                cursors[k].execute(sql, (first_id + k * per_conn + i, k, PAYLOAD))
                lat[k].append((time.perf_counter() - t) * 1000)
        except Exception as e:  # noqa: BLE001 - reported below, fails the run
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    for c in cursors:
        c.connection.close()
    if errors:
        raise RuntimeError(f"{len(errors)} connections failed, first: {errors[0]!r}")
    return [x for xs in lat for x in xs], elapsed


def run_mode(label, extra, work, endpoint, args, round_no):
    prefix = re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + f"-r{round_no}"
    qdir = work / prefix
    qdir.mkdir()
    node = QueryNode(
        qdir,
        args=["--object-store", f"s3://{BUCKET}/{prefix}?endpoint={endpoint}&region=us-east-1", *extra],
        env={"AWS_ACCESS_KEY_ID": ACCESS, "AWS_SECRET_ACCESS_KEY": SECRET, "AUTOMQ_LOG": "warn"},
    ).start()
    results = []
    try:
        cur = node.connect().cursor()
        cur.execute("CREATE DATABASE bench")
        cur.execute("USE bench")
        cur.execute("CREATE TABLE warm (id BIGINT NOT NULL, n INT, payload VARCHAR(64)) DUPLICATE KEY (id)")
        cur.execute("CREATE TABLE dup (id BIGINT NOT NULL, n INT, payload VARCHAR(64)) DUPLICATE KEY (id)")
        cur.execute("CREATE TABLE pk (id BIGINT NOT NULL, n INT, payload VARCHAR(64)) PRIMARY KEY (id)")
        # Warm the connection pool to S3 and the node's caches (not measured).
        sequential(cur, "INSERT INTO warm VALUES (%s, %s, %s)", [(i, 0, PAYLOAD) for i in range(20)])

        def phase(name, inserts, fn):
            before = scrape(node)
            lat, elapsed = fn()
            after = scrape(node)
            results.append({"mode": label, "phase": name, "n": inserts, "lat": lat, "elapsed": elapsed,
                             "d": {k: after.get(k, 0) - before.get(k, 0) for k in after}})

        ins = "INSERT INTO dup VALUES (%s, %s, %s)"
        phase("dup 1 conn", args.seq,
              lambda: sequential(cur, ins, [(i, -1, PAYLOAD) for i in range(args.seq)]))
        phase(f"dup {args.conns} conns", args.conns * args.per_conn,
              lambda: concurrent(node, ins, args.conns, args.per_conn, args.seq))
        upserts = [(i % args.pk_keys, i, PAYLOAD) for i in range(args.pk_rows)]
        phase("pk upsert 1 conn", args.pk_rows,
              lambda: sequential(cur, "INSERT INTO pk VALUES (%s, %s, %s)", upserts))

        # Correctness: every acknowledged row is there, and each key holds its last upsert.
        want_dup = args.seq + args.conns * args.per_conn
        cur.execute("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM dup")
        got = cur.fetchone()
        if tuple(got) != (want_dup, want_dup, 0, want_dup - 1):
            raise SystemExit(f"{label}: dup holds {got}, expected ({want_dup}, {want_dup}, 0, {want_dup - 1})")
        cur.execute("SELECT id, n FROM pk ORDER BY id")
        got = {k: v for k, v in cur.fetchall()}
        last = {k: n for k, n, _ in upserts}
        if got != last:
            bad = sorted(k for k in set(got) | set(last) if got.get(k) != last.get(k))[:5]
            raise SystemExit(f"{label}: pk holds {len(got)} keys, expected {len(last)}; first wrong keys {bad}")
        filer = endpoint.rsplit(":", 1)[0] + f":{int(endpoint.rsplit(':', 1)[1]) + 3}"  # start_seaweed's layout
        base = f"/buckets/{BUCKET}/{prefix}/warehouse"
        objects = {k: count_objects(filer, f"{base}/{k}") for k in ("data", "meta")}
        return results, objects, scrape(node)
    finally:
        node.kill()


def summarize(runs):
    """One row per (mode, phase) over all rounds: latencies pooled, rows/s the median round,
    metrics summed."""
    out = []
    for label, _ in MODES:
        for name in dict.fromkeys(r["phase"] for r in runs):
            rs = [r for r in runs if r["mode"] == label and r["phase"] == name]
            lat = [x for r in rs for x in r["lat"]]
            n = sum(r["n"] for r in rs)
            d = {k: sum(r["d"].get(k, 0) for r in rs) for k in rs[0]["d"]}
            rates = sorted(r["n"] / r["elapsed"] for r in rs)
            out.append({
                "mode": label, "phase": name, "n": n, "p50": pct(lat, .5), "p99": pct(lat, .99),
                "mean": sum(lat) / len(lat), "rows_s": rates[len(rates) // 2],
                "round_p50": [pct(r["lat"], .5) for r in rs],
                "seg_per": d.get("segments_written", 0) / n, "inl_per": d.get("segments_inlined", 0) / n,
                "put_per": d["put"] / n, "kb_per": d["put_bytes"] / n / 1024,
                "seg_put_ms": mean_ms(d["put_s"], d["put_n"]),
                "log_put_ms": mean_ms(d["put_if_absent_s"], d["put_if_absent_n"]),
                "commits": d.get("commits", 0), "flushes": d.get("inline_flushes", 0),
                "compactions": d.get("compactions", 0), "conflicts": d.get("commit_conflicts", 0),
            })
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True, help="automq-query-node")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of both modes, interleaved (a b, b a, ...)")
    ap.add_argument("--seq", type=int, default=300, help="sequential INSERTs into the duplicate-key table")
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--per-conn", type=int, default=100)
    ap.add_argument("--pk-rows", type=int, default=300, help="sequential upserts into the primary-key table")
    ap.add_argument("--pk-keys", type=int, default=50, help="distinct keys they cycle through")
    args = ap.parse_args()
    os.environ["AUTOMQ_QUERY_NODE_BIN"] = str(Path(args.binary).resolve())
    work = Path(tempfile.mkdtemp(prefix="automq-inserts-"))
    weed = None
    started = time.perf_counter()
    try:
        weed, endpoint = start_seaweed(str(work))
        runs, objects, totals = [], {label: [] for label, _ in MODES}, {label: [] for label, _ in MODES}
        for rnd in range(args.rounds):
            for label, extra in (MODES if rnd % 2 == 0 else MODES[::-1]):
                r, objs, tot = run_mode(label, extra, work, endpoint, args, rnd)
                runs += r
                objects[label].append(objs)
                totals[label].append(tot)
    finally:
        if weed is not None:
            os.kill(weed.pid, signal.SIGKILL)
            weed.wait()
        shutil.rmtree(work, ignore_errors=True)

    rows = summarize(runs)
    print(f"\nautomq-query-node, object store SeaweedFS S3 on 127.0.0.1; single-row INSERTs of 3 columns "
          f"(BIGINT, INT, VARCHAR 48 B); {args.rounds} rounds, modes interleaved, each a fresh node on its own "
          f"prefix; {os.cpu_count()} cores; {time.perf_counter() - started:.0f} s")
    print("p50/p99/mean: over the INSERTs of all rounds; rows/s: the median round;")
    print("segs/ins: Parquet segment objects uploaded per INSERT; inl/ins: segments committed inline;")
    print("PUTs/ins, KiB/ins: object-store writes (put + put_if_absent) per INSERT, background compaction included;")
    print("obj ms / log ms: mean latency of one object PUT (segment, delete vector) / one metadata-log append\n")
    hdr = (f"{'mode':20} {'phase':17} {'n':>5} {'p50 ms':>7} {'p99 ms':>7} {'mean ms':>8} {'rows/s':>7} "
           f"{'segs/ins':>8} {'inl/ins':>7} {'PUTs/ins':>8} {'KiB/ins':>7} {'obj ms':>6} {'log ms':>6} "
           f"{'commits':>7} {'flush':>5} {'compact':>7}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        print(f"{r['mode']:20} {r['phase']:17} {r['n']:5} {r['p50']:7.2f} {r['p99']:7.2f} {r['mean']:8.2f} "
              f"{r['rows_s']:7.0f} {r['seg_per']:8.2f} {r['inl_per']:7.2f} {r['put_per']:8.2f} {r['kb_per']:7.1f} "
              f"{ms(r['seg_put_ms'])} {ms(r['log_put_ms'])} "
              f"{r['commits']:7} {r['flushes']:5} {r['compactions']:7}")
    a_label, b_label = MODES[0][0], MODES[ANCHOR][0]
    print(f"\nratios ({a_label}) / ({b_label}, the anchor): p50, p99 lower is better, rows/s higher is better")
    print(f"{'phase':17} {'p50':>6} {'p99':>6} {'rows/s':>7} {'PUTs/ins':>8}   p50 ratio per round")
    for a in (r for r in rows if r["mode"] == a_label):
        b = next(r for r in rows if r["mode"] == b_label and r["phase"] == a["phase"])
        per_round = " ".join(f"{x / y:.2f}" for x, y in zip(a["round_p50"], b["round_p50"]))
        print(f"{a['phase']:17} {a['p50'] / b['p50']:5.2f}x {a['p99'] / b['p99']:5.2f}x "
              f"{a['rows_s'] / b['rows_s']:6.2f}x {a['put_per'] / b['put_per']:7.2f}x   {per_round}")
    print(f"\nchecked after every round: dup holds exactly the {args.seq + args.conns * args.per_conn} ids inserted, "
          f"pk holds {args.pk_keys} keys each with its last upsert")
    print("\nend of each mode's last round (incl. 20 warm-up INSERTs and the DDL):")
    for label, _ in MODES:
        t, o = totals[label][-1], objects[label][-1]
        print(f"  {label:20} objects in the bucket: data {o['data']:4}, meta log {o['meta']:4}; "
              f"segments uploaded {t.get('segments_written', 0)}, inlined {t.get('segments_inlined', 0)}, "
              f"inline flushes {t.get('inline_flushes', 0)}, compactions {t.get('compactions', 0)}, "
              f"commit conflicts {t.get('commit_conflicts', 0)}, object PUTs {t['put']}")


if __name__ == "__main__":
    main()
