"""The chart installed for real: ``helm install`` with the built image onto the real node. The
operator runs as a container under its ServiceAccount token; each run's worker Job pod runs in
a container from the same image, read-only root filesystem and the restricted security context
the operator sets, and reaches the Voyage stand-in through the node's gateway. Then the failure
paths that depend on the kubelet."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from embedding_operator.api.types import Result
from embedding_operator.storage import result_array
from tests.conftest import wait_for
from tests.e2e import apis
from tests.e2e.stack import CHART
from tests.e2e.test_operator import create, events, manifest, reason, wait_phase
from tests.node.conftest import key_secret
from tests.tools.fetch import ensure_tools
from tests.voyage_standin import StandIn, expected_embedding

pytestmark = [pytest.mark.node, pytest.mark.cluster]

RELEASE_NS = "embedding-operator-system"


@pytest.fixture(scope="module")
def chart(real_node: Any, node_standin: StandIn) -> Iterator[Any]:
    """The chart, installed once for the module, its operator pod Ready."""
    repository, tag = real_node.image.rsplit(":", 1)
    helm = [str(ensure_tools()["helm"]), "--kubeconfig", str(real_node.kubeconfig)]
    port = node_standin.httpd.server_address[1]
    subprocess.run(
        [
            *helm,
            "install",
            "eo",
            str(CHART),
            "--namespace",
            RELEASE_NS,
            "--create-namespace",
            "--set",
            f"image.repository={repository}",
            "--set",
            f"image.tag={tag}",
            "--set",
            f"voyage.baseURL={real_node.bridge_url(port)}/v1",
            "--set",
            "voyage.maxAttempts=2",
            "--set",
            "operator.resyncSeconds=2",
            "--set",
            "operator.podStartTimeoutSeconds=20",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    api = real_node.api_client()
    core = apis.CoreV1Api(api)

    def ready() -> Any:
        pods = core.list_namespaced_pod(RELEASE_NS).items
        return pods and all(
            any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in pods
        )

    wait_for(ready, 180, what="the chart's operator pod Ready (its probes pass)")
    try:
        yield api
    finally:
        api.close()


def _worker_pods(api: Any, namespace: str) -> list[Any]:
    return list(apis.CoreV1Api(api).list_namespaced_pod(namespace).items)


def test_helm_install_runs_a_run_to_completed_in_containers(
    real_node: Any, chart: Any, node_namespace: str, node_standin: StandIn
) -> None:
    core = apis.CoreV1Api(chart)
    pods = core.list_namespaced_pod(RELEASE_NS).items  # the operator's, the REST API server's
    [operator] = [p for p in pods if p.spec.containers[0].name == "operator"]
    assert operator.spec.service_account_name == "eo-embedding-operator"
    assert operator.spec.containers[0].image == real_node.image
    assert operator.status.container_statuses[0].container_id.startswith("containerd://")
    assert operator.status.container_statuses[0].restart_count == 0

    key_secret(chart, node_namespace)
    texts = ["a real kubelet ran this", "in a container"]
    create(chart, node_namespace, manifest("on-node", texts))
    done = wait_phase(chart, node_namespace, "on-node", "Completed", "Failed", timeout=180)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    got = result_array(Result.model_validate(done["status"]["result"]))
    np.testing.assert_array_equal(got[0], expected_embedding(texts[0], "voyage-3.5", 1024))

    [pod] = _worker_pods(chart, node_namespace)
    [container] = pod.spec.containers
    assert container.image == real_node.image
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.allow_privilege_escalation is False
    assert container.security_context.capabilities.drop == ["ALL"]
    assert pod.status.container_statuses[0].container_id.startswith("containerd://")
    assert pod.status.pod_ip.startswith("10.244.0.")
    # The worker records its result, then exits 0: the pod ends Succeeded.
    wait_for(
        lambda: _worker_pods(chart, node_namespace)[0].status.phase == "Succeeded",
        60,
        what="the worker pod Succeeded",
    )


def test_missing_secret_fails_the_run_with_secret_not_found(
    chart: Any, node_namespace: str
) -> None:
    create(chart, node_namespace, manifest("nokey", ["x"]))
    failed = wait_phase(chart, node_namespace, "nokey", "Failed", timeout=120)
    assert reason(failed) == "SecretNotFound"
    assert "voyage-api-key" in failed["status"]["message"]
    # The real kubelet's own words for it, on the worker pod.
    said = [
        e.message for e in events(chart, node_namespace, "nokey") if e.reason == "SecretNotFound"
    ]
    assert said, "no SecretNotFound Event"


def test_worker_container_killed_fails_the_run_with_a_reason(
    real_node: Any, chart: Any, node_namespace: str, node_standin: StandIn
) -> None:
    key_secret(chart, node_namespace)
    node_standin.config.latency = 60.0
    try:
        create(chart, node_namespace, manifest("killed", ["x"], job={"backoffLimit": 0}))
        wait_phase(chart, node_namespace, "killed", "Running", timeout=120)

        def running_container() -> str | None:
            for pod in _worker_pods(chart, node_namespace):
                for status in pod.status.container_statuses or []:
                    if status.state.running and status.container_id:
                        return str(status.container_id).removeprefix("containerd://")
            return None

        container = wait_for(running_container, 120, what="the worker container running")
        real_node.ctr("tasks", "kill", "--signal", "SIGKILL", container)
        failed = wait_phase(chart, node_namespace, "killed", "Failed", timeout=120)
        assert reason(failed) == "BackoffLimitExceeded"
        [pod] = _worker_pods(chart, node_namespace)
        assert pod.status.container_statuses[0].state.terminated.exit_code == 137
    finally:
        node_standin.config.latency = 0.0


def test_run_past_its_deadline_fails(
    chart: Any, node_namespace: str, node_standin: StandIn
) -> None:
    key_secret(chart, node_namespace)
    node_standin.config.latency = 60.0
    try:
        create(chart, node_namespace, manifest("slow", ["x"], job={"activeDeadlineSeconds": 30}))
        failed = wait_phase(chart, node_namespace, "slow", "Failed", timeout=150)
        assert reason(failed) == "DeadlineExceeded"
    finally:
        node_standin.config.latency = 0.0
