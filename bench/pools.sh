#!/usr/bin/env bash
# Pool latency isolation (issue 13): produce latency of small records on a file-WAL pool alone,
# while the S3-WAL pool is saturated, and after moving the topic onto the S3-WAL pool, on 4
# release brokers. Each pool and its clients get their own half of the CPUs (separate nodes in
# production), and the bucket is a directory in /dev/shm when there is one, so that the bulk
# pool's uploads do not compete with the file WAL's fsyncs for the local disk (a remote object
# store would not). Extra arguments go to bench/pools_bench.py (--no-pin, --bucket-dir DIR,
# --s3 http://127.0.0.1:PORT for SeaweedFS, --seconds N).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.*'
cargo build --release --locked -p automq-broker
defaults=(--seconds 10)
if [ -d /dev/shm ] && [ -w /dev/shm ]; then defaults+=(--bucket-dir /dev/shm); fi
exec python3 bench/pools_bench.py --bin "${CARGO_TARGET_DIR:-target}/release/automq-broker" "${defaults[@]}" "$@"
