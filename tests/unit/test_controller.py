"""The controller's pure parts: the objects it builds and the decisions of ``reconcile.plan``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedding_operator.api import names
from embedding_operator.api import status as st
from embedding_operator.api.names import job_name
from embedding_operator.controller.objects import build_job, build_worker_rbac
from embedding_operator.controller.reconcile import plan
from embedding_operator.controller.settings import Settings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    image="embedding-operator:test",
    pod_start_timeout_seconds=60,
    worker_env={"VOYAGE_BASE_URL": "http://127.0.0.1:9/v1"},
)


def resource(
    phase: str | None = None,
    run: str | None = None,
    generation: int = 1,
    observed: int | None = 1,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {
            "name": "demo",
            "namespace": "ns",
            "uid": "uid-1",
            "generation": generation,
            "resourceVersion": "7",
            "annotations": {},
        },
        "spec": {
            "inputs": ["a", "b", "c"],
            "model": "voyage-3.5",
            "apiKeySecretRef": {"name": "voyage", "key": "token"},
        },
    }
    if run:
        body["metadata"]["annotations"][names.RUN_ANNOTATION] = run
    if phase:
        body["status"] = {"phase": phase, "observedGeneration": observed, **status}
    return body


def job(condition: str | None = None, reason: str = "", message: str = "") -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": reason, "message": message}]
    return {
        "metadata": {"name": "demo-job"},
        "status": {"conditions": conditions if condition else []},
    }


def pod(
    age_seconds: float,
    waiting: dict[str, str] | None = None,
    terminated: dict[str, Any] | None = None,
    phase: str = "Pending",
) -> dict[str, Any]:
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    state = {"waiting": waiting} if waiting else {"terminated": terminated} if terminated else {}
    statuses = [{"name": "worker", "state": state}] if state else []
    return {
        "metadata": {"creationTimestamp": created},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def reason_of(status: dict[str, Any], type_: str = st.SUCCEEDED) -> str:
    return next(c["reason"] for c in status["conditions"] if c["type"] == type_)


# -- objects -----------------------------------------------------------------------------------


def test_job_name_is_deterministic_short_and_per_request() -> None:
    long_name = "x" * 63
    assert job_name("demo", "uid", "r1") == job_name("demo", "uid", "r1")
    assert job_name("demo", "uid", "r1") != job_name("demo", "uid", "r2")
    assert job_name("demo", "uid", "r1") != job_name("demo", "other-uid", "r1")
    assert len(job_name(long_name, "uid", "r1")) <= 63


def test_job_is_owned_labelled_restricted_and_carries_no_inputs_or_key() -> None:
    body = resource(run="r1")
    body["spec"]["inputs"] = ["alpha-text", "beta-text"]
    j = build_job(body, "r1", SETTINGS)
    assert j["metadata"]["ownerReferences"][0] == {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": "demo",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert j["metadata"]["labels"][names.OWNER_LABEL] == "demo"
    assert j["metadata"]["labels"][names.MANAGED_BY_LABEL] == "embedding-operator"
    pod_spec = j["spec"]["template"]["spec"]
    [c] = pod_spec["containers"]
    assert c["args"] == [
        "worker",
        "--namespace",
        "ns",
        "--name",
        "demo",
        "--job",
        j["metadata"]["name"],
    ]
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    key = next(e for e in c["env"] if e["name"] == "VOYAGE_API_KEY")
    assert key["valueFrom"] == {"secretKeyRef": {"name": "voyage", "key": "token"}}
    assert {"name": "VOYAGE_BASE_URL", "value": "http://127.0.0.1:9/v1"} in c["env"]
    assert "alpha-text" not in str(j)  # inputs never travel in args or env
    assert (j["spec"]["backoffLimit"], j["spec"]["activeDeadlineSeconds"]) == (2, 3600)
    assert j["spec"]["ttlSecondsAfterFinished"] == 86400
    assert pod_spec["restartPolicy"] == "Never"


def test_job_takes_the_default_secret_and_the_spec_job_options() -> None:
    body = resource()
    del body["spec"]["apiKeySecretRef"]
    body["spec"]["job"] = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 60,
        "resources": {"limits": {"memory": "2Gi"}},
    }
    j = build_job(body, "r", SETTINGS)
    c = j["spec"]["template"]["spec"]["containers"][0]
    assert c["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "voyage-api-key", "key": "api-key"}
    assert (j["spec"]["backoffLimit"], j["spec"]["activeDeadlineSeconds"]) == (0, 60)
    assert c["resources"] == {"limits": {"memory": "2Gi"}}


def test_worker_rbac_is_least_privilege() -> None:
    sa, role, binding = build_worker_rbac("ns", SETTINGS)
    assert (
        sa["kind"] == "ServiceAccount" and binding["subjects"][0]["name"] == sa["metadata"]["name"]
    )
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    assert ("deploymentembeddings", "get") in granted
    assert ("deploymentembeddings/status", "patch") in granted
    assert ("deploymentembeddings", "patch") not in granted  # never the spec
    assert not any(r == "secrets" for r, _ in granted)
    assert not any(v in ("*", "watch") for _, v in granted)
    assert {v for r, v in granted if r != "configmaps"} <= {"get", "patch", "create"}


# -- plan ----------------------------------------------------------------------------------------


def test_new_resource_becomes_pending() -> None:
    p = plan(resource(), None, [], NOW, SETTINGS)
    assert p.status["phase"] == "Pending"
    assert p.status["inputCount"] == 3 and p.status["observedGeneration"] == 1
    assert reason_of(p.status) == st.AWAITING_RUN_REQUEST
    assert p.create_job is None


def test_applied_with_run_annotation_runs_once() -> None:
    p = plan(resource(run="r1"), None, [], NOW, SETTINGS)
    assert p.status["phase"] == "Running"
    assert p.create_job is not None
    assert p.status["jobName"] == p.create_job["metadata"]["name"]
    assert p.status["lastHandledRunRequest"] == "r1"
    assert reason_of(p.status, st.RUN_REQUEST) == st.ACCEPTED
    # the same request again, once recorded, plans nothing more
    running = resource("Running", run="r1", jobName=p.status["jobName"], lastHandledRunRequest="r1")
    assert not plan(running, job(), [pod(5, phase="Running")], NOW, SETTINGS)


def test_run_request_while_running_is_ignored_with_an_event() -> None:
    body = resource("Running", run="r2", jobName="j", lastHandledRunRequest="r1")
    p = plan(body, job(), [], NOW, SETTINGS)
    assert p.create_job is None and "phase" not in p.status
    assert p.status["lastHandledRunRequest"] == "r2"
    assert reason_of(p.status, st.RUN_REQUEST) == st.IGNORED_WHILE_RUNNING
    assert [e.reason for e in p.events] == [st.IGNORED_WHILE_RUNNING]


def test_rerun_of_unchanged_completed_resource_is_refused() -> None:
    body = resource("Completed", run="r2", lastHandledRunRequest="r1")
    p = plan(body, None, [], NOW, SETTINGS)
    assert p.create_job is None
    assert "phase" not in p.status
    assert reason_of(p.status, st.RUN_REQUEST) == st.COMPLETED_UNCHANGED
    assert "cannot run completed jobs" in p.events[0].message
    assert p.events[0].type == "Warning"


def test_spec_change_after_completion_resets_and_removes_the_result() -> None:
    body = resource(
        "Completed",
        run="r1",
        generation=2,
        observed=1,
        lastHandledRunRequest="r1",
        result={"model": "voyage-3.5", "totalTokens": 3},
        jobName="j",
    )
    p = plan(body, None, [], NOW, SETTINGS)
    assert p.status["phase"] == "Pending" and p.status["result"] is None
    assert p.status["observedGeneration"] == 2 and p.delete_results
    assert p.create_job is None


def test_spec_change_and_new_run_request_together_run_the_new_spec() -> None:
    body = resource("Completed", run="r2", generation=2, observed=1, lastHandledRunRequest="r1")
    p = plan(body, None, [], NOW, SETTINGS)
    assert p.delete_results and p.create_job is not None
    assert p.status["phase"] == "Running" and p.status["result"] is None


def test_failed_resource_can_run_again_unchanged() -> None:
    p = plan(resource("Failed", run="r2", lastHandledRunRequest="r1"), None, [], NOW, SETTINGS)
    assert p.create_job is not None and p.status["phase"] == "Running"


@pytest.mark.parametrize(
    ("the_job", "pods", "reason", "fragment"),
    [
        (None, [], st.JOB_DELETED, "was deleted"),
        (
            job("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit"),
            [
                pod(
                    30,
                    terminated={
                        "exitCode": 1,
                        "message": "voyage: 503 unavailable",
                        "finishedAt": "2026-11-28T11:59:00Z",
                    },
                    phase="Failed",
                )
            ],
            "BackoffLimitExceeded",
            "503 unavailable",
        ),
        (
            job("Failed", "DeadlineExceeded", "Job was active longer than specified deadline"),
            [],
            "DeadlineExceeded",
            "longer than specified deadline",
        ),
        (job("Complete"), [], st.WORKER_LOST, "wrote no result"),
        (
            job(),
            [
                pod(
                    61,
                    waiting={
                        "reason": "CreateContainerConfigError",
                        "message": 'secret "voyage" not found',
                    },
                )
            ],
            st.SECRET_NOT_FOUND,
            'secret "voyage" not found',
        ),
        (
            job(),
            [pod(61, waiting={"reason": "ImageNotSupported", "message": "busybox"})],
            st.POD_NOT_STARTED,
            "busybox",
        ),
        (job(), [pod(61)], st.POD_NOT_STARTED, "did not start within 60s"),
    ],
    ids=["job-deleted", "backoff", "deadline", "worker-lost", "secret", "image", "unscheduled"],
)
def test_every_way_a_run_ends_becomes_failed_with_a_reason(
    the_job: dict[str, Any] | None, pods: list[dict[str, Any]], reason: str, fragment: str
) -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    p = plan(body, the_job, pods, NOW, SETTINGS)
    assert p.status["phase"] == "Failed"
    assert reason_of(p.status) == reason
    assert fragment in p.status["message"]
    assert p.status["completionTime"]
    assert p.events[-1].reason == reason and p.events[-1].type == "Warning"


def test_a_young_pending_pod_is_left_alone() -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    waiting = {"reason": "CreateContainerConfigError", "message": 'secret "voyage" not found'}
    assert not plan(body, job(), [pod(10, waiting=waiting)], NOW, SETTINGS)


def test_cancel_deletes_the_job_and_fails_the_run() -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    body["metadata"]["annotations"][names.CANCEL_ANNOTATION] = "c1"
    p = plan(body, job(), [], NOW, SETTINGS)
    assert p.delete_job == "demo-job"
    assert p.status["phase"] == "Failed" and reason_of(p.status) == st.CANCELLED
    assert p.status["lastHandledCancelRequest"] == "c1"
    done = copy.deepcopy(body)
    done["status"].update(p.status)
    assert not plan(done, None, [], NOW, SETTINGS)  # handled once


def test_conditions_keep_their_transition_time_when_status_is_unchanged() -> None:
    first = st.condition(st.SUCCEEDED, "Unknown", st.JOB_CREATED, "m", 1)
    first["lastTransitionTime"] = "2020-01-01T00:00:00Z"
    [merged] = st.merge_conditions(
        [first], st.condition(st.SUCCEEDED, "Unknown", st.EMBEDDING, "n", 1)
    )
    assert (
        merged["lastTransitionTime"] == "2020-01-01T00:00:00Z" and merged["reason"] == st.EMBEDDING
    )
    [moved] = st.merge_conditions([first], st.condition(st.SUCCEEDED, "True", st.COMPLETED, "", 1))
    assert moved["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_deleting_resource_is_left_alone() -> None:
    body = resource(run="r1")
    body["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:00Z"
    assert not plan(body, None, [], NOW, SETTINGS)


def health(status: dict[str, Any]) -> dict[str, str]:
    return {
        c["type"]: c["status"]
        for c in status["conditions"]
        if c["type"] in (st.READY, st.RECONCILING, st.STALLED)
    }


def test_every_phase_carries_the_health_conditions_gitops_tools_read() -> None:
    pending = plan(resource(), None, [], NOW, SETTINGS).status
    assert health(pending) == {st.READY: "True", st.RECONCILING: "False", st.STALLED: "False"}
    running = plan(resource(run="r1"), None, [], NOW, SETTINGS).status
    assert health(running) == {st.READY: "Unknown", st.RECONCILING: "True", st.STALLED: "False"}
    body = resource("Running", run="r1")
    body["status"].update(running)
    failed = plan(body, None, [], NOW, SETTINGS).status
    assert health(failed) == {st.READY: "False", st.RECONCILING: "False", st.STALLED: "True"}
    ready = next(c for c in failed["conditions"] if c["type"] == st.READY)
    assert ready["reason"] == st.JOB_DELETED and "was deleted" in ready["message"]
    assert ready["observedGeneration"] == 1
    completed = st.phase_conditions("Completed", st.COMPLETED, "done", 1)
    assert {c["type"]: c["status"] for c in completed} == {
        st.SUCCEEDED: "True",
        st.READY: "True",
        st.RECONCILING: "False",
        st.STALLED: "False",
    }
