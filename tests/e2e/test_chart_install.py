"""``helm install`` on the real control plane: the chart's Deployment runs the operator as a pod
(the process kubelet runs the project's image as a local process, with the chart's
ServiceAccount token), and that operator carries a run to Completed."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest

from embedding_operator import __version__
from tests.cluster.harness import free_port
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.rest import healthy
from tests.e2e.stack import CHART, OperatorProcess
from tests.e2e.test_operator import create, manifest, wait_phase
from tests.tools.fetch import ensure_tools
from tests.voyage_standin import StandIn

pytestmark = pytest.mark.cluster


def test_helm_install_runs_the_operator_as_a_deployment(
    cluster: ClusterHandle,
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    operator: OperatorProcess,
) -> None:
    helm = [str(ensure_tools()["helm"]), "--kubeconfig", str(cluster.kubeconfig)]
    release_ns = f"helm-{uuid.uuid4().hex[:6]}"
    liveness = free_port()
    operator.stop()  # one operator at a time
    try:
        subprocess.run(
            [
                *helm,
                "install",
                "helmtest",
                str(CHART),
                "--namespace",
                release_ns,
                "--create-namespace",
                "--set",
                "crds.install=false",
                "--set",
                "admissionPolicy.install=false",
                "--set",
                f"voyage.baseURL={voyage.base_url}",
                "--set",
                f"livenessPort={liveness}",
                "--set",
                f"metrics.port={free_port()}",
                "--set",
                "operator.resyncSeconds=2",
                "--set",
                "apiServer.enabled=false",  # tests/e2e/test_restapi.py installs it
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        wait_for(lambda: healthy(liveness), 60, what="the chart's operator pod healthy")
        [pod] = apis.CoreV1Api(api).list_namespaced_pod(release_ns).items
        assert pod.spec.service_account_name == "helmtest-embedding-operator"
        assert pod.status.phase == "Running"

        create(api, namespace, manifest("via-helm", ["installed with helm"]))
        done = wait_phase(api, namespace, "via-helm", "Completed", "Failed", timeout=90)
        assert done["status"]["phase"] == "Completed", done["status"].get("message")
        [job] = apis.BatchV1Api(api).list_namespaced_job(namespace).items
        [binding] = apis.RbacAuthorizationV1Api(api).list_namespaced_role_binding(namespace).items
        assert binding.role_ref.name == "helmtest-embedding-operator-worker"
        assert binding.metadata.owner_references[0].name == binding.role_ref.name
        image = job.spec.template.spec.containers[0].image
        assert image == f"ghcr.io/embedding-operator/embedding-operator:{__version__}"
    finally:
        subprocess.run(
            [*helm, "uninstall", "helmtest", "--namespace", release_ns, "--wait"],
            check=False,
            capture_output=True,
        )
        apis.CoreV1Api(api).delete_namespace(release_ns)
        operator.start()
        operator.wait_ready()
    wait_for(lambda: not healthy(liveness), 60, what="the chart's operator pod stopped")
    # the worker's ServiceAccount and RoleBinding, owned by the uninstalled worker ClusterRole,
    # are garbage-collected: nothing of the release stays behind in users' namespaces
    core, rbac = apis.CoreV1Api(api), apis.RbacAuthorizationV1Api(api)
    worker = "embedding-operator-worker"
    wait_for(
        lambda: (
            worker
            not in {a.metadata.name for a in core.list_namespaced_service_account(namespace).items}
            and not rbac.list_namespaced_role_binding(namespace).items
        ),
        60,
        what="the worker's ServiceAccount and RoleBinding removed",
    )
