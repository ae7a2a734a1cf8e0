"""The real-node tier: pods run by a real kubelet in containers (containerd, runc) from the
image built from the Dockerfile, on the CNI bridge, with the restricted security context.
A small deliberate set; the process kubelet of tests/cluster runs the many others."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import wait_for
from tests.e2e import apis

pytestmark = [pytest.mark.node, pytest.mark.cluster]

RESTRICTED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

PROBE = """
import json, os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
host = os.environ["KUBERNETES_SERVICE_HOST"]
ns = open(f"{sa}/namespace").read()
req = urllib.request.Request(
    f"https://{host}/api/v1/namespaces/{ns}/secrets",
    headers={"Authorization": "Bearer " + open(f"{sa}/token").read()},
)
try:
    urllib.request.urlopen(req, context=ctx)
    answer = 200, ""
except urllib.error.HTTPError as exc:
    answer = exc.code, json.load(exc)["message"]
try:
    open("/opt/venv/probe", "w")
    rofs = 0
except OSError as exc:
    rofs = exc.errno
print(json.dumps({"uid": os.getuid(), "host": host, "api": answer, "rofs": rofs}))
"""


def pod_log(real_node: Any, namespace: str, pod: str, container: str) -> str:
    """The container's output from the kubelet's log files (CRI format: time stream tag line)."""
    [log_dir] = (real_node.state_dir / "pod-logs").glob(f"{namespace}_{pod}_*")
    lines = (log_dir / container / "0.log").read_text().splitlines()
    return "\n".join(line.split(" ", 3)[3] for line in lines)


def test_pod_runs_as_a_restricted_container_and_reaches_the_apiserver(
    real_node: Any, node_api: Any, node_namespace: str
) -> None:
    core = apis.CoreV1Api(node_api)
    core.create_namespaced_pod(
        node_namespace,
        {
            "metadata": {"name": "probe"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "probe",
                        "image": real_node.image,
                        "imagePullPolicy": "Never",
                        "command": ["python", "-c", PROBE],
                        "securityContext": RESTRICTED,
                    }
                ],
            },
        },
    )

    def finished() -> Any:
        pod = core.read_namespaced_pod("probe", node_namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    pod = wait_for(finished, 120, what="the probe pod finished")
    assert pod.status.phase == "Succeeded", pod.status
    [status] = pod.status.container_statuses
    assert status.container_id.startswith("containerd://")
    assert pod.status.pod_ip.startswith("10.244.0.")
    out = json.loads(pod_log(real_node, node_namespace, "probe", "probe"))
    assert out["uid"] == 65532  # the image's user
    assert out["rofs"] == 30  # EROFS
    assert out["host"] == "10.0.0.1"  # the `kubernetes` Service, set by the kubelet
    # Through the cluster IP to the apiserver, authenticated by the projected token as the
    # namespace's default ServiceAccount, which RBAC gives no right to Secrets.
    code, message = out["api"]
    assert code == 403
    assert f"system:serviceaccount:{node_namespace}:default" in message
