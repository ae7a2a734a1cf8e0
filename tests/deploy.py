"""``make deploy``: install the chart onto the control plane of ``make cluster-up``.

The operator and the REST API's server run as the chart's Deployments (pods of the process
kubelet); ``VOYAGE_*`` settings from the environment go to the chart's ``voyage`` values (and so
to every worker), ``VOYAGE_API_KEY``, when set, into the default Secret of the ``default``
namespace. Waits until the operator answers its liveness probe and the APIService is Available,
then prints how to call the REST API with curl.
"""

from __future__ import annotations

import base64
import os
import sys
import time
from typing import Any

from embedding_operator.api import names
from tests.cluster.harness import DEFAULT_STATE_DIR, Cluster, free_port
from tests.e2e.rest import chart_values, healthy, helm_install, wait_available
from tests.tools.fetch import ensure_tools

RELEASE = "embedding-operator"
NAMESPACE = "embedding-operator-system"
SETTINGS = {
    "VOYAGE_BASE_URL": "baseURL",
    "VOYAGE_TIMEOUT_SECONDS": "timeoutSeconds",
    "VOYAGE_MAX_ATTEMPTS": "maxAttempts",
    "EMBEDDING_OPERATOR_RPM": "requestsPerMinute",
    "EMBEDDING_OPERATOR_TPM": "tokensPerMinute",
    "EMBEDDING_OPERATOR_CONCURRENCY": "concurrency",
}


def voyage_values(env: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variable, key in SETTINGS.items():
        value = env.get(variable, "").strip()
        if value:
            out[key] = value if key == "baseURL" else int(value)
    return out


def main() -> int:
    cluster = Cluster(state_dir=DEFAULT_STATE_DIR)
    if not cluster.pids_file.exists() or not any(r.is_ours() for r in cluster.load_records()):
        print("error: no control plane running; run `make cluster-up` first", file=sys.stderr)
        return 1
    helm = ensure_tools()["helm"]
    liveness = free_port()
    values = chart_values(
        os.environ.get("VOYAGE_BASE_URL", ""),
        liveness,
        free_port(),
        voyage=voyage_values(dict(os.environ)),
    )
    print(f"==> helm upgrade --install {RELEASE} charts/embedding-operator -n {NAMESPACE}")
    helm_install(helm, cluster.kubeconfig, RELEASE, NAMESPACE, values)
    api = cluster.api_client()
    key = os.environ.get("VOYAGE_API_KEY", "").strip()
    if key:
        _secret(api, key)
        print(f"==> Secret default/{names.DEFAULT_API_KEY_SECRET} holds VOYAGE_API_KEY")
    deadline = time.monotonic() + 120
    while not healthy(liveness):
        if time.monotonic() > deadline:
            print("error: the operator pod did not become healthy", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print("==> the operator is running")
    wait_available(api, 120)
    print("==> the REST API is Available (APIService v1alpha1.api.embedding-operator.dev)")
    print(CURL.format(kubeconfig=cluster.kubeconfig))
    return 0


def _secret(api: Any, key: str) -> None:
    from kubernetes import client

    body = {
        "metadata": {"name": names.DEFAULT_API_KEY_SECRET},
        "data": {names.DEFAULT_API_KEY_SECRET_KEY: base64.b64encode(key.encode()).decode()},
    }
    core: Any = client.CoreV1Api(api)
    try:
        core.create_namespaced_secret("default", body)
    except client.ApiException as e:
        if e.status != 409:
            raise
        core.replace_namespaced_secret(names.DEFAULT_API_KEY_SECRET, "default", body)


CURL = """
Try it (README.md, "The REST API"):
  export KUBECONFIG={kubeconfig}
  kubectl create serviceaccount alice
  kubectl create rolebinding alice-edit --clusterrole=edit --serviceaccount=default:alice
  TOKEN=$(kubectl create token alice)
  kubectl config view --raw -o jsonpath='{{.clusters[0].cluster.certificate-authority-data}}' \\
    | base64 -d > ca.crt
  SERVER=$(kubectl config view -o jsonpath='{{.clusters[0].cluster.server}}')
  BASE=$SERVER/apis/api.embedding-operator.dev/v1alpha1/namespaces/default/deployment-embeddings
  JOB='{{"name":"my-embedding-job","inputs":["Hello world","How are you?"],"model":"voyage-3.5"}}'
  curl --cacert ca.crt -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
    -d "$JOB" $BASE/
  curl --cacert ca.crt -H "Authorization: Bearer $TOKEN" -X POST $BASE/run/my-embedding-job
  curl --cacert ca.crt -H "Authorization: Bearer $TOKEN" $BASE/name/my-embedding-job
"""


if __name__ == "__main__":
    sys.exit(main())
