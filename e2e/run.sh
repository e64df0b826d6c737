#!/usr/bin/env bash
# Runs the real-client compatibility suite: installs the clients when missing, starts one
# SeaweedFS on loopback for the S3 WAL variants (unless AUTOMQ_TEST_S3_ENDPOINT is already
# set), and runs pytest with any arguments given (default: e2e/compat e2e/warehouse e2e/operator).
# Expects the binaries already built: cargo build -p automq-broker -p automq-warehouse -p automq -p automq-operator.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------
if ! python3 -c 'import pytest, confluent_kafka, kafka, aiokafka, snappy, lz4, zstandard, cramjam, pymysql, sqlalchemy, duckdb, duckdb_extension_tpch' 2>/dev/null; then
    log "installing e2e/requirements.txt"
    python3 -m pip install --quiet -r e2e/requirements.txt
fi
if ! command -v kcat >/dev/null 2>&1; then
    log "installing kcat (apt)"
    apt-get update -qq && apt-get install -y -qq kcat >/dev/null
fi

# --- one SeaweedFS for the S3 WAL tests (unless the caller already runs one) -------------------
work=$(mktemp -d)
SEAWEEDFS_PID=""
cleanup() {
    if [ -n "$SEAWEEDFS_PID" ]; then
        kill -9 "$SEAWEEDFS_PID" 2>/dev/null || true
        wait "$SEAWEEDFS_PID" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${AUTOMQ_TEST_S3_ENDPOINT:-}" ]; then
    # shellcheck source=scripts/lib/seaweedfs.sh
    . scripts/lib/seaweedfs.sh
    start_seaweedfs "$work"
fi

# --- Tansu, a second Kafka implementation for the routine-load tests -------------------------
# shellcheck source=scripts/lib/tansu.sh
. scripts/lib/tansu.sh
[ -n "${AUTOMQ_TANSU_BIN:-}" ] || ensure_tansu

# --- the suite -------------------------------------------------------------------------------
if [ "$#" -eq 0 ]; then set -- e2e/compat e2e/warehouse e2e/operator -q; fi
status=0
python3 -m pytest "$@" || status=$?
exit "$status"
