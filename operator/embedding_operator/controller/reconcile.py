"""The control loop's decisions, as one pure function of what was observed.

``plan(...)`` looks at a DeploymentEmbedding, its current Job and that Job's pods, and says what
to change. It is level-based: called on every event and on a periodic resync, it converges from
any state (a restarted operator, a missed event) and is idempotent (the Job name is derived from
the run request, so planning the same run twice creates one Job).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from embedding_operator.api import names
from embedding_operator.api import status as st
from embedding_operator.controller.objects import build_job
from embedding_operator.controller.settings import Settings

Obj = dict[str, Any]

_NOT_STARTING = {
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "ImageNotSupported",
}


@dataclass
class Event:
    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Plan:
    """What to do; an empty plan means the resource has converged."""

    status: Obj = field(default_factory=dict)
    """A JSON merge patch of ``status`` (None values delete fields)."""
    create_job: Obj | None = None
    delete_job: str | None = None
    delete_results: bool = False
    events: list[Event] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.status or self.create_job or self.delete_job or self.delete_results)


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _job_condition(job: Obj, type_: str) -> Obj | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return dict(cond)
    return None


def _terminated_message(pods: list[Obj]) -> str:
    """The newest worker termination message (the worker's last error line), if any."""
    messages = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or {}
            if term.get("message"):
                messages.append((term.get("finishedAt") or "", term["message"].strip()))
    return sorted(messages)[-1][1] if messages else ""


def _not_started(pods: list[Obj], now: datetime, timeout: float) -> tuple[str, str] | None:
    """(reason, message) when a pod has not started within ``timeout`` seconds."""
    for pod in pods:
        pod_status = pod.get("status") or {}
        if pod_status.get("phase") != "Pending":
            continue
        age = (now - _parse_time(pod["metadata"]["creationTimestamp"])).total_seconds()
        if age < timeout:
            continue
        for cs in pod_status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _NOT_STARTING:
                message = waiting.get("message") or waiting["reason"]
                if (
                    waiting["reason"] == "CreateContainerConfigError"
                    and "secret" in message.lower()
                ):
                    return st.SECRET_NOT_FOUND, message
                return st.POD_NOT_STARTED, f"{waiting['reason']}: {message}"
        return st.POD_NOT_STARTED, f"the worker pod did not start within {timeout:.0f}s"
    return None


class _Planner:
    def __init__(self, body: Obj, settings: Settings) -> None:
        self.body = body
        self.settings = settings
        self.meta = body["metadata"]
        self.generation: int | None = self.meta.get("generation")
        self.current: Obj = dict(body.get("status") or {})
        self.plan = Plan()

    @property
    def phase(self) -> str | None:
        phase: str | None = self.current.get("phase")
        return phase

    def set(self, **fields: Any) -> None:
        self.current.update(fields)
        self.plan.status.update(fields)

    def transition(self, phase: str, reason: str, message: str, **fields: Any) -> None:
        conditions = st.merge_conditions(
            self.current.get("conditions"),
            *st.phase_conditions(phase, reason, message, self.generation),
        )
        self.set(phase=phase, message=message, conditions=conditions, **fields)

    def run_request(self, accepted: bool, reason: str, message: str) -> None:
        cond = st.condition(
            st.RUN_REQUEST, "True" if accepted else "False", reason, message, self.generation
        )
        self.set(conditions=st.merge_conditions(self.current.get("conditions"), cond))
        self.event("Normal" if accepted else "Warning", reason, message)

    def fail(self, reason: str, message: str) -> None:
        self.transition("Failed", reason, message, completionTime=st.now())
        self.event("Warning", reason, message)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))


