"""Start or stop the control plane with a real node (kubelet, containerd, runc, CNI bridge).

make cluster-up NODE=real   # = python -m tests.node up
export KUBECONFIG=.cache/cluster/admin.kubeconfig
make cluster-down NODE=real # = python -m tests.node down
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.cluster.harness import DEFAULT_BIN_DIR, DEFAULT_STATE_DIR, ClusterError, ensure_binaries
from tests.image import runner
from tests.node.harness import RealNodeCluster, ensure_node_binaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.node")
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    args = parser.parse_args(argv)
    cluster = RealNodeCluster(state_dir=args.state_dir, bin_dir=DEFAULT_BIN_DIR)
    if args.command == "up":
        ensure_binaries()
        ensure_node_binaries()
        cluster.image = runner.build().name
        try:
            cluster.start(timeout=300)
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items())
        print(f"control plane and node {cluster.node_name} up at {cluster.server} ({timings})")
        print(f"image {cluster.image}; export KUBECONFIG={cluster.kubeconfig}")
        return 0
    if not cluster.pids_file.exists() and not cluster.node_file.exists():
        print("nothing to stop")
        return 0
    left = cluster.stop()
    rest = cluster.leftovers()
    if left or rest:
        print(f"left behind: processes {left}, {rest}", file=sys.stderr)
        return 1
    print("control plane and node stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
