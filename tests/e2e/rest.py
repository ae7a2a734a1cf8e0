"""The chart with its REST API on the test control plane, and clients of that API: shared by the
e2e tests, ``make deploy``, ``make demo`` and the benchmark.

The REST API's pod asks the process kubelet for a network namespace of its own
(tests/cluster/netns.py), so its EndpointSlice carries a routable address and kube-apiserver's
aggregator reaches it exactly as on a real cluster.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.cluster.netns import ANNOTATION, NAMESPACE_VALUE
from tests.e2e.stack import CHART

APISERVICE = "v1alpha1.api.embedding-operator.dev"
GROUP_VERSION = "api.embedding-operator.dev/v1alpha1"


def chart_values(
    voyage_base_url: str, liveness_port: int, metrics_port: int, **extra: Any
) -> dict[str, Any]:
    """Values for the test control plane: ports free on the host (the operator pod shares the
    host's network), the REST API's pod in a network namespace of its own."""
    values: dict[str, Any] = {
        "voyage": {"baseURL": voyage_base_url},
        "livenessPort": liveness_port,
        "metrics": {"port": metrics_port},
        "apiServer": {"podAnnotations": {ANNOTATION: NAMESPACE_VALUE}},
    }
    for key, value in extra.items():
        values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    return values


def helm_install(
    helm: Path, kubeconfig: Path, release: str, namespace: str, values: dict[str, Any]
) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(values, f)
        f.flush()
        done = subprocess.run(
            [
                str(helm),
                "--kubeconfig",
                str(kubeconfig),
                "upgrade",
                "--install",
                release,
                str(CHART),
                "--namespace",
                namespace,
                "--create-namespace",
                "-f",
                f.name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"helm install {release} failed: {done.stderr.strip()}")


def helm_uninstall(helm: Path, kubeconfig: Path, release: str, namespace: str) -> None:
    subprocess.run(
        [
            str(helm),
            "--kubeconfig",
            str(kubeconfig),
            "uninstall",
            release,
            "-n",
            namespace,
            "--wait",
        ],
        check=False,
        capture_output=True,
    )


def apiservice_available(api: Any) -> bool:
    from kubernetes import client

    try:
        obj = client.ApiregistrationV1Api(api).read_api_service(APISERVICE)
    except client.ApiException as e:
        if e.status == 404:
            return False
        raise
    return any(c.type == "Available" and c.status == "True" for c in (obj.status.conditions or []))


def wait_available(api: Any, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if apiservice_available(api):
            return
        time.sleep(0.5)
    raise TimeoutError(f"APIService {APISERVICE} did not become Available in {timeout}s")


def ca_file(kubeconfig: Path, out: Path) -> Path:
    """The cluster's CA (from the kubeconfig), for clients that verify kube-apiserver."""
    config = yaml.safe_load(kubeconfig.read_text())
    out.write_bytes(
        base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
    )
    return out


def bind(api: Any, namespace: str, account: str, role: str, kind: str = "ClusterRole") -> None:
    """A RoleBinding of ``role`` to the ServiceAccount ``account`` of ``namespace``."""
    from kubernetes import client

    rbac: Any = client.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{account}-{role}"[:63]},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}],
        },
    )


def healthy(port: int) -> bool:
    """Whether the operator answers its liveness probe on the host's ``port``."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False


def token_for(api: Any, namespace: str, account: str) -> str:
    """A token of a ServiceAccount (created if needed): a user kube-apiserver authenticates."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    review = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(review.status.token)


@dataclass
class Response:
    status: int
    body: Any

    @property
    def message(self) -> str:
        return str(self.body.get("message", "")) if isinstance(self.body, dict) else ""


class RestClient:
    """The seed's client, pointed at kube-apiserver: its base URL plus a bearer token."""

    def __init__(self, server: str, ca: Path, namespace: str, token: str | None) -> None:
        self.server = server
        self.base = f"{server}/apis/{GROUP_VERSION}/namespaces/{namespace}/deployment-embeddings"
        self.session = requests.Session()
        self.session.trust_env = False  # REQUESTS_CA_BUNDLE would override the cluster's CA
        self.session.verify = str(ca)
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method: str, path: str = "/", body: Any = None, **params: Any) -> Response:
        data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
        response = self.session.request(
            method,
            self.base + path,
            data=data,
            params=params or None,
            headers={"Content-Type": "application/json"} if data is not None else None,
            timeout=60,
        )
        try:
            payload = response.json()
        except ValueError:
            payload = response.text
        return Response(response.status_code, payload)

    def get(self, path: str = "/", **params: Any) -> Response:
        return self.call("GET", path, **params)

    def post(self, path: str = "/", body: Any = None) -> Response:
        return self.call("POST", path, body)

    def put(self, path: str, body: Any) -> Response:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Response:
        return self.call("DELETE", path)
