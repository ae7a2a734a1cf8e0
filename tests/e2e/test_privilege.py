"""The threat model of docs/operator.md on the real control plane: what a compromised operator
(its ServiceAccount's token, under the chart's RBAC and operator guard) and a compromised worker
(the worker ServiceAccount's token) can and cannot do; and that real runs in two namespaces still
complete (the user row is tests/e2e/test_user_roles.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from embedding_operator.controller.objects import build_job
from embedding_operator.controller.settings import Settings
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.stack import OperatorProcess
from tests.e2e.test_operator import G, P, V, create, get, manifest, wait_phase
from tests.guard_cases import GUARD, escalations
from tests.voyage_standin import StandIn

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


NO_PARAMS = "no params found for policy binding"
"""The Secret guard's refusal where no DeploymentEmbedding (yet) stands in the namespace: the
first attempt for a new resource can meet it before the policy's params informer has seen it."""


def client_for(kubeconfig: Path, token: str | None = None) -> Any:
    """An ApiClient from ``kubeconfig``, optionally as the bearer of ``token``."""
    if token is not None:
        data = yaml.safe_load(kubeconfig.read_text())
        data["users"] = [{"name": "who", "user": {"token": token}}]
        for ctx in data["contexts"]:
            ctx["context"]["user"] = "who"
        kubeconfig = kubeconfig.with_name(f"token-{abs(hash(token))}.kubeconfig")
        kubeconfig.write_text(yaml.safe_dump(data))
    return config.new_client_from_config(config_file=str(kubeconfig))


def account_token(api: Any, namespace: str, name: str) -> str:
    """A token of ServiceAccount ``namespace/name`` (created when absent)."""
    core = apis.CoreV1Api(api)
    try:
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    except client.ApiException as e:
        if e.status != 409:
            raise
    token: str = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    return token


def denied(call: Callable[[], Any]) -> str:
    """The body of the refusal ``call`` meets (the test fails if it is admitted)."""
    with pytest.raises(client.ApiException) as refused:
        call()
    assert refused.value.status in (403, 422), refused.value.body
    return str(refused.value.body)


@pytest.fixture
def as_operator(cluster: ClusterHandle, operator: OperatorProcess) -> Iterator[Any]:
    api = client_for(operator.kubeconfig)
    yield api
    api.close()


def _job(api: Any, namespace: str, operator: OperatorProcess) -> dict[str, Any]:
    """A worker Job exactly as the operator builds it, for a resource of ``namespace``."""
    body = create(api, namespace, manifest("target", ["x"], run=None))
    return build_job(body, "attempt", 1, Settings.from_env(operator.env))


def test_a_compromised_operator_cannot_escalate(
    api: Any, namespace: str, as_operator: Any, operator: OperatorProcess
) -> None:
    batch = apis.BatchV1Api(as_operator)
    job = _job(api, namespace, operator)
    # the control: the operator's own Job is admitted (dry run: nothing is created)
    batch.create_namespaced_job(namespace, job, dry_run="All")

    for attempt, (bad, message) in escalations(job).items():
        body = denied(lambda bad=bad: batch.create_namespaced_job(namespace, bad, dry_run="All"))
        assert GUARD in body and message in body, (attempt, body)

    system_job = copy.deepcopy(job)
    system_job["metadata"]["namespace"] = "kube-system"
    body = denied(lambda: batch.create_namespaced_job("kube-system", system_job, dry_run="All"))
    # Both guard policies refuse a Job in kube-system; which message the apiserver reports
    # depends on their evaluation order (the Secret policy finds no DeploymentEmbedding there).
    assert "does not serve namespace kube-system" in body or NO_PARAMS in body

    rbac = apis.RbacAuthorizationV1Api(as_operator)
    everyone = [{"kind": "Group", "name": "system:authenticated", "apiGroup": rbac_group}]

    def binding(role: str, subjects: list[dict[str, str]]) -> dict[str, Any]:
        return {
            "metadata": {"name": "grab"},
            "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": role},
            "subjects": subjects,
        }

    worker_role = Settings.from_env(operator.env).worker_cluster_role
    operator_role = worker_role.removesuffix("-worker")
    # the operator's own role (all rights it holds, so RBAC's escalation check lets it pass)
    body = denied(
        lambda: rbac.create_namespaced_role_binding(
            namespace, binding(operator_role, everyone), dry_run="All"
        )
    )
    assert GUARD in body and "worker ClusterRole to the worker ServiceAccount only" in body
    # the worker role, to everyone
    body = denied(
        lambda: rbac.create_namespaced_role_binding(
            namespace, binding(worker_role, everyone), dry_run="All"
        )
    )
    assert GUARD in body
    # another role: RBAC refuses before the guard is asked (no bind right on it)
    body = denied(
        lambda: rbac.create_namespaced_role_binding(
            namespace, binding("cluster-admin", everyone), dry_run="All"
        )
    )
    assert "forbidden" in body.lower()
    # no roles rights at all, no Secrets, no ConfigMap writes
    rule = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    role = {"metadata": {"name": "grab"}, "rules": [rule]}
    denied(lambda: rbac.create_namespaced_role(namespace, role, dry_run="All"))
    core = apis.CoreV1Api(as_operator)
    denied(lambda: core.list_namespaced_secret(namespace))
    denied(
        lambda: core.read_namespaced_config_map("extension-apiserver-authentication", "kube-system")
    )
    precious = {"metadata": {"name": "precious", "labels": {"app": "x"}}, "data": {"k": "v"}}
    apis.CoreV1Api(api).create_namespaced_config_map(namespace, precious)
    denied(lambda: core.delete_collection_namespaced_config_map(namespace))
    assert apis.CoreV1Api(api).read_namespaced_config_map("precious", namespace)
    # and no Pods at all: only Jobs, whose pods the Job controller creates
    denied(
        lambda: core.create_namespaced_pod(
            namespace,
            {"metadata": {"name": "p"}, "spec": job["spec"]["template"]["spec"]},
            dry_run="All",
        )
    )


