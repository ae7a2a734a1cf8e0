"""The real control plane: the CRD's validation, RBAC, Jobs run by the process kubelet,
garbage collection, and a clean stop. No mocks: every request goes to kube-apiserver."""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.api_cases import INVALID, Case, load_examples, valid
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis

pytestmark = pytest.mark.cluster

GROUP, VERSION, PLURAL = "embedding-operator.dev", "v1alpha1", "deploymentembeddings"
IMAGE = "embedding-operator:dev"


# -- helpers -------------------------------------------------------------------------------


def custom(api: Any) -> Any:
    return apis.CustomObjectsApi(api)


def create_de(api: Any, ns: str, obj: dict[str, Any], **kw: Any) -> dict[str, Any]:
    created: dict[str, Any] = custom(api).create_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, obj, **kw
    )
    return created


def refusal(call: Any) -> tuple[int, str]:
    """Run ``call``, expecting the apiserver to refuse it; returns (HTTP status, message)."""
    with pytest.raises(client.ApiException) as info:
        call()
    body = info.value.body
    message = json.loads(body).get("message", body) if body else str(info.value)
    return int(info.value.status), str(message)


def job_body(
    name: str,
    argv: list[str],
    *,
    backoff: int = 0,
    image: str = IMAGE,
    owner: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["ownerReferences"] = [owner]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "worker", "image": image, "command": argv}],
                }
            },
        },
    }


def job_condition(api: Any, ns: str, name: str) -> Any:
    """The Job's Complete or Failed condition once it has one."""
    job = apis.BatchV1Api(api).read_namespaced_job_status(name, ns)
    for cond in job.status.conditions or []:
        if cond.type in ("Complete", "Failed") and cond.status == "True":
            return cond
    return None


def job_pods(api: Any, ns: str, job: str) -> list[Any]:
    pods = apis.CoreV1Api(api).list_namespaced_pod(ns, label_selector=f"job-name={job}")
    return list(pods.items)


def pod_body(name: str, argv: list[str], **spec: Any) -> dict[str, Any]:
    container = {"name": "main", "image": IMAGE, "command": argv}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [container], **spec},
    }


def pod_phase(api: Any, ns: str, name: str, *phases: str) -> Any:
    pod = apis.CoreV1Api(api).read_namespaced_pod(name, ns)
    return pod if pod.status.phase in phases else None


def pid_of(pod: Any) -> int:
    cid = pod.status.container_statuses[0].container_id
    assert cid.startswith("process://"), cid
    return int(cid.removeprefix("process://"))


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- the CRD -------------------------------------------------------------------------------


def test_crd_is_established(api: Any, crd: dict[str, Any]) -> None:
    obj = apis.ApiextensionsV1Api(api).read_custom_resource_definition(crd["metadata"]["name"])
    conds = {c.type: c.status for c in obj.status.conditions}
    assert conds["Established"] == "True"
    assert conds["NamesAccepted"] == "True"
    assert obj.status.accepted_names.kind == "DeploymentEmbedding"


