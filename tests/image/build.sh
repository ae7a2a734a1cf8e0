#!/usr/bin/env bash
# Build the project's image from its Dockerfile with buildah (chroot isolation, no daemon) into a
# container storage of the project's own (.cache/containers/), and export it as an OCI archive
# for containerd (.cache/image/embedding-operator.oci.tar). No registry is reachable, so the base
# (python:3.11-slim) is a stand-in built from Debian 12's packages by tests/image/base.sh.
# Skips the build when nothing the Dockerfile copies changed (stamp = hash of the Dockerfile,
# .dockerignore, pyproject.toml, README.md, the files under operator/, the base's image id).
# Usage: bash tests/image/build.sh [--force]; prints the image name.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="$root/.cache/image"
mkdir -p "$cache"
# shellcheck source=tests/image/env.sh
source "$here/env.sh"

base=docker.io/library/python:3.11-slim
log() { echo "image: $*" >&2; }

if [[ ! -f "$cache/base-rootfs.tar.gz" ]]; then
  log "building the stand-in base from Debian 12 (debootstrap) ..."
  start=$SECONDS
  bash "$here/base.sh" "$cache/base-rootfs.tar.gz" >"$cache/base.log" 2>&1 \
    || { tail -20 "$cache/base.log" >&2; exit 1; }
  log "base root filesystem in $((SECONDS - start))s"
fi
base_sum="$(sha256sum "$cache/base-rootfs.tar.gz" | cut -d' ' -f1)"
if [[ "$(bah inspect --format '{{index .ImageAnnotations "dev.embedding-operator.rootfs"}}' "$base" 2>/dev/null)" != "$base_sum" ]]; then
  log "importing the stand-in base as $base ..."
  ctr="$(bah from --pull=false scratch)"
  bah add --quiet "$ctr" "$cache/base-rootfs.tar.gz" / >/dev/null
  bah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' \
    --annotation "dev.embedding-operator.rootfs=$base_sum" "$ctr"
  bah commit --quiet --rm "$ctr" "$base" >/dev/null
fi

version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/operator/embedding_operator/__init__.py")"
image="$IMAGE_NAME:$version"
stamp="$(cd "$root" && {
  cat Dockerfile .dockerignore pyproject.toml README.md
  find operator -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' | sort | xargs sha256sum
  bah inspect --format '{{.FromImageID}}' "$base"
} | sha256sum | cut -d' ' -f1)"
archive="$cache/embedding-operator.oci.tar"
if [[ "${1:-}" != "--force" && -f "$cache/image.stamp" && "$(cat "$cache/image.stamp")" == "$stamp" \
      && -f "$archive" ]] && bah inspect "$image" >/dev/null 2>&1; then
  log "$image up to date"
  echo "$image"
  exit 0
fi

rm -f "$cache/image.stamp"
previous="$(bah inspect --format '{{.FromImageID}}' "$image" 2>/dev/null || true)"
log "building $image with buildah ..."
start=$SECONDS
# pip in the build stage reaches PyPI through this machine's CA bundle and pip settings.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$cache/pip.conf"
bah bud --isolation chroot --pull=never --layers \
  --volume /etc/ssl/certs:/etc/ssl/certs:ro --volume "$cache/pip.conf:/etc/pip.conf:ro" \
  --build-arg "VERSION=$version" \
  --build-arg "REVISION=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)" \
  --tag "$image" "$root" >"$cache/build.log" 2>&1 || { tail -30 "$cache/build.log" >&2; exit 1; }
rm -f "$archive"
bah push --quiet "$image" "oci-archive:$archive:$image" >/dev/null
echo "$stamp" > "$cache/image.stamp"
# The image this one replaces is untagged now: remove it (the build stage's layers stay cached).
if [[ -n "$previous" && "$previous" != "$(bah inspect --format '{{.FromImageID}}' "$image")" ]]; then
  bah rmi "$previous" >/dev/null 2>&1 || true
fi
log "built $image in $((SECONDS - start))s ($(bah inspect --format '{{.Size}}' "$image" 2>/dev/null || true))"
echo "$image"
