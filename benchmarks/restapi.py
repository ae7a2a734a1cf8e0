"""Latency of the REST API's list through kube-apiserver, and the API server's memory.

    .venv/bin/python -m benchmarks.restapi                  # 1,000 resources, 300 requests each
    .venv/bin/python -m benchmarks.restapi --resources 200  # quicker

Starts its own test control plane (tests/cluster), installs the chart (operator and REST API
server as pods, the server in a network namespace of its own: docs/control-plane.md), creates
``--resources`` DeploymentEmbeddings in one namespace and lets the operator give each its status,
then times, interleaved, with the same ServiceAccount token through the same kube-apiserver:

(rest)  ``GET .../deployment-embeddings/?limit=20`` (the REST API: kube-apiserver authorizes and
        proxies; the server authorizes by a SubjectAccessReview (its outcome reused for 10 s),
        filters and sorts its watch-fed copy of the namespace's resources newest first and
        answers one page of records);
(page)  ``GET`` of the custom resources with ``?limit=20``: kube-apiserver's own cost of a
        20-item page (the baseline);
(all)   ``GET`` of all the custom resources: what a stateless newest-first page must read.

Prints p50/p99 of each and the ratios rest/page and rest/all, and the server's resident memory
(VmRSS, VmHWM of its process) after the run. Not a test: nothing here fails on timings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from embedding_operator.kube import Kube, resource_path
from tests.cluster.harness import Cluster, ensure_binaries, free_port
from tests.e2e.rest import (
    RestClient,
    bind,
    ca_file,
    chart_values,
    helm_install,
    token_for,
    wait_available,
)
from tests.e2e.stack import apply_manifests, wait_established
from tests.tools.fetch import ensure_tools

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".cache" / "bench-restapi"
NAMESPACE = "bench"
MODELS = ["voyage-3.5", "voyage-3-large", "voyage-4-lite", "voyage-code-3"]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def create_resources(kube: Kube, count: int) -> None:
    from embedding_operator.api import names

    def one(i: int) -> None:
        kube.create(
            resource_path(NAMESPACE),
            {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "metadata": {"name": f"job-{i:05d}"},
                "spec": {
                    "inputs": [f"document {i} part {j} about topic {i % 37}" for j in range(3)],
                    "model": MODELS[i % len(MODELS)],
                    "inputType": "document",
                },
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def all_have_status(kube: Kube, count: int) -> bool:
    items = kube.list(resource_path(NAMESPACE))
    return len(items) == count and all((o.get("status") or {}).get("phase") for o in items)


def server_memory(api: Any) -> dict[str, int]:
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    [pod] = core.list_pod_for_all_namespaces(
        label_selector="app.kubernetes.io/component=api-server"
    ).items
    pid = int(pod.status.container_statuses[0].container_id.removeprefix("process://"))
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) * 1024
    return fields


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.restapi")
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()

    ensure_binaries()
    cluster = Cluster(state_dir=STATE).start()
    try:
        return run(cluster, args.resources, args.requests)
    finally:
        cluster.stop()


def run(cluster: Cluster, resources: int, count: int) -> int:

    api = cluster.api_client()
    apply_manifests(api)
    wait_established(api)
    values = chart_values(
        "",
        free_port(),
        free_port(),
        crds={"install": False},
        admissionPolicy={"install": False},
    )
    helm_install(
        ensure_tools()["helm"], cluster.kubeconfig, "bench", "embedding-operator-system", values
    )
    wait_available(api, 120)
    t0 = time.monotonic()
    kube = Kube.from_environment("benchmark", kubeconfig=str(cluster.kubeconfig))
    kube.create("/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    create_resources(kube, resources)
    while not all_have_status(kube, resources):
        time.sleep(1)
    print(f"{resources} resources created and reconciled in {time.monotonic() - t0:.1f}s")

    token = token_for(api, NAMESPACE, "bench-user")
    bind(api, NAMESPACE, "bench-user", "edit")
    rest = RestClient(
        cluster.server, ca_file(cluster.kubeconfig, STATE / "ca.crt"), NAMESPACE, token
    )
    crs = cluster.server + resource_path(NAMESPACE)
    session: requests.Session = rest.session

    def timed(url: str) -> float:
        started = time.perf_counter()
        response = session.get(url, timeout=60)
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:300]}")
        return elapsed

    targets = {
        "rest": f"{rest.base}/?limit=20",
        "page": f"{crs}?limit=20",
        "all": crs,
    }
    deadline = time.monotonic() + 30
    while session.get(targets["rest"], timeout=60).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the bench user's rights did not settle")
        time.sleep(0.5)
    page = session.get(targets["rest"], timeout=60).json()
    assert len(page["items"]) == 20 and page["total"] == resources, page.get("total")
    samples: dict[str, list[float]] = {k: [] for k in targets}
    for _ in range(10):  # warm-up
        for url in targets.values():
            timed(url)
    for _ in range(count):
        for name, url in targets.items():
            samples[name].append(timed(url))
    memory = server_memory(api)

    print(f"\nGET of a 20-item page over {resources} resources, {count} requests each, interleaved")
    print(f"{'':6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}")
    for name, values_ in samples.items():
        p50, p99 = percentile(values_, 0.5) * 1000, percentile(values_, 0.99) * 1000
        print(f"{name:6} {p50:8.1f} {p99:8.1f} {statistics.mean(values_) * 1000:8.1f}")
    rest_p50 = percentile(samples["rest"], 0.5)
    print(
        f"\nratios (p50): rest/page {rest_p50 / percentile(samples['page'], 0.5):.2f}, "
        f"rest/all {rest_p50 / percentile(samples['all'], 0.5):.2f}"
    )
    print(
        f"API server memory: VmRSS {memory['VmRSS'] / 2**20:.1f} MiB, "
        f"peak VmHWM {memory['VmHWM'] / 2**20:.1f} MiB"
    )
    print(json.dumps({"p50_ms": rest_p50 * 1000, "rss_bytes": memory["VmRSS"]}))
    api.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