def test_valid_resources_are_accepted(api: Any, crd: dict[str, Any], namespace: str) -> None:
    objs = [valid("small"), *load_examples()]
    for obj in objs:
        created = create_de(api, namespace, obj, field_validation="Strict")
        assert created["metadata"]["generation"] == 1
        assert created["spec"] == obj["spec"]
    listed = custom(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert len(listed["items"]) == len(objs)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_resource_is_refused(
    api: Any, crd: dict[str, Any], namespace: str, case: Case
) -> None:
    status, message = refusal(
        lambda: create_de(api, namespace, case.obj, field_validation="Strict")
    )
    assert status in (400, 422), message
    assert case.field in message


# Each CEL rule of the CRD, recognised by a word of its rule, with an object violating it
# and the message the apiserver must return.
CEL_CASES: list[tuple[str, dict[str, Any], str]] = [
    (
        "self.outputDimension",
        valid(model="voyage-4", outputDimension=768),
        "768 is not supported by voyage-4; use one of 256, 512, 1024, 2048",
    ),
    (
        "self.outputDtype",
        valid(model="voyage-finance-2", outputDtype="int8"),
        "int8 is not supported by voyage-finance-2; use one of float",
    ),
    (
        "self.inputs.map",
        valid(inputs=["y" * 16_000] * 63),
        "inputs hold more than 1000000 characters in all",
    ),
    (
        "self.metadata.name",
        valid(name="my.embedding"),
        "metadata.name must be a lowercase slug of at most 63 characters",
    ),
    *(
        (
            f"self.requests.{name}",
            valid(job={"resources": {"requests": {name: big}, "limits": {name: small}}}),
            f"requests.{name} must not exceed limits.{name}",
        )
        for name, big, small in (("cpu", "1001m", 1), ("memory", "1025Mi", "1Gi"))
    ),
]
TRANSITION_RULE = "oldSelf.status.phase"


def _cel_rules(crd: dict[str, Any]) -> list[dict[str, Any]]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    rules: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            rules.extend(node.get("x-kubernetes-validations", []))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return rules


def test_every_cel_rule_has_a_case(crd: dict[str, Any]) -> None:
    for rule in _cel_rules(crd):
        keys = [k for k, _, _ in CEL_CASES if k in rule["rule"]]
        keys += [TRANSITION_RULE] if TRANSITION_RULE in rule["rule"] else []
        assert len(keys) == 1, f"no single test case for CEL rule {rule['rule']!r}"


@pytest.mark.parametrize("case", CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_cel_rule_refuses_with_its_message(
    api: Any, crd: dict[str, Any], namespace: str, case: tuple[str, dict[str, Any], str]
) -> None:
    _, obj, expected = case
    status, message = refusal(lambda: create_de(api, namespace, obj))
    assert status == 422, message
    assert expected in message


def test_spec_is_frozen_while_running(api: Any, crd: dict[str, Any], namespace: str) -> None:
    co = custom(api)
    create_de(api, namespace, valid("frozen"))
    co.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "frozen", {"status": {"phase": "Running"}}
    )
    change = {"spec": {"inputs": ["something else"]}}
    status, message = refusal(
        lambda: co.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "frozen", change
        )
    )
    assert status == 422
    assert "spec cannot change while the run is Running" in message
    # metadata may still change while Running (e.g. the cancel annotation)
    co.patch_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        "frozen",
        {"metadata": {"annotations": {"embedding-operator.dev/cancel-requested-at": "now"}}},
    )
    co.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "frozen", {"status": {"phase": "Completed"}}
    )
    updated = co.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "frozen", change)
    assert updated["spec"]["inputs"] == ["something else"]
    assert updated["metadata"]["generation"] == 2


def test_status_through_main_resource_is_dropped(
    api: Any, crd: dict[str, Any], namespace: str
) -> None:
    co = custom(api)
    obj = valid("sneaky")
    obj["status"] = {"phase": "Completed", "message": "forged"}
    created = create_de(api, namespace, obj)
    assert "status" not in created
    co.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "sneaky", {"status": {"phase": "Pending"}}
    )
    current = co.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "sneaky")
    forged = copy.deepcopy(current)
    forged["status"] = {"phase": "Failed", "message": "forged"}
    replaced = co.replace_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "sneaky", forged
    )
    assert replaced["status"] == {"phase": "Pending"}
    patched = co.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "sneaky", {"status": {"phase": "Failed"}}
    )
    assert patched["status"] == {"phase": "Pending"}
    assert patched["metadata"]["generation"] == 1


# -- RBAC ----------------------------------------------------------------------------------


def _token_client(cluster: ClusterHandle, api: Any, ns: str, sa: str) -> Any:
    core = apis.CoreV1Api(api)
    token = core.create_namespaced_service_account_token(
        sa, ns, {"spec": {"expirationSeconds": 600}}
    ).status.token
    cfg = copy.copy(api.configuration)
    cfg.cert_file = None
    cfg.key_file = None
    cfg.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(cfg)


def test_service_account_without_rights_is_refused(
    cluster: ClusterHandle, api: Any, namespace: str
) -> None:
    core = apis.CoreV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "nobody"}})
    sa_api = _token_client(cluster, api, namespace, "nobody")
    try:
        sa_core = apis.CoreV1Api(sa_api)
        status, message = refusal(lambda: sa_core.list_namespaced_secret(namespace))
        assert status == 403
        assert f"system:serviceaccount:{namespace}:nobody" in message
        # The identity is genuine: once a Role allows it, the same token is let in.
        rbac = apis.RbacAuthorizationV1Api(api)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "read-secrets"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "nobody-reads-secrets"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-secrets",
                },
                "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
            },
        )

        def allowed() -> bool:
            try:
                sa_core.list_namespaced_secret(namespace)
                return True
            except client.ApiException as exc:
                assert exc.status == 403
                return False

        wait_for(allowed, 10, what="RoleBinding to take effect")
        status, _ = refusal(lambda: sa_core.list_namespaced_config_map(namespace))
        assert status == 403
    finally:
        sa_api.close()


