"""``python -m tests.cluster up|down|status``: run the test control plane by hand.

python -m tests.cluster up      # builds the binaries if needed, starts, prints KUBECONFIG
export KUBECONFIG=.cache/cluster/admin.kubeconfig
python -m tests.cluster down
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.cluster.harness import (
    DEFAULT_BIN_DIR,
    DEFAULT_STATE_DIR,
    Cluster,
    ClusterError,
    ensure_binaries,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster")
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--bin-dir", type=Path, default=DEFAULT_BIN_DIR)
    parser.add_argument("--no-kubelet", action="store_true", help="don't run the process kubelet")
    args = parser.parse_args(argv)
    cluster = Cluster(
        state_dir=args.state_dir, bin_dir=args.bin_dir, with_kubelet=not args.no_kubelet
    )
    if args.command == "up":
        ensure_binaries(args.bin_dir)
        try:
            cluster.start()
        except ClusterError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        timings = ", ".join(f"{k} {v:.1f}s" for k, v in cluster.timings.items())
        print(f"control plane up at {cluster.server} ({timings})")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"logs: {cluster.log_dir}")
        return 0
    if not cluster.pids_file.exists():
        print("no cluster running" if args.command == "status" else "nothing to stop")
        return 0 if args.command == "down" else 1
    if args.command == "status":
        records = cluster.load_records()
        running = True
        for r in records:
            alive = r.is_ours()
            running = running and alive
            print(f"{r.name:26} pid {r.pid:<8} {'running' if alive else 'gone'}")
        print(f"server {cluster.server}")
        return 0 if running else 1
    left = cluster.stop()
    if left:
        print(f"processes still alive: {left}", file=sys.stderr)
        return 1
    print("control plane stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
