#!/usr/bin/env bash
# Builds the OCI image from deploy/container/Containerfile with whichever of
# podman, docker or buildah is installed.
#
#   scripts/build-image.sh [TAG]     default TAG: outpost:<workspace version>
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
tag=${1:-outpost:$version}
for tool in podman docker buildah; do
  if command -v "$tool" >/dev/null 2>&1; then
    case "$tool" in
      buildah) exec buildah bud -f deploy/container/Containerfile -t "$tag" . ;;
      *) exec "$tool" build -f deploy/container/Containerfile -t "$tag" . ;;
    esac
  fi
done
echo "no podman, docker or buildah found" >&2
exit 1
