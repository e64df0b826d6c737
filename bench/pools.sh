#!/usr/bin/env bash
# Pool latency isolation (issue 13): produce latency of small records on a file-WAL pool alone,
# while the S3-WAL pool is saturated, and after moving the topic onto the S3-WAL pool, on 4
# release brokers (bucket in a local directory; pass --s3 http://127.0.0.1:PORT for SeaweedFS).
# Extra arguments go to bench/pools_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.*'
cargo build --release --locked -p automq-broker
exec python3 bench/pools_bench.py --bin "${CARGO_TARGET_DIR:-target}/release/automq-broker" "$@"
