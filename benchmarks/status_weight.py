"""What this operator's status costs kube-apiserver on every later write of the resource.

    .venv/bin/python -m benchmarks.status_weight [--resources 500] [--rounds 2]

The naive baseline of ``benchmarks/operator_scale.py`` writes four status fields; this operator
writes the status the design card asks for (phase, conditions for kstatus, Flux and Argo CD,
messages, counts), which with its managedFields makes a resource ~3x the bytes. This starts a
control plane (no operator, no watcher), gives ``--resources`` resources each status, then times
one annotation PATCH of each (16 threads, as the scale benchmark annotates) in turn: wall time
and kube-apiserver CPU seconds, and their ratio (this operator's status ÷ the baseline's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.operator_scale import OPERATOR_ENV, control_plane, cpu_seconds
from embedding_operator.api import names
from embedding_operator.controller.reconcile import plan
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import Kube, group_path, resource_path

STATE = Path(__file__).resolve().parents[1] / ".cache" / "bench-status"
NAIVE = {"phase": "Running", "jobName": "r-1-x", "runCount": 1, "lastHandledRunRequest": "x"}
"""The status the naive baseline writes."""


def operator_status(created: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """The status this operator writes by the time a run is Running: Pending, then the run."""
    now = datetime.now(UTC)
    pending = plan(created, None, [], now, settings).patch
    requested = {**created, "status": pending}
    requested["metadata"] = {**created["metadata"], "annotations": {names.RUN_ANNOTATION: "x"}}
    return {**pending, **plan(requested, None, [], now, settings).patch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.status_weight")
    parser.add_argument("--resources", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    settings = Settings.from_env(OPERATOR_ENV)
    cluster, api = control_plane(STATE)
    try:
        api.close()
        kube = Kube.from_environment("benchmark", kubeconfig=str(cluster.kubeconfig))
        apiserver = next(r.pid for r in cluster.records if r.name == "kube-apiserver")
        statuses = {"naive": lambda _: NAIVE, "operator": lambda c: operator_status(c, settings)}
        for which, status_of in statuses.items():
            kube.create("/api/v1/namespaces", {"metadata": {"name": which}})

            def make(i: int, which: str = which, status_of: Any = status_of) -> None:
                created = kube.create(
                    group_path(names.API_VERSION, which, names.PLURAL),
                    {
                        "apiVersion": names.API_VERSION,
                        "kind": names.KIND,
                        "metadata": {"name": f"r-{i:05d}", "namespace": which},
                        "spec": {"inputs": ["a document"], "model": "voyage-3.5"},
                    },
                )
                assert created is not None
                patch = {"status": status_of(created)}
                kube.patch(resource_path(which, f"r-{i:05d}", "status"), patch)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(make, range(args.resources)))
        sizes = {w: len(json.dumps(kube.get(resource_path(w, "r-00000")))) for w in statuses}
        figures: dict[str, list[tuple[float, float]]] = {w: [] for w in statuses}
        for round_ in range(args.rounds):
            for which in statuses:
                time.sleep(2)
                cpu, t0 = cpu_seconds(apiserver), time.monotonic()

                def annotate(i: int, which: str = which, round_: int = round_) -> None:
                    kube.patch(
                        resource_path(which, f"r-{i:05d}"),
                        {"metadata": {"annotations": {"bench": f"{round_}"}}},
                    )

                with ThreadPoolExecutor(16) as pool:
                    list(pool.map(annotate, range(args.resources)))
                took = (time.monotonic() - t0, cpu_seconds(apiserver) - cpu)
                figures[which].append(took)
                print(
                    f"  round {round_}, {which}: {took[0]:.1f} s, {took[1]:.1f} CPU s", flush=True
                )
    finally:
        cluster.stop()
    print(
        f"\n| {args.resources} annotation PATCHes | this operator's status | the naive's | ratio |"
    )
    print("|---|---|---|---|")
    print(
        f"| bytes of one resource | {sizes['operator']:,} | {sizes['naive']:,} | "
        f"{sizes['operator'] / sizes['naive']:.2f}x |"
    )
    for i, label in enumerate(("wall time, s", "kube-apiserver CPU, s")):
        ours = sum(f[i] for f in figures["operator"]) / args.rounds
        naive = sum(f[i] for f in figures["naive"]) / args.rounds
        print(
            f"| {label} (mean of {args.rounds}) | {ours:.1f} | {naive:.1f} | {ours / naive:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