# -- admission policies and the aggregation layer ------------------------------------------


def test_validating_admission_policy_is_enforced(api: Any, namespace: str) -> None:
    adm = apis.AdmissionregistrationV1Api(api)
    name = f"no-forbidden-{namespace}"[:63]
    adm.create_validating_admission_policy(
        {
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "matchConstraints": {
                    "resourceRules": [
                        {
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE"],
                            "resources": ["configmaps"],
                        }
                    ]
                },
                "validations": [
                    {
                        "expression": "!has(object.data) || !('forbidden' in object.data)",
                        "message": "the key 'forbidden' is not allowed",
                    }
                ],
            },
        }
    )
    adm.create_validating_admission_policy_binding(
        {
            "metadata": {"name": name},
            "spec": {
                "policyName": name,
                "validationActions": ["Deny"],
                "matchResources": {
                    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}
                },
            },
        }
    )
    core = apis.CoreV1Api(api)
    try:

        def denied() -> str:
            try:
                core.create_namespaced_config_map(
                    namespace, {"metadata": {"generateName": "x-"}, "data": {"forbidden": "1"}}
                )
                return ""
            except client.ApiException as exc:
                assert exc.status == 422, exc.body
                return str(exc.body)

        # Policies are loaded asynchronously: early creates may still pass.
        message = wait_for(denied, 20, what="the policy to deny")
        assert "the key 'forbidden' is not allowed" in message
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "fine"}, "data": {"allowed": "1"}}
        )
    finally:
        adm.delete_validating_admission_policy_binding(name)
        adm.delete_validating_admission_policy(name)


def test_aggregation_layer_is_configured(api: Any) -> None:
    cm = apis.CoreV1Api(api).read_namespaced_config_map(
        "extension-apiserver-authentication", "kube-system"
    )
    data = cm.data
    assert "BEGIN CERTIFICATE" in data["requestheader-client-ca-file"]
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert json.loads(data["requestheader-username-headers"]) == ["X-Remote-User"]
    assert json.loads(data["requestheader-group-headers"]) == ["X-Remote-Group"]
    assert json.loads(data["requestheader-extra-headers-prefix"]) == ["X-Remote-Extra-"]
    assert "BEGIN CERTIFICATE" in data["client-ca-file"]
    services = apis.ApiregistrationV1Api(api).list_api_service()
    local = {s.metadata.name for s in services.items}
    assert "v1.batch" in local


# -- Jobs through the real Job controller and the process kubelet --------------------------


def test_job_running_the_project_command_completes(
    cluster: ClusterHandle, api: Any, namespace: str
) -> None:
    apis.BatchV1Api(api).create_namespaced_job(
        namespace, job_body("version", ["embedding-operator", "--version"])
    )
    cond = wait_for(lambda: job_condition(api, namespace, "version"), 90, what="Job to finish")
    assert cond.type == "Complete", cond
    job = apis.BatchV1Api(api).read_namespaced_job_status("version", namespace)
    assert job.status.succeeded == 1
    (pod,) = job_pods(api, namespace, "version")
    assert pod.spec.node_name == "process-node"
    assert pod.status.phase == "Succeeded"
    term = pod.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason) == (0, "Completed")
    assert "embedding-operator 0." in cluster.pod_log(namespace, pod.metadata.name, "worker")


def test_failing_job_is_retried_up_to_its_backoff_limit(
    cluster: ClusterHandle, api: Any, namespace: str
) -> None:
    apis.BatchV1Api(api).create_namespaced_job(
        namespace,
        job_body("broken", ["embedding-operator", "no-such-subcommand"], backoff=2),
    )
    cond = wait_for(lambda: job_condition(api, namespace, "broken"), 180, what="Job to fail")
    assert (cond.type, cond.reason) == ("Failed", "BackoffLimitExceeded")
    job = apis.BatchV1Api(api).read_namespaced_job_status("broken", namespace)
    assert job.status.failed == 3
    assert not job.status.succeeded
    pods = job_pods(api, namespace, "broken")
    assert len(pods) == 3
    for pod in pods:
        assert pod.status.phase == "Failed"
        term = pod.status.container_statuses[0].state.terminated
        assert (term.exit_code, term.reason) == (2, "Error")
        assert "invalid choice: 'no-such-subcommand'" in term.message


