"""Which client under the Kubernetes boundary (``embedding_operator/kube.py``): calls per second,
memory, and fit with kopf's asyncio loop, measured against the test control plane.

    .venv/bin/python -m benchmarks.kube_client            # ~1 minute once the binaries exist

Each candidate runs in a child process of its own (so its imports count towards its peak RSS)
and makes the same calls: N sequential GETs of one ConfigMap, then N GETs 16 at a time (threads
for a blocking client, tasks for an async one). Printed as calls per second and peak RSS, and
as ratios to the generated ``kubernetes`` client (the baseline, measured in the same run).
Candidates whose package is not installed are reported as such. Not a test: nothing here fails
on timings. Figures: docs/performance.md.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CALLS = 400
CONCURRENCY = 16

CANDIDATES = {
    "kubernetes (generated client, baseline)": "generated",
    "kubernetes.dynamic": "dynamic",
    "httpx, sync (kube.Kube: this project)": "kube",
    "httpx, async (AsyncClient)": "httpx_async",
    "aiohttp, async (kopf's transport)": "aiohttp",
    "kubernetes_asyncio": "kubernetes_asyncio",
    "lightkube": "lightkube",
}


def _child(kind: str, kubeconfig: str, namespace: str) -> dict[str, float]:
    """Runs in the child: time CALLS sequential and CALLS concurrent GETs."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    path = f"/api/v1/namespaces/{namespace}/configmaps/bench"

    def timed(fn: object, concurrent: bool) -> float:
        started = time.perf_counter()
        if concurrent:
            with ThreadPoolExecutor(CONCURRENCY) as pool:
                list(pool.map(lambda _: fn(), range(CALLS)))  # type: ignore[operator]
        else:
            for _ in range(CALLS):
                fn()  # type: ignore[operator]
        return CALLS / (time.perf_counter() - started)

    def timed_async(make: object) -> tuple[float, float]:
        async def main() -> tuple[float, float]:
            get, close = await make()  # type: ignore[operator]
            started = time.perf_counter()
            for _ in range(CALLS):
                await get()
            sequential = CALLS / (time.perf_counter() - started)
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one() -> None:
                async with gate:
                    await get()

            started = time.perf_counter()
            await asyncio.gather(*(one() for _ in range(CALLS)))
            concurrent = CALLS / (time.perf_counter() - started)
            await close()
            return sequential, concurrent

        return asyncio.run(main())

    if kind == "generated":
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))

        def get() -> object:
            return api.read_namespaced_config_map("bench", namespace)

        seq, conc = timed(get, False), timed(get, True)
    elif kind == "dynamic":
        from kubernetes import config, dynamic

        dyn = dynamic.DynamicClient(config.new_client_from_config(config_file=kubeconfig))
        cms = dyn.resources.get(api_version="v1", kind="ConfigMap")

        def get() -> object:
            return cms.get(name="bench", namespace=namespace)

        seq, conc = timed(get, False), timed(get, True)
    elif kind == "kube":
        from embedding_operator.kube import Kube

        kube = Kube.from_environment("bench", kubeconfig=kubeconfig)

        def get() -> object:
            return kube.get(path)

        seq, conc = timed(get, False), timed(get, True)
    elif kind == "httpx_async":
        import httpx

        from embedding_operator.kube import Connection

        async def make() -> object:
            conn = Connection.from_environment(kubeconfig)
            http = httpx.AsyncClient(base_url=conn.host, verify=conn.verify, cert=conn.cert)

            async def get() -> object:
                response = await http.get(path)
                response.raise_for_status()
                return response.json()

            return get, http.aclose

        seq, conc = timed_async(make)
    elif kind == "aiohttp":
        import aiohttp

        from embedding_operator.kube import Connection

        async def make() -> object:
            conn = Connection.from_environment(kubeconfig)
            context = conn.verify
            assert not isinstance(context, bool) and conn.cert is not None
            context.load_cert_chain(*conn.cert)
            session = aiohttp.ClientSession(
                base_url=conn.host, connector=aiohttp.TCPConnector(ssl=context)
            )

            async def get() -> object:
                async with session.get(path) as response:
                    response.raise_for_status()
                    return await response.json()

            return get, session.close

        seq, conc = timed_async(make)
    elif kind == "kubernetes_asyncio":
        from kubernetes_asyncio import client as aclient  # type: ignore[import-not-found]
        from kubernetes_asyncio import config as aconfig

        async def make() -> object:
            api_client = await aconfig.new_client_from_config(config_file=kubeconfig)
            core = aclient.CoreV1Api(api_client)

            async def get() -> object:
                return await core.read_namespaced_config_map("bench", namespace)

            return get, api_client.close

        seq, conc = timed_async(make)
    elif kind == "lightkube":
        from lightkube import Client, KubeConfig  # type: ignore[import-not-found]
        from lightkube.resources.core_v1 import ConfigMap  # type: ignore[import-not-found]

        lk = Client(KubeConfig.from_file(kubeconfig))

        def get() -> object:
            return lk.get(ConfigMap, "bench", namespace=namespace)

        seq, conc = timed(get, False), timed(get, True)
    else:
        raise ValueError(kind)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"sequential": seq, "concurrent": conc, "rss_mib": rss}


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        print(json.dumps(_child(sys.argv[2], sys.argv[3], sys.argv[4])))
        return 0
    from tests.cluster.harness import Cluster, ensure_binaries

    ensure_binaries()
    with (
        tempfile.TemporaryDirectory() as state,
        Cluster(state_dir=Path(state), with_kubelet=False) as cluster,
    ):
        from kubernetes import client

        api = cluster.api_client()
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "bench"}})
        core.create_namespaced_config_map(
            "bench", {"metadata": {"name": "bench"}, "data": {"k": "v" * 1024}}
        )
        results: dict[str, dict[str, float] | str] = {}
        for label, kind in CANDIDATES.items():
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.kube_client", "--child", kind,
                 str(cluster.kubeconfig), "bench"],
                capture_output=True, text=True, cwd=ROOT, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                last = (out.stderr.strip().splitlines() or ["failed"])[-1]
                results[label] = "not installed" if "ModuleNotFound" in last else last[:80]
            else:
                results[label] = json.loads(out.stdout)
    base = results["kubernetes (generated client, baseline)"]
    assert isinstance(base, dict)
    print(f"{CALLS} GETs of one ConfigMap; concurrent = {CONCURRENCY} at a time")
    print(f"{'client':42} {'seq/s':>7} {'x':>5} {'conc/s':>7} {'x':>5} {'RSS MiB':>8} {'x':>5}")
    for label, r in results.items():
        if isinstance(r, str):
            print(f"{label:42} {r}")
            continue
        print(
            f"{label:42} {r['sequential']:7.0f} {r['sequential'] / base['sequential']:5.2f} "
            f"{r['concurrent']:7.0f} {r['concurrent'] / base['concurrent']:5.2f} "
            f"{r['rss_mib']:8.1f} {r['rss_mib'] / base['rss_mib']:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
