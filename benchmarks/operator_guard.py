"""What the chart's operator guard costs kube-apiserver per Job, as a namespace fills up.

    .venv/bin/python -m benchmarks.operator_guard [--sizes 0 100 1000] [--creates 40]

The guard's API-key check (``operator-guard-secrets``) takes every DeploymentEmbedding of the
namespace as a parameter, and kube-apiserver evaluates a policy once per parameter: a Job create
costs O(resources in its namespace). This starts a control plane (no kubelet), installs the
chart's RBAC and guard, fills one namespace with ``--sizes`` resources and, at each size, times
``--creates`` Job creates of the operator's ServiceAccount (dry-run: admission runs, nothing is
stored) with the whole guard, then with the API-key check's binding removed (the baseline), and
prints both and their ratio. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.operator_scale import GUARD_VALUES, OPERATOR_ENV, control_plane, percentile
from embedding_operator.api import names
from embedding_operator.controller.objects import build_job
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import Kube, group_path, resource_path
from tests.e2e.stack import install_chart_rbac
from tests.tools.fetch import ensure_tools

STATE = Path(__file__).resolve().parents[1] / ".cache" / "bench-guard"
NAMESPACE = "guarded"
BINDING = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings"
SECRETS_BINDING = "e2e-embedding-operator-operator-guard-secrets"
SETTLE = 5.0
"""Seconds for kube-apiserver's policy informers to see a binding come or go."""


def fill(admin: Kube, start: int, end: int) -> None:
    def one(i: int) -> None:
        admin.create(
            group_path(names.API_VERSION, NAMESPACE, names.PLURAL),
            {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "metadata": {"name": f"r-{i:05d}", "namespace": NAMESPACE},
                "spec": {"inputs": ["a document"], "model": "voyage-3.5"},
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(start, end)))


def job_creates(admin: Kube, operator: Kube, settings: Settings, count: int) -> list[float]:
    """Seconds of each of ``count`` dry-run creates of r-00000's Job, one at a time."""
    body = admin.get(resource_path(NAMESPACE, "r-00000"))
    assert body is not None
    job = build_job(body, "bench", 1, settings)
    path = group_path("batch/v1", NAMESPACE, "jobs")
    took = []
    for _ in range(count):
        t0 = time.perf_counter()
        operator.request("POST", path, job, query={"dryRun": "All"})
        took.append(time.perf_counter() - t0)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator_guard")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--creates", type=int, default=40)
    args = parser.parse_args(argv)
    cluster, api = control_plane(STATE)
    try:
        kubeconfig = install_chart_rbac(
            api,
            ensure_tools()["helm"],
            cluster.kubeconfig,
            STATE / "operator.kubeconfig",
            *GUARD_VALUES,
        )
        api.close()
        admin = Kube.from_environment("benchmark", kubeconfig=str(cluster.kubeconfig))
        operator = Kube.from_environment("embedding-operator", kubeconfig=str(kubeconfig))
        settings = Settings.from_env(OPERATOR_ENV)
        admin.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        binding = admin.get(f"{BINDING}/{SECRETS_BINDING}")
        assert binding is not None, "the chart's API-key check is not installed"
        binding = {k: binding[k] for k in ("apiVersion", "kind", "spec")} | {
            "metadata": {"name": SECRETS_BINDING}
        }
        rows = []
        filled = 0
        for size in sorted(args.sizes):
            fill(admin, filled, size)
            filled = size
            time.sleep(SETTLE)  # the parameter informer sees them all
            guarded = job_creates(admin, operator, settings, args.creates)
            admin.delete(f"{BINDING}/{SECRETS_BINDING}")
            time.sleep(SETTLE)
            baseline = job_creates(admin, operator, settings, args.creates)
            admin.create(BINDING, binding)
            time.sleep(SETTLE)
            rows.append((size, percentile(guarded, 0.5), percentile(baseline, 0.5)))
            print(f"  {size} resources: {rows[-1][1] * 1000:.1f} / {rows[-1][2] * 1000:.1f} ms")
    finally:
        cluster.stop()
    print(
        "\n| resources in the namespace | Job create p50, whole guard | without the API-key check"
        " | ratio |\n|---|---|---|---|"
    )
    for size, guarded_p50, baseline_p50 in rows:
        print(
            f"| {size:,} | {guarded_p50 * 1000:.1f} ms | {baseline_p50 * 1000:.1f} ms"
            f" | {guarded_p50 / baseline_p50:.1f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