def plan(body: Obj, job: Obj | None, pods: list[Obj], now: datetime, settings: Settings) -> Plan:
    """Decide what to do about one DeploymentEmbedding.

    ``job`` is the Job named in ``status.jobName`` as read from the API (None when absent), and
    ``pods`` are that Job's pods.
    """
    p = _Planner(body, settings)
    if p.meta.get("deletionTimestamp"):
        return p.plan
    annotations = p.meta.get("annotations") or {}
    run_request = annotations.get(names.RUN_ANNOTATION)
    cancel_request = annotations.get(names.CANCEL_ANNOTATION)
    input_count = len(body["spec"].get("inputs") or [])

    spec_changed = p.current.get("observedGeneration") != p.generation
    if p.phase is None:
        p.transition(
            "Pending",
            st.AWAITING_RUN_REQUEST,
            f"waiting for a run request (set the {names.RUN_ANNOTATION} annotation)",
            observedGeneration=p.generation,
            inputCount=input_count,
        )
    elif spec_changed and p.phase in ("Completed", "Failed"):
        p.transition(
            "Pending",
            st.SPEC_CHANGED,
            "the spec changed, so the previous result was removed; request a run to embed again",
            observedGeneration=p.generation,
            inputCount=input_count,
            result=None,
            stats=None,
            jobName=None,
            startTime=None,
            completionTime=None,
        )
        p.plan.delete_results = True
        p.event("Normal", st.SPEC_CHANGED, "spec changed: previous result removed")
    elif spec_changed and p.phase == "Pending":
        p.set(observedGeneration=p.generation, inputCount=input_count)

    if p.phase == "Running":
        _plan_running(p, job, pods, now, cancel_request, run_request)
    elif cancel_request and cancel_request != p.current.get("lastHandledCancelRequest"):
        p.set(lastHandledCancelRequest=cancel_request)
        p.event("Normal", "CancelIgnored", f"nothing to cancel: the resource is {p.phase}")

    if run_request and run_request != p.current.get("lastHandledRunRequest"):
        _plan_run_request(p, run_request)
    return p.plan


def _plan_running(
    p: _Planner,
    job: Obj | None,
    pods: list[Obj],
    now: datetime,
    cancel_request: str | None,
    run_request: str | None,
) -> None:
    job_name = p.current.get("jobName")
    last_error = p.current.get("message") or ""
    if cancel_request and cancel_request != p.current.get("lastHandledCancelRequest"):
        p.plan.delete_job = job_name if job is not None else None
        p.set(lastHandledCancelRequest=cancel_request)
        p.fail(st.CANCELLED, f"cancelled by the {names.CANCEL_ANNOTATION} annotation")
        return
    if job is None:
        p.fail(st.JOB_DELETED, f"the Job {job_name} was deleted before the run finished")
        return
    failed = _job_condition(job, "Failed")
    if failed:
        reason = failed.get("reason") or "JobFailed"
        detail = _terminated_message(pods) or last_error
        message = f"Job {job_name} failed ({reason}): {failed.get('message') or ''}".strip()
        p.fail(reason, f"{message}; last worker error: {detail}" if detail else message)
        return
    if _job_condition(job, "Complete"):
        p.fail(st.WORKER_LOST, f"the Job {job_name} succeeded but its worker wrote no result")
        return
    stuck = _not_started(pods, now, p.settings.pod_start_timeout_seconds)
    if stuck:
        p.plan.delete_job = job_name
        p.fail(*stuck)
        return
    if run_request and run_request != p.current.get("lastHandledRunRequest"):
        p.set(lastHandledRunRequest=run_request)
        p.run_request(
            False,
            st.IGNORED_WHILE_RUNNING,
            f"run request {run_request!r} ignored: a run is already in progress",
        )


def _plan_run_request(p: _Planner, run_request: str) -> None:
    if p.phase == "Running":
        return  # handled in _plan_running
    p.set(lastHandledRunRequest=run_request)
    if p.phase == "Completed":
        p.run_request(
            False,
            st.COMPLETED_UNCHANGED,
            "cannot run completed jobs: the spec has not changed since the last "
            "successful run; change the spec to run again",
        )
        return
    job = build_job(p.body, run_request, p.settings)
    name = job["metadata"]["name"]
    p.plan.create_job = job
    p.run_request(True, st.ACCEPTED, f"run request {run_request!r} accepted: Job {name}")
    p.transition(
        "Running",
        st.JOB_CREATED,
        f"Job {name} created",
        jobName=name,
        startTime=st.now(),
        completionTime=None,
        result=None,
        stats=None,
    )
