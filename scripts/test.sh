#!/usr/bin/env bash
# The test command (README): installs what the tests need when it is missing, starts one
# SeaweedFS on loopback for the S3 tests, runs lints, the Rust tests and the real-client
# compatibility suite (e2e/), and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# --- tools -----------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

# Real clients that tests drive (Kafka and MySQL client libraries, kcat, the mysql CLI).
if ! python3 -c 'import pytest, confluent_kafka, kafka, aiokafka, pymysql, mysql.connector, sqlalchemy, duckdb, duckdb_extension_tpch' 2>/dev/null; then
    log "installing e2e/requirements.txt"
    python3 -m pip install --quiet -r e2e/requirements.txt
fi
if ! command -v kcat >/dev/null 2>&1 || ! command -v mysql >/dev/null 2>&1; then
    log "installing kcat and the mysql CLI (apt)"
    apt-get update -qq && apt-get install -y -qq kcat mariadb-client >/dev/null
fi

# The build and the suites need room: ~9 GiB for target/ and ~2 GiB at peak under $TMPDIR.
disk() { df -h --output=target,avail "$PWD" "${TMPDIR:-/tmp}" | sed 's/^/    /'; }
log "free disk"
disk
free_kb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $4 }')
if [ "${free_kb:-0}" -lt $((12 * 1024 * 1024)) ]; then
    echo "    WARNING: less than 12 GiB free under ${TMPDIR:-/tmp}: the S3 tests' SeaweedFS fails writes when the disk fills"
fi

# --- one SeaweedFS for the whole run ------------------------------------------------------
work=$(mktemp -d)
SEAWEEDFS_PID=""
cleanup() {
    if [ -n "$SEAWEEDFS_PID" ]; then kill -9 "$SEAWEEDFS_PID" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
# shellcheck source=scripts/lib/seaweedfs.sh
. scripts/lib/seaweedfs.sh
start_seaweedfs "$work"

# --- lints and tests -------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo nextest run --workspace"
cargo nextest run --workspace --locked --profile ci
log "doc tests"
cargo test --workspace --doc --locked
log "deployment manifests: helm lint/template, kustomize, Kubernetes and CRD schema validation"
scripts/check-deploy.sh
log "Argo CD health checks (Lua 5.1) against sample resources"
deploy/argocd/health/test.sh
log "real-client compatibility suite (e2e/compat: confluent-kafka, kafka-python, aiokafka, kcat)"
cargo build --locked -p automq-broker -p automq-warehouse -p automq -p automq-operator
e2e/run.sh
log "Grafana dashboards reference only metrics the broker and query node export"
python3 deploy/grafana/check_metrics.py --broker target/debug/automq-broker --query-node target/debug/automq-query-node
log "kind end-to-end suite (skipped without docker and kind)"
e2e/kind/run.sh
log "free disk at the end"
disk
log "all tests passed"