rbac_group = "rbac.authorization.k8s.io"


def test_real_runs_in_two_namespaces_complete_under_the_guard(
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    operator: OperatorProcess,
) -> None:
    from tests.e2e.conftest import API_KEY

    other = f"{namespace[:50]}-two"
    core = apis.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": other}})
    try:
        import base64

        key = base64.b64encode(API_KEY.encode()).decode()
        core.create_namespaced_secret(other, {"metadata": {"name": "mine"}, "data": {"token": key}})
        create(api, namespace, manifest("one", ["first namespace"]))
        ref = {"name": "mine", "key": "token"}
        create(api, other, manifest("two", ["second namespace"], apiKeySecretRef=ref))
        for ns, name in ((namespace, "one"), (other, "two")):
            done = wait_phase(api, ns, name, "Completed", "Failed")
            assert done["status"]["phase"] == "Completed", done["status"].get("message")
        worker_role = Settings.from_env(operator.env).worker_cluster_role
        binding = apis.RbacAuthorizationV1Api(api).read_namespaced_role_binding(
            "embedding-operator-worker", other
        )
        [owner] = binding.metadata.owner_references
        assert (owner.kind, owner.name) == ("ClusterRole", worker_role)
        assert binding.role_ref.name == worker_role
    finally:
        core.delete_namespace(other)


def test_a_refused_job_is_reported_not_silent(
    api: Any, voyage: StandIn, operator: OperatorProcess
) -> None:
    """A resource in a namespace the operator does not serve gets no Job, and says why: the
    RunRequest condition and a Warning Event carry the guard's message (retried with backoff,
    since an administrator may widen the served namespaces)."""
    core = apis.CoreV1Api(api)

    def refused() -> dict[str, Any] | None:
        obj = get(api, "kube-public", "refused")
        conditions = (obj.get("status") or {}).get("conditions") or []
        request = next((c for c in conditions if c["type"] == "RunRequest"), None)
        return obj if request and request["reason"] == "JobCreateFailed" else None

    try:
        create(api, "kube-public", manifest("refused", ["x"]))
        obj = wait_for(refused, 60, what="the run request refused")
        [request] = [c for c in obj["status"]["conditions"] if c["type"] == "RunRequest"]
        assert request["status"] == "False"
        assert "does not serve namespace kube-public" in request["message"]
        assert not apis.BatchV1Api(api).list_namespaced_job("kube-public").items
        events = core.list_namespaced_event(
            "kube-public", field_selector="involvedObject.name=refused"
        ).items
        assert any(
            e.reason == "JobCreateFailed"
            and ("does not serve namespace" in e.message or NO_PARAMS in e.message)
            for e in events
        )
    finally:
        apis.CustomObjectsApi(api).delete_namespaced_custom_object(
            G, V, "kube-public", P, "refused"
        )


def test_a_compromised_worker_reaches_only_its_own_namespace_records(
    cluster: ClusterHandle,
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    operator: OperatorProcess,
) -> None:
    create(api, namespace, manifest("mine", ["x"]))
    wait_phase(api, namespace, "mine", "Completed", "Failed")
    worker = Settings.from_env(operator.env).worker_service_account
    token = account_token(api, namespace, worker)
    as_worker = client_for(cluster.kubeconfig, token)
    try:
        objects = apis.CustomObjectsApi(as_worker)
        assert objects.get_namespaced_custom_object(G, V, namespace, P, "mine")
        core = apis.CoreV1Api(as_worker)
        denied(lambda: core.read_namespaced_secret("voyage-api-key", namespace))
        denied(lambda: core.list_namespaced_pod(namespace))
        denied(
            lambda: objects.patch_namespaced_custom_object(
                G, V, namespace, P, "mine", {"spec": {"inputs": ["changed"]}}
            )
        )
        denied(lambda: objects.list_namespaced_custom_object(G, V, "default", P))
        denied(lambda: apis.BatchV1Api(as_worker).list_namespaced_job(namespace))
    finally:
        as_worker.close()


def test_the_guard_leaves_everyone_elses_pods_alone(api: Any, namespace: str) -> None:
    """The guard's Secret check resolves DeploymentEmbeddings as parameters before it looks at
    who asks; it must not refuse ordinary Pods in a namespace that has none (it once did)."""
    pod = {
        "metadata": {"name": "ordinary"},
        "spec": {"containers": [{"name": "c", "image": "embedding-operator:e2e"}]},
    }
    apis.CoreV1Api(api).create_namespaced_pod(namespace, pod, dry_run="All")
