#!/usr/bin/env bash
# Merchant-homepage benchmark (issue 10): `automq demo` streams a booking platform's Debezium
# events into `automq standalone` while 1, 16 and 64 connections ask the homepage queries;
# reports QPS and p50/p99 next to DuckDB on a snapshot of the same tables, and event-to-SQL
# freshness next to a plain Kafka consumer. Extra arguments go to bench/homepage_bench.py
# (--rate N, --seconds S per level, --levels 1,16,64).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka, pymysql, duckdb' 2>/dev/null \
    || python3 -m pip install --quiet 'confluent-kafka==2.16.*' 'PyMySQL==1.2.*' 'duckdb==1.5.5'
cargo build --release --locked -p automq
exec python3 bench/homepage_bench.py --bin "${CARGO_TARGET_DIR:-target}/release/automq" "$@"
