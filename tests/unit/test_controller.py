"""The controller's pure parts: the objects it builds and the decisions of ``reconcile.plan``."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from embedding_operator.api import lifecycle, names
from embedding_operator.api.names import job_name
from embedding_operator.api.status import ConditionType, Phase, Reason
from embedding_operator.controller.objects import build_job, build_worker_rbac, worker_rules
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


def job(
    condition: str | None = None, reason: str = "", message: str = "", age_seconds: float = 5
) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True", "reason": reason, "message": message}]
    created = (NOW - timedelta(seconds=age_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": "demo-job", "creationTimestamp": created},
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


def reason_of(status: dict[str, Any], type_: str = ConditionType.SUCCEEDED) -> str:
    return next(c["reason"] for c in status["conditions"] if c["type"] == type_)


# -- objects -----------------------------------------------------------------------------------


def test_job_name_is_deterministic_short_and_per_request() -> None:
    long_name = "x" * 63
    assert job_name("demo", "uid", "r1", 1) == job_name("demo", "uid", "r1", 1)
    assert job_name("demo", "uid", "r1", 1) != job_name("demo", "uid", "r2", 1)
    assert job_name("demo", "uid", "r1", 1) != job_name("demo", "other-uid", "r1", 1)
    assert len(job_name(long_name, "uid", "r1", 1)) <= 63


def test_job_is_owned_labelled_restricted_and_carries_no_inputs_or_key() -> None:
    body = resource(run="r1")
    body["spec"]["inputs"] = ["alpha-text", "beta-text"]
    j = build_job(body, "r1", 1, SETTINGS)
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
    j = build_job(body, "r", 1, SETTINGS)
    c = j["spec"]["template"]["spec"]["containers"][0]
    assert c["env"][0]["valueFrom"]["secretKeyRef"] == {"name": "voyage-api-key", "key": "api-key"}
    assert (j["spec"]["backoffLimit"], j["spec"]["activeDeadlineSeconds"]) == (0, 60)
    assert c["resources"] == {"limits": {"memory": "2Gi"}}


def test_worker_rbac_binds_the_charts_worker_role_owned_by_it() -> None:
    owner = {"metadata": {"name": "rel-worker", "uid": "u-1"}}
    sa, binding = build_worker_rbac("ns", SETTINGS, owner)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ns"}
    ]
    assert binding["roleRef"]["name"] == SETTINGS.worker_cluster_role
    for obj in (sa, binding):
        [ref] = obj["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"]) == ("ClusterRole", "rel-worker", "u-1")


def test_worker_rules_are_least_privilege() -> None:
    granted = {(r, v) for rule in worker_rules() for r in rule["resources"] for v in rule["verbs"]}
    assert ("deploymentembeddings", "get") in granted
    assert ("deploymentembeddings/status", "patch") in granted
    assert ("deploymentembeddings", "patch") not in granted  # never the spec
    assert not any(r == "secrets" for r, _ in granted)
    assert not any(v in ("*", "watch") for _, v in granted)
    assert {v for r, v in granted if r != "configmaps"} <= {"get", "patch", "create"}


# -- plan ----------------------------------------------------------------------------------------


def test_new_resource_becomes_pending() -> None:
    p = plan(resource(), None, [], NOW, SETTINGS)
    assert p.patch["phase"] == "Pending"
    assert p.patch["inputCount"] == 3 and p.patch["observedGeneration"] == 1
    assert reason_of(p.patch) == Reason.AWAITING_RUN_REQUEST
    assert p.create_job is None


def test_applied_with_run_annotation_runs_once() -> None:
    p = plan(resource(run="r1"), None, [], NOW, SETTINGS)
    assert p.patch["phase"] == "Running"
    assert p.create_job is not None
    assert p.patch["jobName"] == p.create_job["metadata"]["name"]
    assert p.patch["lastHandledRunRequest"] == "r1"
    assert reason_of(p.patch, ConditionType.RUN_REQUEST) == Reason.ACCEPTED
    # the same request again, once recorded, plans nothing more
    running = resource("Running", run="r1", jobName=p.patch["jobName"], lastHandledRunRequest="r1")
    assert not plan(running, job(), [pod(5, phase="Running")], NOW, SETTINGS)


def test_run_request_while_running_is_ignored_with_an_event() -> None:
    body = resource("Running", run="r2", jobName="j", lastHandledRunRequest="r1")
    p = plan(body, job(), [], NOW, SETTINGS)
    assert p.create_job is None and "phase" not in p.patch
    assert p.patch["lastHandledRunRequest"] == "r2"
    assert reason_of(p.patch, ConditionType.RUN_REQUEST) == Reason.IGNORED_WHILE_RUNNING
    assert [e.reason for e in p.events] == [Reason.IGNORED_WHILE_RUNNING]


def test_rerun_of_unchanged_completed_resource_is_refused() -> None:
    body = resource("Completed", run="r2", lastHandledRunRequest="r1")
    p = plan(body, None, [], NOW, SETTINGS)
    assert p.create_job is None
    assert "phase" not in p.patch
    assert reason_of(p.patch, ConditionType.RUN_REQUEST) == Reason.COMPLETED_UNCHANGED
    assert "cannot run completed jobs" in p.events[0].message
    assert p.events[0].type == "Warning"


def test_spec_change_after_completion_resets_and_removes_the_result() -> None:
    body = resource(
        "Completed",
        run="r1",
        generation=2,
        observed=1,
        lastHandledRunRequest="r1",
        result={
            "model": "voyage-3.5",
            "totalTokens": 3,
            "count": 3,
            "dimensions": 2,
            "dtype": "float",
        },
        jobName="j",
    )
    p = plan(body, None, [], NOW, SETTINGS)
    assert p.patch["phase"] == "Pending" and p.patch["result"] is None
    assert p.patch["observedGeneration"] == 2 and p.delete_results
    assert p.create_job is None


def test_spec_change_and_new_run_request_together_run_the_new_spec() -> None:
    body = resource("Completed", run="r2", generation=2, observed=1, lastHandledRunRequest="r1")
    p = plan(body, None, [], NOW, SETTINGS)
    assert p.delete_results and p.create_job is not None
    assert p.patch["phase"] == "Running" and p.patch["result"] is None


def test_failed_resource_can_run_again_unchanged() -> None:
    p = plan(resource("Failed", run="r2", lastHandledRunRequest="r1"), None, [], NOW, SETTINGS)
    assert p.create_job is not None and p.patch["phase"] == "Running"


@pytest.mark.parametrize(
    ("the_job", "pods", "reason", "fragment"),
    [
        (None, [], Reason.JOB_DELETED, "was deleted"),
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
        (job("Complete"), [], Reason.WORKER_LOST, "wrote no result"),
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
            Reason.SECRET_NOT_FOUND,
            'secret "voyage" not found',
        ),
        (
            job(),
            [pod(61, waiting={"reason": "ImageNotSupported", "message": "busybox"})],
            Reason.POD_NOT_STARTED,
            "busybox",
        ),
        (job(), [pod(61)], Reason.POD_NOT_STARTED, "did not start within 60s"),
    ],
    ids=["job-deleted", "backoff", "deadline", "worker-lost", "secret", "image", "unscheduled"],
)
def test_every_way_a_run_ends_becomes_failed_with_a_reason(
    the_job: dict[str, Any] | None, pods: list[dict[str, Any]], reason: str, fragment: str
) -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    p = plan(body, the_job, pods, NOW, SETTINGS)
    assert p.patch["phase"] == "Failed"
    assert reason_of(p.patch) == reason
    assert fragment in p.patch["message"]
    assert p.patch["completionTime"]
    assert p.events[-1].reason == reason and p.events[-1].type == "Warning"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ('secret "voyage" not found', Reason.SECRET_NOT_FOUND),
        ("couldn't find key token in Secret ns/voyage", Reason.SECRET_KEY_NOT_FOUND),
    ],
)
def test_a_young_waiting_pod_is_reported_at_once_but_not_failed(
    message: str, reason: Reason
) -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    waiting = {"reason": "CreateContainerConfigError", "message": message}
    p = plan(body, job(), [pod(10, waiting=waiting)], NOW, SETTINGS)
    assert p.delete_job is None and p.patch["phase"] == "Running"
    assert reason_of(p.patch) == reason and message in p.patch["message"]
    assert [(e.type, e.reason) for e in p.events] == [("Warning", reason)]
    body["status"].update(p.patch)
    assert not plan(body, job(), [pod(20, waiting=waiting)], NOW, SETTINGS)  # said once


def test_a_job_without_a_pod_fails_past_the_start_timeout_with_the_jobs_own_words() -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    assert not plan(body, job(age_seconds=30), [], NOW, SETTINGS)
    why = 'pods "demo-job-x" is forbidden: error looking up service account ns/sa: not found'
    p = plan(body, job(age_seconds=61), [], NOW, SETTINGS, job_warnings=[why])
    assert p.patch["phase"] == "Failed" and reason_of(p.patch) == Reason.POD_NOT_STARTED
    assert why in p.patch["message"] and p.delete_job == "demo-job"
    # pods that existed and are being removed (past a deadline) are not "never created"
    ending = job(age_seconds=61)
    ending["status"].update(failed=1)
    assert not plan(body, ending, [], NOW, SETTINGS, job_warnings=[why])
    ending = job("FailureTarget", "DeadlineExceeded", age_seconds=61)
    assert not plan(body, ending, [], NOW, SETTINGS, job_warnings=[why])


def test_cancel_deletes_the_job_and_fails_the_run() -> None:
    body = resource("Running", run="r1", jobName="demo-job", lastHandledRunRequest="r1")
    body["metadata"]["annotations"][names.CANCEL_ANNOTATION] = "c1"
    p = plan(body, job(), [], NOW, SETTINGS)
    assert p.delete_job == "demo-job"
    assert p.patch["phase"] == "Failed" and reason_of(p.patch) == Reason.CANCELLED
    assert p.patch["lastHandledCancelRequest"] == "c1"
    done = copy.deepcopy(body)
    done["status"].update(p.patch)
    assert not plan(done, None, [], NOW, SETTINGS)  # handled once


def test_conditions_keep_their_transition_time_when_status_is_unchanged() -> None:
    then = NOW - timedelta(hours=1)
    first = lifecycle.condition(
        ConditionType.SUCCEEDED, "Unknown", Reason.JOB_CREATED, "m", 1, then
    )
    same = lifecycle.condition(ConditionType.SUCCEEDED, "Unknown", Reason.EMBEDDING, "n", 1, NOW)
    [merged] = lifecycle.set_conditions([first], same)
    assert merged.last_transition_time == then and merged.reason == Reason.EMBEDDING
    done = lifecycle.condition(ConditionType.SUCCEEDED, "True", Reason.COMPLETED, "", 1, NOW)
    [moved] = lifecycle.set_conditions([first], done)
    assert moved.last_transition_time == NOW
    assert lifecycle.is_true([moved], ConditionType.SUCCEEDED)
    assert not lifecycle.is_true([merged], ConditionType.SUCCEEDED)
    assert lifecycle.find([merged], ConditionType.READY) is None


def test_deleting_resource_is_left_alone() -> None:
    body = resource(run="r1")
    body["metadata"]["deletionTimestamp"] = "2026-11-28T12:00:00Z"
    assert not plan(body, None, [], NOW, SETTINGS)


def health(status: dict[str, Any]) -> dict[str, str]:
    return {
        c["type"]: c["status"]
        for c in status["conditions"]
        if c["type"] in (ConditionType.READY, ConditionType.RECONCILING, ConditionType.STALLED)
    }


def test_every_phase_carries_the_health_conditions_gitops_tools_read() -> None:
    ready_, reconciling, stalled = (
        ConditionType.READY,
        ConditionType.RECONCILING,
        ConditionType.STALLED,
    )
    pending = plan(resource(), None, [], NOW, SETTINGS).patch
    assert health(pending) == {ready_: "True", reconciling: "False", stalled: "False"}
    running = plan(resource(run="r1"), None, [], NOW, SETTINGS).patch
    assert health(running) == {ready_: "Unknown", reconciling: "True", stalled: "False"}
    body = resource("Running", run="r1")
    body["status"].update(running)
    failed = plan(body, None, [], NOW, SETTINGS).patch
    assert health(failed) == {ready_: "False", reconciling: "False", stalled: "True"}
    ready = next(c for c in failed["conditions"] if c["type"] == ready_)
    assert ready["reason"] == Reason.JOB_DELETED and "was deleted" in ready["message"]
    assert ready["observedGeneration"] == 1
    completed = lifecycle.phase_conditions(Phase.COMPLETED, Reason.COMPLETED, "done", 1, NOW)
    assert {c.type: c.status for c in completed} == {
        ConditionType.SUCCEEDED: "True",
        ready_: "True",
        reconciling: "False",
        stalled: "False",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EMBEDDING_OPERATOR_WORKER_EXTRA_ENV", '{"HTTPS_PROXY": 3128}'),
        ("EMBEDDING_OPERATOR_WORKER_EXTRA_ENV", "HTTPS_PROXY=x"),
        ("EMBEDDING_OPERATOR_WORKER_POD_SPEC", '{"hostNetwork": true}'),
    ],
)
def test_a_bad_worker_setting_is_refused_naming_it(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_the_resync_looks_at_what_no_event_announces_and_nothing_else() -> None:
    from embedding_operator.controller.reconcile import has_work

    def succeeded(reason: str) -> list[dict[str, Any]]:
        return [{"type": "Succeeded", "status": "Unknown", "reason": reason}]

    assert has_work(resource())  # never reconciled
    starting = resource("Running", run="r1", lastHandledRunRequest="r1")
    starting["status"]["conditions"] = succeeded(Reason.JOB_CREATED)
    assert has_work(starting)  # its pod may never start: only the clock tells
    started = resource("Running", run="r1", lastHandledRunRequest="r1")
    started["status"]["conditions"] = succeeded(Reason.EMBEDDING)
    assert not has_work(started)  # its Job's and pods' events announce its end
    started["metadata"]["annotations"][names.CANCEL_ANNOTATION] = "c1"
    assert has_work(started)  # a cancel not handled yet
    done = resource("Completed", run="r1", lastHandledRunRequest="r1")
    assert not has_work(done)
    assert has_work(resource("Completed", run="r2", lastHandledRunRequest="r1"))
    assert has_work(resource("Completed", run="r1", generation=2, lastHandledRunRequest="r1"))
