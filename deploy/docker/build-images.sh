#!/usr/bin/env bash
# Builds the three container images from the repository (run from anywhere):
#
#   deploy/docker/build-images.sh                    # broker, query-node and operator
#   deploy/docker/build-images.sh broker operator    # only these
#   TAG=0.2.0 REGISTRY=registry.example.com/automq deploy/docker/build-images.sh
#
# Images: ${REGISTRY:-ghcr.io/automq-rs}/automq-<name>:${TAG:-0.1.0}, one per
# deploy/docker/Dockerfile.<name>. The builds share BuildKit caches for the cargo registry and
# target directory, so the second and third reuse the first's compiled dependencies. Needs
# Docker with BuildKit (the default since Docker 23). Prints each image name when built.
set -euo pipefail
cd "$(dirname "$0")/../.."

tag=${TAG:-0.1.0}
registry=${REGISTRY:-ghcr.io/automq-rs}
all=(broker query-node operator)
if [ "$#" -eq 0 ]; then set -- "${all[@]}"; fi

for name in "$@"; do
    if [ ! -f "deploy/docker/Dockerfile.$name" ]; then
        echo "unknown image '$name' (expected one of: ${all[*]})" >&2
        exit 2
    fi
done
for name in "$@"; do
    image="$registry/automq-$name:$tag"
    echo "==> building $image" >&2
    DOCKER_BUILDKIT=1 docker build -f "deploy/docker/Dockerfile.$name" -t "$image" .
    echo "$image"
done
