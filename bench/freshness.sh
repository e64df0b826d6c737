#!/usr/bin/env bash
# Routine-load freshness benchmark: events produced at a steady rate to automq-broker are
# loaded by a routine load with default settings into a query-node table; we measure the time
# from produce to queryable through the MySQL protocol (p50/p99/max), next to the end-to-end
# latency of a plain Kafka consumer on the same topic (the floor any loader sits on).
# Extra arguments go to bench/freshness_bench.py (--rate N, --seconds S).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka, pymysql' 2>/dev/null \
    || python3 -m pip install --quiet 'confluent-kafka==2.16.*' 'PyMySQL==1.2.*'
cargo build --release --locked -p automq-broker -p automq-warehouse
exec python3 bench/freshness_bench.py --bin-dir target/release "$@"
