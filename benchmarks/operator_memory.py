"""The operator's resident memory with 1,000 finished resources, through bursts of watch events,
by how results are kept in the status and whether freed memory is given back.

    .venv/bin/python -m benchmarks.operator_memory                  # ~15 minutes on 2 busy cores
    .venv/bin/python -m benchmarks.operator_memory --resources 200  # quicker

Starts its own control plane (tests/cluster, no node), creates ``--resources`` DeploymentEmbeddings
in each of two namespaces and writes each a ``Completed`` status whose result holds ``--vectors``
vectors of 1,024 floats: as JSON numbers in ``result.embeddings`` (what version 0.1 wrote) in one
namespace, as base64 in ``result.inline`` (now) in the other. Then, one after the other, runs
``embedding-operator run`` on one namespace and records its VmRSS once it is idle after startup,
after each of ``--bursts`` bursts (a label patched on every resource: one watch event and one
reconcile each), the lowest and highest VmRSS of the ``--idle`` seconds after (sampled every
second; the resync's list of every resource comes and goes), and VmHWM, the peak. Variants:

(0.1)   JSON numbers, freed memory kept (the operator before this work: the baseline);
(b64)   base64, glibc's defaults (``memory.give_back`` disabled);
(now)   base64, at most 2 malloc arenas and ``malloc_trim`` every 30 s (``memory.give_back``), as
        shipped.

Prints the figures and each variant's ratios to the baseline. Not a test: nothing fails on them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.result_encoding import DIMENSIONS, MODEL, status_result
from embedding_operator.api import names
from embedding_operator.kube import Kube, resource_path
from tests.api_cases import CRD_PATH
from tests.cluster.harness import Cluster, ensure_binaries, free_port
from tests.e2e.stack import apply_manifests, wait_established

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".cache" / "bench-operator-memory"
RUN = (
    "import sys\n"
    "from embedding_operator import memory\n"
    "if sys.argv[1] == 'keep':\n"
    "    memory.give_back = lambda *a, **k: None\n"
    "from embedding_operator.cli import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
)
VARIANTS = {"0.1": ("json", "keep"), "b64": ("base64", "keep"), "now": ("base64", "trim")}


def memory_mib(pid: int) -> dict[str, float]:
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            figures[key] = int(value.split()[0]) / 1024
    return figures


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, quiet: float = 3.0, timeout: float = 900.0) -> None:
    """Until the process has used (almost) no CPU for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1)
        now = cpu_seconds(pid)
        if now - last > 0.03:
            since = time.monotonic()
        last = now
        if time.monotonic() - since >= quiet:
            return


def inputs(index: int, count: int) -> list[str]:
    return [f"document {index} part {j}" for j in range(count)]


def populate(kube: Kube, namespace: str, resources: int, vectors: int, encoding: str) -> None:
    kube.create("/api/v1/namespaces", {"metadata": {"name": namespace}})

    def one(i: int) -> None:
        name = f"job-{i:05d}"
        kube.create(
            resource_path(namespace),
            {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "metadata": {"name": name},
                "spec": {"inputs": inputs(i, vectors), "model": MODEL},
            },
        )
        status = {
            "phase": "Completed",
            "observedGeneration": 1,
            "inputCount": vectors,
            "result": status_result(inputs(i, vectors), encoding),
        }
        kube.patch(resource_path(namespace, name, "status"), {"status": status})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(resources)))


def burst(kube: Kube, namespace: str, resources: int, stamp: str) -> None:
    def one(i: int) -> None:
        body = {"metadata": {"labels": {"bench-touch": stamp}}}
        kube.patch(resource_path(namespace, f"job-{i:05d}"), body)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(resources)))


def run_variant(
    cluster: Cluster, kube: Kube, variant: str, args: argparse.Namespace
) -> list[tuple[str, float]]:
    encoding, trimming = VARIANTS[variant]
    namespace = f"results-{encoding}"
    command = [sys.executable, "-c", RUN, trimming, "run", f"--namespace={namespace}"]
    command += [f"--liveness-port={free_port()}", "--metrics-port=0"]
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
    env["EMBEDDING_OPERATOR_IMAGE"] = "embedding-operator:bench"
    with (STATE / f"operator-{variant}.log").open("wb") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    figures: list[tuple[str, float]] = []
    try:
        time.sleep(2)
        wait_idle(proc.pid)
        figures.append(("RSS after startup", memory_mib(proc.pid)["VmRSS"]))
        for b in range(args.bursts):
            burst(kube, namespace, args.resources, f"{variant.replace('.', '-')}-{b}")
            wait_idle(proc.pid)
            figures.append((f"RSS after burst {b + 1}", memory_mib(proc.pid)["VmRSS"]))
        idle = []
        for _ in range(int(args.idle)):
            time.sleep(1)
            idle.append(memory_mib(proc.pid)["VmRSS"])
        figures.append((f"idle {args.idle:.0f} s: lowest", min(idle)))
        figures.append((f"idle {args.idle:.0f} s: highest", max(idle)))
        figures.append(("peak RSS (VmHWM)", memory_mib(proc.pid)["VmHWM"]))
    finally:
        proc.terminate()
        proc.wait(30)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resources", type=int, default=1000)
    parser.add_argument("--vectors", type=int, default=4, help="vectors per result")
    parser.add_argument("--bursts", type=int, default=2)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds after the bursts")
    args = parser.parse_args()
    ensure_binaries()
    STATE.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[tuple[str, float]]] = {}
    with Cluster(state_dir=STATE / "cluster", with_kubelet=False) as cluster:
        api = cluster.api_client()
        apply_manifests(api, (CRD_PATH,))
        wait_established(api)
        api.close()
        kube = Kube.from_environment("bench", kubeconfig=str(cluster.kubeconfig))
        for encoding in ("json", "base64"):
            populate(kube, f"results-{encoding}", args.resources, args.vectors, encoding)
        for variant in VARIANTS:
            results[variant] = run_variant(cluster, kube, variant, args)
            print(variant, results[variant], flush=True)
    print(f"\n{args.resources} resources, {args.vectors} x {DIMENSIONS} floats each; MiB")
    print(f"{'figure':<22}" + "".join(f"{v:>9}" for v in VARIANTS) + "  b64/0.1  now/0.1")
    for i, (figure, base) in enumerate(results["0.1"]):
        row = [results[v][i][1] for v in VARIANTS]
        ratios = f"{row[1] / base:>9.2f}{row[2] / base:>9.2f}"
        print(f"{figure:<22}" + "".join(f"{x:>9.1f}" for x in row) + ratios)


if __name__ == "__main__":
    main()
