"""What GitOps tools see: kstatus (``status.Compute`` of sigs.k8s.io/cli-utils, Flux's health
verdict, built from tests/kstatus) and the chart's Argo CD health check (Lua, run with lupa) judge
real objects of the test control plane in every phase; ``kubectl wait --for=condition=Ready``
returns on a finished run."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from embedding_operator.api import names
from tests.conftest import ClusterHandle
from tests.e2e import apis
from tests.e2e.stack import OperatorProcess
from tests.e2e.test_operator import annotate, create, get, manifest, patch, wait_phase
from tests.health import argocd, kstatus
from tests.tools.fetch import ensure_tools
from tests.voyage_standin import StandIn

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


SECRET_INPUT = "gitops-input-text-5b1c"
"""Spec contents: no log line may carry them."""
STAMPED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ ")


def _logs_are_operable(
    cluster: ClusterHandle, api: Any, namespace: str, operator: OperatorProcess
) -> None:
    """Operator and worker lines about the run carry a timestamp and the object, never the spec."""
    about = f"[{namespace}/done]"
    operator_lines = [line for line in operator.log().splitlines() if about in line]
    assert any("created Job" in line for line in operator_lines), operator_lines
    assert operator_lines and all(STAMPED.match(line) for line in operator_lines)
    [pod] = (
        apis.CoreV1Api(api)
        .list_namespaced_pod(namespace, label_selector=f"{names.OWNER_LABEL}=done")
        .items
    )
    worker_lines = cluster.pod_log(namespace, pod.metadata.name, "worker").splitlines()
    assert worker_lines and all(STAMPED.match(line) and about in line for line in worker_lines)
    assert SECRET_INPUT not in operator.log()
    assert SECRET_INPUT not in "\n".join(worker_lines)


def test_kstatus_and_argocd_read_every_phase_and_kubectl_waits_for_ready(
    cluster: ClusterHandle,
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    operator: OperatorProcess,
) -> None:
    create(api, namespace, manifest("waiting", ["not yet"], run=None))
    create(api, namespace, manifest("done", [SECRET_INPUT]))
    objects = {
        "pending": wait_phase(api, namespace, "waiting", "Pending"),
        "completed": wait_phase(api, namespace, "done", "Completed", "Failed"),
    }
    assert objects["completed"]["status"]["phase"] == "Completed"
    _logs_are_operable(cluster, api, namespace, operator)

    kubectl = [str(ensure_tools()["kubectl"]), "--kubeconfig", str(cluster.kubeconfig)]
    waited = subprocess.run(
        [
            *kubectl,
            "wait",
            "-n",
            namespace,
            "--for=condition=Ready",
            "--timeout=60s",
            f"{names.PLURAL}/done",
            f"{names.PLURAL}/waiting",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert waited.returncode == 0, waited.stderr
    assert "condition met" in waited.stdout

    voyage.config.latency = 30.0  # keeps the run Running
    create(api, namespace, manifest("busy", ["slow input"]))
    objects["running"] = wait_phase(api, namespace, "busy", "Running")
    annotate(api, namespace, "busy", names.CANCEL_ANNOTATION, "stop")
    objects["failed"] = wait_phase(api, namespace, "busy", "Failed")

    operator.stop()  # a spec change the operator has not seen yet
    try:
        patch(api, namespace, "done", {"spec": {"inputs": ["changed"]}})
        objects["lagging"] = get(api, namespace, "done")
    finally:
        operator.start()
        operator.wait_ready()
    assert objects["lagging"]["metadata"]["generation"] == 2
    assert objects["lagging"]["status"]["observedGeneration"] == 1

    expected = {
        "pending": ("Current", "Healthy"),
        "completed": ("Current", "Healthy"),
        "running": ("InProgress", "Progressing"),
        "failed": ("Failed", "Degraded"),
        "lagging": ("InProgress", "Progressing"),
    }
    verdicts = dict(zip(objects, kstatus(list(objects.values())), strict=True))
    got = {k: (verdicts[k], argocd(obj)) for k, obj in objects.items()}
    assert got == expected
