#!/usr/bin/env bash
# Build the real test node's binaries into .cache/node-bin/: kubelet and kube-scheduler
# (tests/node/kube, k8s.io/kubernetes v1.37.2 as the control plane), containerd, its runc shim
# and ctr (tests/node/containerd, containerd v2), and the pod sandbox program `pause`. runc and
# the CNI plugins are Debian's. Skips the build when the stamp (hash of both modules and their
# sources, the Go version) matches; `--force` rebuilds. See docs/control-plane.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${NODE_BIN_DIR:-$root/.cache/node-bin}"
mkdir -p "$out"
bins=(kubelet kube-scheduler containerd containerd-shim-runc-v2 ctr pause)

stamp="$(cd "$here" && { cat build.sh; find kube containerd -type f \( -name '*.go' -o -name 'go.*' \) \
  | sort | xargs cat; go env GOVERSION; } | sha256sum | cut -d' ' -f1)"
if [[ "${1:-}" != "--force" && -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
  ok=1
  for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || ok=0; done
  if [[ $ok == 1 ]]; then
    echo "node binaries up to date in $out"
    exit 0
  fi
fi

export CGO_ENABLED=0
rm -f "$out/.stamp"
start=$SECONDS
cd "$here/containerd"
cver="$(go list -m -f '{{.Version}}' github.com/containerd/containerd/v2)"
for b in containerd containerd-shim-runc-v2 ctr; do
  echo "building $b ..."
  t=$SECONDS
  go build -trimpath -tags no_btrfs,no_devmapper,no_zfs \
    "-ldflags=-s -w -X github.com/containerd/containerd/v2/version.Version=$cver" \
    -o "$out/$b" "github.com/containerd/containerd/v2/cmd/$b"
  echo "  $b: $((SECONDS - t))s"
done
go build -trimpath -ldflags=-s\ -w -o "$out/pause" ./cmd/pause
cd "$here/kube"
# The release stamped into the binaries, as tests/cluster/build.sh does.
kver="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"
kminor="${kver#v1.}"; kminor="${kminor%%.*}"
ldx=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldx+=" -X $pkg.gitVersion=$kver -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kminor"
  ldx+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
for b in kubelet kube-scheduler; do
  echo "building $b ..."
  t=$SECONDS
  go build -trimpath "-ldflags=-s -w$ldx" -o "$out/$b" "k8s.io/kubernetes/cmd/$b"
  echo "  $b: $((SECONDS - t))s"
done
echo "$stamp" > "$out/.stamp"
echo "node binaries built in $out in $((SECONDS - start))s"
