#!/usr/bin/env bash
# Topic-link benchmark (issue 7): mirroring throughput for one large topic and for many small
# topics, next to a plain consumer reading the same data from the source in the same run, and
# the time to migrate 1,000 small topics end to end (link -> caught up -> promoted). Source and
# destination are release automq brokers on loopback. Extra arguments go to bench/link_bench.py
# (--large-mb N, --small-topics N, --migrate-topics N).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.*'
cargo build --release --locked -p automq-broker
exec python3 bench/link_bench.py --bin "${CARGO_TARGET_DIR:-target}/release/automq-broker" "$@"
