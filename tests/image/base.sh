#!/usr/bin/env bash
# Build the stand-in for the Dockerfile's base image, python:3.11-slim, from Debian's packages:
# no container registry is reachable here, so the official image cannot be pulled. Debian 12
# (bookworm) ships Python 3.11, the same minor version. The root filesystem (debootstrap minbase
# plus python3 and python3-venv, apt lists/docs/man pages removed) is cached as a tarball
# under .cache/image/; tests/image/build.sh imports it under the name the Dockerfile expects.
# Usage: bash tests/image/base.sh OUT.tar.gz
set -euo pipefail
out="$1"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
rootfs="$(mktemp -d "$(dirname "$out")/rootfs.XXXXXX")"
trap 'rm -rf "$rootfs"' EXIT
# minbase: essential + apt; python3-venv brings ensurepip, which `python3 -m venv` needs.
debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$mirror"
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
  "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/dev/*
# The official image has `python` too; `python3` is the name the Dockerfile uses.
ln -sf python3 "$rootfs/usr/bin/python"
tar --numeric-owner -C "$rootfs" -czf "$out.tmp" .
mv "$out.tmp" "$out"