def test_deleting_the_owner_garbage_collects_the_job(
    api: Any, crd: dict[str, Any], namespace: str
) -> None:
    owner = create_de(api, namespace, valid("owner"))
    ref = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DeploymentEmbedding",
        "name": "owner",
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    batch = apis.BatchV1Api(api)
    batch.create_namespaced_job(
        namespace,
        job_body("owned", ["python", "-c", "import time; time.sleep(300)"], owner=ref),
    )
    pod = wait_for(
        lambda: [p for p in job_pods(api, namespace, "owned") if p.status.phase == "Running"],
        60,
        what="the Job's pod to run",
    )[0]
    pid = pid_of(pod)
    assert pid_alive(pid)
    custom(api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "owner", propagation_policy="Background"
    )

    def job_gone() -> bool:
        try:
            batch.read_namespaced_job("owned", namespace)
            return False
        except client.ApiException as exc:
            return bool(exc.status == 404)

    wait_for(job_gone, 60, what="the garbage collector to delete the Job")
    wait_for(lambda: not job_pods(api, namespace, "owned"), 60, what="the Job's pods to go")
    wait_for(lambda: not pid_alive(pid), 15, what=f"process {pid} to be killed")


# -- the process kubelet -------------------------------------------------------------------


def test_unsupported_image_gets_a_clear_pod_status(api: Any, namespace: str) -> None:
    core = apis.CoreV1Api(api)
    body = pod_body("busy", ["sh", "-c", "true"], container={"image": "busybox:1.36"})
    core.create_namespaced_pod(namespace, body)
    pod = wait_for(lambda: pod_phase(api, namespace, "busy", "Failed"), 30, what="pod Failed")
    assert pod.status.reason == "ImageNotSupported"
    assert "busybox:1.36" in pod.status.message
    assert "embedding-operator" in pod.status.message
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting.reason == "ImageNotSupported"


def test_pod_process_runs_as_its_service_account(
    cluster: ClusterHandle, api: Any, namespace: str
) -> None:
    script = (
        "import json, os\n"
        "from kubernetes import client, config\n"
        "assert 'KUBERNETES_SERVICE_HOST' not in os.environ\n"
        "config.load_config()\n"
        "api = client.ApiClient()\n"
        "review = client.AuthenticationV1Api(api).create_self_subject_review({})\n"
        "print('user=' + review.status.user_info.username)\n"
        "try:\n"
        "    client.CoreV1Api(api).list_namespaced_secret(os.environ['NS'])\n"
        "    print('secrets=allowed')\n"
        "except client.ApiException as exc:\n"
        "    print(f'secrets={exc.status}')\n"
    )
    env = [{"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}]
    body = pod_body(
        "whoami",
        ["python", "-c", script],
        container={"image": "ghcr.io/example/embedding-operator:0.1.0", "env": env},
    )
    apis.CoreV1Api(api).create_namespaced_pod(namespace, body)
    pod = wait_for(
        lambda: pod_phase(api, namespace, "whoami", "Succeeded", "Failed"), 60, what="pod done"
    )
    out = cluster.pod_log(namespace, "whoami", "main")
    assert pod.status.phase == "Succeeded", out
    assert f"user=system:serviceaccount:{namespace}:default" in out
    assert "secrets=403" in out


def test_environment_comes_from_secrets_and_config_maps(
    cluster: ClusterHandle, api: Any, namespace: str
) -> None:
    core = apis.CoreV1Api(api)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "settings"}, "data": {"MODE": "fast", "LEVEL": "3"}}
    )
    env = [
        {"name": "API_KEY", "valueFrom": {"secretKeyRef": {"name": "voyage", "key": "api-key"}}},
        {
            "name": "OPTIONAL",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
        },
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "MODE"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "GREETING", "value": "hello $(POD)"},
    ]
    script = (
        "import os\n"
        "for k in ['API_KEY', 'OPTIONAL', 'MODE', 'POD', 'GREETING', 'CFG_LEVEL']:\n"
        "    print(f'{k}={os.environ.get(k, \"<unset>\")}')\n"
    )
    body = pod_body(
        "envy",
        ["python", "-c", script],
        container={
            "env": env,
            "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "settings"}}],
        },
    )
    core.create_namespaced_pod(namespace, body)

    def config_error() -> Any:
        pod = core.read_namespaced_pod("envy", namespace)
        statuses = pod.status.container_statuses or []
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for(config_error, 30, what="CreateContainerConfigError")
    assert 'secret "voyage" not found' in waiting.message
    assert core.read_namespaced_pod("envy", namespace).status.phase == "Pending"
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "voyage"}, "stringData": {"api-key": "s3cret"}}
    )
    pod = wait_for(
        lambda: pod_phase(api, namespace, "envy", "Succeeded", "Failed"), 60, what="pod done"
    )
    out = cluster.pod_log(namespace, "envy", "main")
    assert pod.status.phase == "Succeeded", out
    for line in [
        "API_KEY=s3cret",
        "OPTIONAL=<unset>",
        "MODE=fast",
        "POD=envy",
        "GREETING=hello envy",
        "CFG_LEVEL=3",
    ]:
        assert line in out.splitlines()


