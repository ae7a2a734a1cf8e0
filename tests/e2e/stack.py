"""The operator's stack on the test control plane, shared by the e2e tests and ``make demo``:
the admission policy beside the CRD, and the operator itself as a real subprocess
(``embedding-operator run``), so it can be killed and restarted like a pod."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from tests.api_cases import CRD_PATH, POLICY_PATH

BIN = Path(sys.executable).parent


def apply_manifests(api_client: Any, paths: tuple[Path, ...] = (CRD_PATH, POLICY_PATH)) -> None:
    """Create the objects of ``paths`` (the CRD and the admission policy); existing ones stay."""
    from kubernetes import client, utils

    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            try:
                utils.create_from_dict(api_client, doc)
            except utils.FailToCreateError as e:
                if not all(getattr(x, "status", None) == 409 for x in e.api_exceptions):
                    raise
            except client.ApiException as e:
                if e.status != 409:
                    raise


def wait_established(api_client: Any, timeout: float = 30) -> None:
    from kubernetes import client

    ext: Any = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        crd = ext.read_custom_resource_definition(
            yaml.safe_load(CRD_PATH.read_text())["metadata"]["name"]
        )
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return
        time.sleep(0.2)
    raise TimeoutError("the CRD did not become Established")


CHART = Path(__file__).resolve().parents[2] / "charts" / "embedding-operator"
OPERATOR_NAMESPACE = "embedding-operator-system"


CHART_RBAC_KINDS = (
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "Role",  # the leader-election Lease's, in the operator's namespace
    "RoleBinding",
)


def install_chart_rbac(
    api_client: Any, helm: Path, kubeconfig: Path, out: Path, *sets: str
) -> Path:
    """Create the chart's ServiceAccount, ClusterRoles and bindings, and its operator guard
    (rendered by helm with ``sets``), and write a kubeconfig that authenticates as that
    ServiceAccount: the operator then runs with exactly the rights the chart gives it, under the
    chart's admission guard."""
    from kubernetes import client, utils

    rendered = subprocess.run(
        [
            str(helm),
            "template",
            "e2e",
            str(CHART),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--set",
            "crds.install=false",
            "--set",
            "admissionPolicy.install=false",
            *(arg for s in sets for arg in ("--set", s)),
            "--set",
            "apiServer.enabled=false",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    core: Any = client.CoreV1Api(api_client)
    try:
        core.create_namespace({"metadata": {"name": OPERATOR_NAMESPACE}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    account = ""
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] in CHART_RBAC_KINDS and own_namespace(doc):
            try:
                utils.create_from_dict(api_client, doc, namespace=OPERATOR_NAMESPACE)
            except utils.FailToCreateError as e:
                if not all(getattr(x, "status", None) == 409 for x in e.api_exceptions):
                    raise
            if doc["kind"] == "ServiceAccount":
                account = doc["metadata"]["name"]
    token = core.create_namespaced_service_account_token(
        account, OPERATOR_NAMESPACE, {"spec": {"expirationSeconds": 86_400}}
    ).status.token
    config = yaml.safe_load(kubeconfig.read_text())
    config["users"] = [{"name": account, "user": {"token": token}}]
    for context in config["contexts"]:
        context["context"]["user"] = account
    out.write_text(yaml.safe_dump(config))
    out.chmod(0o600)
    return out


def own_namespace(doc: dict[str, Any]) -> bool:
    """Cluster-scoped, or in the operator's namespace (not a ``watchNamespaces`` Role)."""
    return doc["metadata"].get("namespace") in (None, OPERATOR_NAMESPACE)


class OperatorProcess:
    """``embedding-operator run`` against the test cluster, logging to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        env: dict[str, str],
        metrics_port: int = 0,
        liveness_port: int = 0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.env = env
        self.metrics_port = metrics_port
        self.liveness_port = liveness_port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        env.pop("VOYAGE_API_KEY", None)  # the operator never needs the key
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(BIN / "embedding-operator"),
                "run",
                f"--liveness-port={self.liveness_port}",
                f"--metrics-port={self.metrics_port}",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        """Until kopf's liveness endpoint answers: startup and login are done."""
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the operator exited: {self.log()[-2000:]}")
            try:
                url = f"http://127.0.0.1:{self.liveness_port}/healthz"
                with urllib.request.urlopen(url, timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"the operator did not become ready: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as a node failure would: no cleanup runs."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
