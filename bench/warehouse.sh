#!/usr/bin/env bash
# Query-node benchmark: TPC-H (default SF1) loaded through the MySQL protocol, all 22 queries
# timed on automq-query-node and, in the same run on the same data, DuckDB (native and on
# Parquet), chDB and datafusion-python (on Parquet); then a 5-join dashboard query at 1, 16
# and 64 concurrent connections (QPS, p50, p99). Installs what it needs when missing.
# Extra arguments go to bench/warehouse_bench.py (--sf 0.1 for a quick run, --runs N).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import duckdb, duckdb_extension_tpch, pymysql' 2>/dev/null \
    || python3 -m pip install --quiet duckdb==1.5.5 duckdb-extension-tpch==1.5.5 'PyMySQL==1.2.*'
python3 -c 'import chdb' 2>/dev/null || python3 -m pip install --quiet chdb || echo "chdb unavailable: its column will say so"
python3 -c 'import datafusion' 2>/dev/null || python3 -m pip install --quiet datafusion || echo "datafusion-python unavailable"
cargo build --release --locked -p automq-warehouse
exec python3 bench/warehouse_bench.py --binary target/release/automq-query-node "$@"
