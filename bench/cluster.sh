#!/usr/bin/env bash
# Cluster benchmark (issue 4): partition move time (p50/p99 over >= 100 moves), failover time
# from SIGKILL to writable, and a new broker's start to serving, on 3 release brokers with the
# S3 WAL on a local-directory bucket (pass --s3 http://127.0.0.1:PORT for SeaweedFS), next to
# the store's own metadata-append latency. Extra arguments go to bench/cluster_bench.py.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.*'
cargo build --release --locked -p automq-broker
exec python3 bench/cluster_bench.py --bin "${CARGO_TARGET_DIR:-target}/release/automq-broker" "$@"
