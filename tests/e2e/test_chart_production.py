"""The production chart on the real control plane: values rendered at 16,000,000 run a worker to
Completed, and the documented reinstall story works (the kept CRD moves to a new release)."""

from __future__ import annotations

import subprocess
import uuid
from typing import Any

import pytest
import yaml

from tests.cluster.harness import free_port
from tests.conftest import ClusterHandle
from tests.e2e import apis
from tests.e2e.conftest import GUARD_VALUES
from tests.e2e.stack import CHART, OPERATOR_NAMESPACE, OperatorProcess
from tests.e2e.test_operator import create, jobs, manifest, wait_phase
from tests.tools.fetch import ensure_tools
from tests.unit.test_chart import NUMBERS
from tests.voyage_standin import StandIn

pytestmark = pytest.mark.cluster

CRD = "deploymentembeddings.embedding-operator.dev"


def _rendered_env(*sets: str) -> dict[str, str]:
    """The operator container's environment as the chart renders it for release ``e2e``."""
    args = [str(ensure_tools()["helm"]), "template", "e2e", str(CHART), "-n", OPERATOR_NAMESPACE]
    for s in (*sets, "apiServer.enabled=false"):  # the operator's Deployment only
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    [deployment] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"]}


def test_values_of_sixteen_million_run_a_worker(
    cluster: ClusterHandle,
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    operator: OperatorProcess,
) -> None:
    env = _rendered_env(
        *GUARD_VALUES, f"voyage.baseURL={voyage.base_url}", *(f"{k}=16000000" for k in NUMBERS)
    )
    assert env["EMBEDDING_OPERATOR_TPM"] == "16000000"
    assert env["EMBEDDING_OPERATOR_MAX_RESULT_BYTES"] == "16000000"
    operator.stop()  # one operator at a time: this one runs with exactly the rendered settings
    rendered = OperatorProcess(
        operator.kubeconfig,
        cluster.log_dir / "operator-16m.log",
        env,
        metrics_port=free_port(),
        liveness_port=free_port(),
    ).start()
    try:
        rendered.wait_ready()
        create(api, namespace, manifest("sixteen", ["sixteen million tokens per minute"]))
        done = wait_phase(api, namespace, "sixteen", "Completed", "Failed")
    finally:
        rendered.stop()
        operator.start()
        operator.wait_ready()
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    [job] = jobs(api, namespace, "sixteen")
    worker_env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert worker_env["EMBEDDING_OPERATOR_TPM"] == "16000000"
    assert worker_env["VOYAGE_MAX_ATTEMPTS"] == "16000000"


def test_a_kept_crd_moves_to_a_release_under_another_name(
    cluster: ClusterHandle, api: Any, crd: dict[str, Any]
) -> None:
    """The chart README's story: adopt the CRD (here: the one kubectl applied), uninstall (the CRD
    stays), install under another name (refused until the CRD's ownership moves)."""
    kubectl = [str(ensure_tools()["kubectl"]), "--kubeconfig", str(cluster.kubeconfig)]
    helm = [str(ensure_tools()["helm"]), "--kubeconfig", str(cluster.kubeconfig)]
    release_ns = f"reinstall-{uuid.uuid4().hex[:6]}"
    quiet = [
        "--set",
        "admissionPolicy.install=false",
        "--set",
        "apiServer.enabled=false",  # tests/e2e/test_restapi.py installs it
        "--set",
        "operatorGuard.install=false",
        "--set",
        "metrics.service.enabled=false",
        "--set",
        f"livenessPort={free_port()}",
        "--set",
        f"metrics.port={free_port()}",
        "--set",
        "watchNamespaces={" + release_ns + "}",  # the operators it starts touch nothing else
    ]

    def own(release: str) -> None:
        subprocess.run(
            [*kubectl, "label", "crd", CRD, "app.kubernetes.io/managed-by=Helm", "--overwrite"],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *kubectl,
                "annotate",
                "crd",
                CRD,
                "--overwrite",
                f"meta.helm.sh/release-name={release}",
                f"meta.helm.sh/release-namespace={release_ns}",
            ],
            check=True,
            capture_output=True,
        )

    def install(release: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*helm, "install", release, str(CHART), "-n", release_ns, "--create-namespace", *quiet],
            capture_output=True,
            text=True,
            check=False,
        )

    ext = apis.ApiextensionsV1Api(api)
    try:
        own("first")
        first = install("first")
        assert first.returncode == 0, first.stderr
        subprocess.run(
            [*helm, "uninstall", "first", "-n", release_ns], check=True, capture_output=True
        )
        kept = ext.read_custom_resource_definition(CRD)
        assert kept.metadata.annotations["helm.sh/resource-policy"] == "keep"

        refused = install("second")
        assert refused.returncode != 0
        assert "invalid ownership metadata" in refused.stderr
        own("second")
        second = install("second")
        assert second.returncode == 0, second.stderr
        owned = ext.read_custom_resource_definition(CRD)
        assert owned.metadata.annotations["meta.helm.sh/release-name"] == "second"
        assert owned.spec.names.kind == "DeploymentEmbedding"
    finally:
        for release in ("first", "second"):
            subprocess.run(
                [*helm, "uninstall", release, "-n", release_ns, "--wait"],
                check=False,
                capture_output=True,
            )
        apis.CoreV1Api(api).delete_namespace(release_ns)
    # the CRD outlived both releases
    assert ext.read_custom_resource_definition(CRD).spec.names.plural == "deploymentembeddings"