def test_deleting_a_pod_kills_its_process(api: Any, namespace: str) -> None:
    core = apis.CoreV1Api(api)
    core.create_namespaced_pod(
        namespace, pod_body("sleeper", ["python", "-c", "import time; time.sleep(600)"])
    )
    pod = wait_for(lambda: pod_phase(api, namespace, "sleeper", "Running"), 30, what="Running")
    pid = pid_of(pod)
    assert pid_alive(pid)
    core.delete_namespaced_pod("sleeper", namespace)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("sleeper", namespace)
            return False
        except client.ApiException as exc:
            return bool(exc.status == 404)

    wait_for(gone, 30, what="pod removed")
    assert not pid_alive(pid)


def test_active_deadline_stops_the_pod(api: Any, namespace: str) -> None:
    core = apis.CoreV1Api(api)
    body = pod_body("late", ["python", "-c", "import time; time.sleep(600)"])
    body["spec"]["activeDeadlineSeconds"] = 2
    core.create_namespaced_pod(namespace, body)
    pod = wait_for(lambda: pod_phase(api, namespace, "late", "Failed"), 30, what="pod Failed")
    assert pod.status.reason == "DeadlineExceeded"
    assert pod.status.container_statuses[0].state.terminated is not None


def test_on_failure_restarts_the_container_in_place(api: Any, namespace: str) -> None:
    # Fails the first time (no marker file in its HOME yet), succeeds on the restart.
    script = (
        "import os, sys\n"
        "marker = os.path.join(os.environ['HOME'], 'tried')\n"
        "if not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    sys.exit('first try fails')\n"
        "print('second try works')\n"
    )
    core = apis.CoreV1Api(api)
    body = pod_body("flaky", ["python", "-c", script], restartPolicy="OnFailure")
    core.create_namespaced_pod(namespace, body)
    pod = wait_for(
        lambda: pod_phase(api, namespace, "flaky", "Succeeded", "Failed"), 30, what="pod done"
    )
    assert pod.status.phase == "Succeeded"
    status = pod.status.container_statuses[0]
    assert status.restart_count == 1
    assert status.last_state.terminated.exit_code == 1
    assert "first try fails" in status.last_state.terminated.message


# -- the harness stops everything it started -----------------------------------------------


def test_harness_stop_leaves_no_process(tmp_path: Path) -> None:
    from tests.cluster.harness import Cluster

    c = Cluster(state_dir=tmp_path / "sub")
    c.start()
    pids = c.started_pids()
    try:
        assert len(pids) == 4
        core = apis.CoreV1Api(c.api_client())
        ns = f"sub-{uuid.uuid4().hex[:5]}"
        core.create_namespace({"metadata": {"name": ns}})
        wait_for(lambda: core.list_namespaced_service_account(ns).items, 30, what="default SA")
        core.create_namespaced_pod(
            ns, pod_body("sleeper", ["python", "-c", "import time; time.sleep(600)"])
        )

        def running() -> Any:
            pod = core.read_namespaced_pod("sleeper", ns)
            return pod if pod.status.phase == "Running" else None

        pod_pid = pid_of(wait_for(running, 30, what="pod Running"))
        assert pid_alive(pod_pid)
    finally:
        left = c.stop()
    assert left == []
    time.sleep(0.1)
    for pid in [*pids, pod_pid]:
        assert not pid_alive(pid), f"pid {pid} survived the harness stop"
    assert not (tmp_path / "sub" / "pids.json").exists()
    assert os.path.exists(tmp_path / "sub" / "logs" / "kube-apiserver.log")
