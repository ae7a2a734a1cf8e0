"""``make demo``: the main job end to end on the embedded control plane.

Starts etcd, kube-apiserver, kube-controller-manager and the process kubelet (tests/cluster),
installs the CRD and its admission policy, starts the operator, applies examples/minimal.yaml
(which carries the run annotation), waits for the run to finish and prints the status. With
VOYAGE_API_KEY set the worker calls Voyage; without it, the project's Voyage stand-in answers.
Everything started here is stopped at the end.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from embedding_operator.api import names
from embedding_operator.api.types import Result
from embedding_operator.storage import result_array
from tests.cluster.harness import Cluster, ensure_binaries
from tests.e2e.stack import (
    OperatorProcess,
    apply_manifests,
    install_chart_rbac,
    wait_established,
)
from tests.tools.fetch import ensure_tools
from tests.voyage_standin import StandIn, StandInConfig

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".cache" / "demo"
EXAMPLE = ROOT / "examples" / "minimal.yaml"


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def main() -> int:
    key = os.environ.get("VOYAGE_API_KEY", "").strip()
    standin: StandIn | None = None
    if key:
        say("VOYAGE_API_KEY is set: the worker will call Voyage's API")
    else:
        say(
            "VOYAGE_API_KEY is not set: using the project's Voyage stand-in on 127.0.0.1 "
            "(same wire format, deterministic vectors; no call leaves this machine)"
        )
        key = "demo-key-not-a-real-one"
        standin = StandIn(StandInConfig(api_key=key)).start()

    say("building the control plane (first time: a few minutes; then from the Go caches)")
    ensure_binaries()
    t0 = time.monotonic()
    cluster = Cluster(state_dir=STATE).start()
    try:
        say(
            f"control plane up in {time.monotonic() - t0:.1f}s "
            f"(kubectl: export KUBECONFIG={cluster.kubeconfig})"
        )
        api = cluster.api_client()
        apply_manifests(api)
        wait_established(api)
        say("installed crds/ (the DeploymentEmbedding CRD and its admission policy)")
        return _run(cluster, api, key, standin)
    finally:
        cluster.stop()
        if standin is not None:
            standin.stop()
        say("stopped everything the demo started")


def _run(cluster: Cluster, api: Any, key: str, standin: StandIn | None) -> int:
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    custom: Any = client.CustomObjectsApi(api)
    core.create_namespaced_secret(
        "default",
        {
            "metadata": {"name": names.DEFAULT_API_KEY_SECRET},
            "data": {names.DEFAULT_API_KEY_SECRET_KEY: base64.b64encode(key.encode()).decode()},
        },
    )
    env = {"VOYAGE_BASE_URL": standin.base_url} if standin else {}
    # the chart's ServiceAccount, ClusterRoles (the worker's too) and guard: the operator runs
    # with exactly the rights the chart gives it
    kubeconfig = install_chart_rbac(
        api,
        ensure_tools()["helm"],
        cluster.kubeconfig,
        cluster.log_dir / "operator.kubeconfig",
        "image.repository=embedding-operator",
        "image.tag=demo",
        *([f"voyage.baseURL={standin.base_url}"] if standin else []),
    )
    env["EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE"] = "e2e-embedding-operator-worker"
    env["EMBEDDING_OPERATOR_IMAGE"] = "embedding-operator:demo"  # what the guard admits
    operator = OperatorProcess(kubeconfig, cluster.log_dir / "operator.log", env).start()
    try:
        say("operator started (embedding-operator run)")
        obj = yaml.safe_load(EXAMPLE.read_text())
        custom.create_namespaced_custom_object(
            names.GROUP, names.VERSION, "default", names.PLURAL, obj
        )
        name = obj["metadata"]["name"]
        say(f"applied {EXAMPLE.relative_to(ROOT)} ({names.KIND} {name}, with the run annotation)")
        status = _wait(custom, name)
        print()
        print(_table(cluster.kubeconfig))
    finally:
        operator.stop()
    _show(name, status)
    if status.get("phase") != "Completed":
        return 1
    return _rest(cluster, api, standin)


REST_JOB = {
    "name": "my-embedding-job",
    "inputs": ["Hello world", "How are you?"],
    "model": "voyage-3.5",
    "inputType": "document",
}


def _rest(cluster: Cluster, api: Any, standin: StandIn | None) -> int:
    """The same job through the REST API: the chart's operator and API server, a user with the
    cluster's ``edit`` role, and the seed's three calls through kube-apiserver."""
    from tests.cluster.harness import free_port
    from tests.e2e.rest import (
        RestClient,
        bind,
        ca_file,
        chart_values,
        helm_install,
        token_for,
        wait_available,
    )

    print()
    say("now the REST path: helm install of the chart (operator and REST API server as pods)")
    values = chart_values(
        standin.base_url if standin else "",
        free_port(),
        free_port(),
        crds={"install": False},
        admissionPolicy={"install": False},
        operator={"resyncSeconds": 2},
    )
    helm_install(
        ensure_tools()["helm"], cluster.kubeconfig, "demo", "embedding-operator-system", values
    )
    wait_available(api, 120)
    say("APIService v1alpha1.api.embedding-operator.dev is Available")
    token = token_for(api, "default", "demo-user")
    bind(api, "default", "demo-user", "edit")
    rest = RestClient(
        cluster.server, ca_file(cluster.kubeconfig, STATE / "ca.crt"), "default", token
    )
    base = rest.base.removeprefix(cluster.server)
    deadline = time.monotonic() + 30
    while (created := rest.post("/", REST_JOB)).status == 403 and time.monotonic() < deadline:
        time.sleep(0.5)  # the edit role's aggregation settles
    say(
        f"POST {base}/  (as system:serviceaccount:default:demo-user, role edit) -> {created.status}"
    )
    print(json.dumps(created.body, indent=2))
    run = rest.post(f"/run/{REST_JOB['name']}")
    say(f"POST {base}/run/{REST_JOB['name']} -> {run.status}, jobId {run.body.get('jobId')}")
    record: dict[str, Any] = {}
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = rest.get(f"/name/{REST_JOB['name']}").body
        if record.get("status") in ("completed", "failed"):
            break
        time.sleep(0.5)
    say(f"GET {base}/name/{REST_JOB['name']} -> status {record.get('status')}")
    shown = dict(record)
    if shown.get("result"):
        vectors = shown["result"].pop("embeddings", None) or []
        shown["result"]["embeddings"] = [
            f"[{', '.join(f'{x:+.4f}' for x in v[:4])}, ...] ({len(v)} dimensions)" for v in vectors
        ]
    print(json.dumps(shown, indent=2))
    return 0 if record.get("status") == "completed" else 1


def _wait(custom: Any, name: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = None
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = custom.get_namespaced_custom_object(
            names.GROUP, names.VERSION, "default", names.PLURAL, name
        )
        status = obj.get("status") or {}
        if status.get("phase") != seen:
            seen = status.get("phase")
            say(f"phase: {seen}  ({status.get('message', '')})")
        if seen in ("Completed", "Failed"):
            return status
        time.sleep(0.5)
    say(f"gave up after {timeout:.0f}s")
    return status


def _table(kubeconfig: Path) -> str:
    """What ``kubectl get demb`` prints: the CRD's printer columns, rendered by the apiserver."""
    from embedding_operator.kube import Kube, resource_path

    table = Kube.from_environment("demo", kubeconfig=str(kubeconfig)).request(
        "GET", resource_path("default"), accept="application/json;as=Table;v=v1;g=meta.k8s.io"
    )
    shown = [i for i, c in enumerate(table["columnDefinitions"]) if c["priority"] == 0]
    headers = [table["columnDefinitions"][i]["name"].upper() for i in shown]
    rows = [[str(r["cells"][i]) for i in shown] for r in table["rows"]]
    widths = [max(len(x) for x in col) for col in zip(headers, *rows, strict=False)]
    return "\n".join(
        "   ".join(x.ljust(w) for x, w in zip(line, widths, strict=False))
        for line in [headers, *rows]
    )


def _show(name: str, status: dict[str, Any]) -> None:
    result = dict(status.get("result") or {})
    # the vectors held in the status (base64), decoded; chunked results are not shown
    vectors = result_array(Result.model_validate(result)) if result.get("inline") else []
    result.pop("inline", None)
    print()
    print(f"{names.KIND} {name}: {status.get('phase')}: {status.get('message')}")
    summary = {k: status.get(k) for k in ("jobName", "startTime", "completionTime", "stats")}
    print(json.dumps({**summary, "result": result}, indent=2))
    for i, vector in enumerate(vectors):
        head = ", ".join(f"{x:+.4f}" for x in vector[:4])
        print(f"  embeddings[{i}]: [{head}, ...] ({len(vector)} dimensions)")


if __name__ == "__main__":
    sys.exit(main())
