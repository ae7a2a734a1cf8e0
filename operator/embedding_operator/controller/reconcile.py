"""The control loop's decisions, as pure functions of what was observed.

``plan(...)`` looks at a DeploymentEmbedding, its current Job and that Job's pods, and says what
to change. It is level-based: called on every event and on a periodic resync, it converges from
any state (a restarted operator, a missed event) and is idempotent (the Job name is derived from
the resource, its run count and the run request, so planning the same run twice creates one Job).
``plan_create_failure(...)`` says what to record when the API refused to create that Job.
Phase changes go through ``api.lifecycle``, the rules the worker follows too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from embedding_operator.api import lifecycle, names
from embedding_operator.api.lifecycle import Status
from embedding_operator.api.status import ConditionType, Phase, Reason
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
    """A Kubernetes Event a plan asks the handler to record on the resource."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Plan:
    """What to do; an empty plan means the resource has converged."""

    status: Status = field(default_factory=Status)
    """A partial status: only the fields to change are set (explicit None deletes)."""
    create_job: Obj | None = None
    delete_job: str | None = None
    delete_results: bool = False
    events: list[Event] = field(default_factory=list)

    @property
    def patch(self) -> Obj:
        """``status`` as the JSON merge patch to send."""
        return lifecycle.patch_of(self.status)

    def __bool__(self) -> bool:
        return bool(
            self.status.model_fields_set
            or self.create_job
            or self.delete_job
            or self.delete_results
        )


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


def _age(obj: Obj, now: datetime) -> float:
    return (now - lifecycle.parse_time(obj["metadata"]["creationTimestamp"])).total_seconds()


def overdue(job: Obj, now: datetime, settings: Settings) -> bool:
    """A Job older than the pod start timeout: if it has no pod, why matters (its Events)."""
    return _age(job, now) >= settings.pod_start_timeout_seconds


def _waiting(pods: list[Obj]) -> tuple[Reason, str] | None:
    """(reason, message) of a worker container that waits on something it cannot start without,
    e.g. its Secret: known as soon as the kubelet says so, long before the start timeout."""
    for pod in pods:
        pod_status = pod.get("status") or {}
        if pod_status.get("phase") != "Pending":
            continue
        for cs in pod_status.get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in _NOT_STARTING:
                continue
            message = waiting.get("message") or waiting["reason"]
            if waiting["reason"] == "CreateContainerConfigError":
                lowered = message.lower()
                if "couldn't find key" in lowered and "secret" in lowered:
                    return Reason.SECRET_KEY_NOT_FOUND, message
                if "secret" in lowered:
                    return Reason.SECRET_NOT_FOUND, message
            return Reason.POD_WAITING, f"{waiting['reason']}: {message}"
    return None


def _had_pods(job: Obj) -> bool:
    """Whether the Job ever had a pod, or is already ending: no pod *now* is then the Job
    controller removing them (past a deadline, say), not a pod that could never be created."""
    status = job.get("status") or {}
    counted = any(status.get(k) for k in ("active", "ready", "succeeded", "failed", "terminating"))
    ending = any(c.get("status") == "True" for c in status.get("conditions") or [])
    return counted or ending


def _not_started(
    job: Obj, pods: list[Obj], job_warnings: list[str], now: datetime, timeout: float
) -> tuple[Reason, str] | None:
    """(reason, message) when the run's pod has not started within ``timeout`` seconds: a pod
    still waiting, or no pod at all (the Job controller could not create one; its Events say
    why, e.g. a missing ServiceAccount)."""
    if not pods:
        if _age(job, now) < timeout or _had_pods(job):
            return None
        why = job_warnings[-1] if job_warnings else "no pod was created"
        return Reason.POD_NOT_STARTED, f"the Job's pod was not created within {timeout:.0f}s: {why}"
    for pod in pods:
        if (pod.get("status") or {}).get("phase") != "Pending" or _age(pod, now) < timeout:
            continue
        waiting = _waiting([pod])
        if waiting is None:
            return Reason.POD_NOT_STARTED, f"the worker pod did not start within {timeout:.0f}s"
        reason, message = waiting
        return (Reason.POD_NOT_STARTED if reason == Reason.POD_WAITING else reason), message
    return None


class _Planner:
    def __init__(self, body: Obj, settings: Settings, now: datetime) -> None:
        self.body = body
        self.settings = settings
        self.now = now
        self.meta = body["metadata"]
        self.generation: int | None = self.meta.get("generation")
        self.current = lifecycle.parse(body.get("status"))
        self.plan = Plan()

    @property
    def phase(self) -> Phase | None:
        return self.current.phase

    def apply(self, partial: Status) -> None:
        self.current = lifecycle.merged(self.current, partial)
        self.plan.status = lifecycle.merged(self.plan.status, partial)

    def set(self, **fields: Any) -> None:
        self.apply(Status(**fields))

    def transition(self, phase: Phase, reason: str, message: str, **fields: Any) -> None:
        self.apply(
            lifecycle.enter(
                self.current,
                phase,
                reason,
                message,
                generation=self.generation,
                now=self.now,
                **fields,
            )
        )

    def run_request(
        self, request: str | None, accepted: bool, reason: Reason, message: str
    ) -> None:
        self.apply(
            lifecycle.note_run_request(
                self.current,
                request,
                accepted,
                reason,
                message,
                generation=self.generation,
                now=self.now,
            )
        )
        self.event("Normal" if accepted else "Warning", reason, message)

    def fail(self, reason: str, message: str) -> None:
        self.transition(Phase.FAILED, reason, message)
        self.event("Warning", reason, message)

    def event(self, type_: str, reason: str, message: str) -> None:
        self.plan.events.append(Event(type_, reason, message))


def plan(
    body: Obj,
    job: Obj | None,
    pods: list[Obj],
    now: datetime,
    settings: Settings,
    job_warnings: list[str] | None = None,
) -> Plan:
    """Decide what to do about one DeploymentEmbedding.

    ``job`` is the Job named in ``status.jobName`` as read from the API (None when absent),
    ``pods`` are that Job's pods, ``job_warnings`` the messages of its Warning Events (read only
    when the Job is overdue without pods), ``now`` the injected clock's reading.
    """
    p = _Planner(body, settings, now)
    if p.meta.get("deletionTimestamp"):
        return p.plan
    annotations = p.meta.get("annotations") or {}
    run_request = annotations.get(names.RUN_ANNOTATION)
    cancel_request = annotations.get(names.CANCEL_ANNOTATION)
    input_count = len(body["spec"].get("inputs") or [])

    spec_changed = p.current.observed_generation != p.generation
    if p.phase is None:
        p.transition(
            Phase.PENDING,
            Reason.AWAITING_RUN_REQUEST,
            f"waiting for a run request (set the {names.RUN_ANNOTATION} annotation)",
            observed_generation=p.generation,
            input_count=input_count,
        )
    elif spec_changed and p.phase.finished:
        p.transition(
            Phase.PENDING,
            Reason.SPEC_CHANGED,
            "the spec changed, so the previous result was removed; request a run to embed again",
            observed_generation=p.generation,
            input_count=input_count,
            result=None,
            stats=None,
            job_name=None,
            start_time=None,
            completion_time=None,
        )
        p.plan.delete_results = True
        p.event("Normal", Reason.SPEC_CHANGED, "spec changed: previous result removed")
    elif spec_changed and p.phase == Phase.PENDING:
        p.set(observed_generation=p.generation, input_count=input_count)

    if p.phase == Phase.RUNNING:
        _plan_running(p, job, pods, job_warnings or [], cancel_request, run_request)
    elif cancel_request and cancel_request != p.current.last_handled_cancel_request:
        p.set(last_handled_cancel_request=cancel_request)
        p.event("Normal", Reason.CANCEL_IGNORED, f"nothing to cancel: the resource is {p.phase}")

    if run_request and run_request != p.current.last_handled_run_request:
        _plan_run_request(p, run_request)
    return p.plan


def has_work(body: Obj) -> bool:
    """Whether a resource may need the operator without any event announcing it: a run whose
    pod has not started yet (``starting``: it may never start, only the clock says so), or a
    request, a cancel or a spec change not handled yet (``unhandled``: an earlier reconcile
    failed). A run whose worker has started (reason Embedding) is left to the events of its Job
    and pods: its end, however it comes, is one of them."""
    return starting(body) or unhandled(body)


def announces(kind: str, event_type: str, obj: Obj) -> bool:
    """Whether this watch event of a run's Job (``kind`` "job") or pod ("pod") can change what
    ``plan`` decides, so its resource needs a reconcile: the Job is gone or has ended (its
    Complete or Failed condition), or a pod waits on something it cannot start without. Every
    event still goes into the cache; the rest (a Job's counters, a pod created, scheduled,
    running or replaced) change no plan, and the endings that only the clock brings (a pod that
    never starts) come from the resync. At 1,000 runs, kube-controller-manager's updates of
    Jobs and pods would otherwise cost two reconciles per run that do nothing."""
    if kind == "job":
        return event_type == "DELETED" or any(
            _job_condition(obj, type_) for type_ in ("Complete", "Failed")
        )
    return event_type != "DELETED" and _waiting([obj]) is not None


def starting(body: Obj) -> bool:
    """A run whose worker has not said it started (``Succeeded`` reason not Embedding)."""
    status = body.get("status") or {}
    if body["metadata"].get("deletionTimestamp") or status.get("phase") != Phase.RUNNING:
        return False
    succeeded: Obj = next(
        (c for c in status.get("conditions") or [] if c.get("type") == ConditionType.SUCCEEDED),
        {},
    )
    return bool(succeeded.get("reason") != Reason.EMBEDDING)


def unhandled(body: Obj) -> bool:
    """A resource never reconciled, or a spec change, run request or cancel not handled yet."""
    meta = body["metadata"]
    status = body.get("status") or {}
    annotations = meta.get("annotations") or {}
    if meta.get("deletionTimestamp"):
        return False
    handled_run, handled_cancel = (
        status.get("lastHandledRunRequest"),
        status.get("lastHandledCancelRequest"),
    )
    return (
        status.get("phase") is None
        or status.get("observedGeneration") != meta.get("generation")
        or annotations.get(names.RUN_ANNOTATION, handled_run) != handled_run
        or annotations.get(names.CANCEL_ANNOTATION, handled_cancel) != handled_cancel
    )


def _plan_running(
    p: _Planner,
    job: Obj | None,
    pods: list[Obj],
    job_warnings: list[str],
    cancel_request: str | None,
    run_request: str | None,
) -> None:
    job_name = p.current.job_name
    last_error = p.current.message or ""
    if cancel_request and cancel_request != p.current.last_handled_cancel_request:
        p.plan.delete_job = job_name if job is not None else None
        p.set(last_handled_cancel_request=cancel_request)
        p.fail(Reason.CANCELLED, f"cancelled by the {names.CANCEL_ANNOTATION} annotation")
        return
    if job is None:
        p.fail(Reason.JOB_DELETED, f"the Job {job_name} was deleted before the run finished")
        return
    failed = _job_condition(job, "Failed")
    if failed:
        reason = failed.get("reason") or "JobFailed"
        detail = _terminated_message(pods) or last_error
        message = f"Job {job_name} failed ({reason}): {failed.get('message') or ''}".strip()
        p.fail(reason, f"{message}; last worker error: {detail}" if detail else message)
        return
    if _job_condition(job, "Complete"):
        p.fail(Reason.WORKER_LOST, f"the Job {job_name} succeeded but its worker wrote no result")
        return
    stuck = _not_started(job, pods, job_warnings, p.now, p.settings.pod_start_timeout_seconds)
    if stuck:
        p.plan.delete_job = job_name
        p.fail(*stuck)
        return
    waiting = _waiting(pods)
    if waiting:
        _note_waiting(p, *waiting)
    if run_request and run_request != p.current.last_handled_run_request:
        p.run_request(
            run_request,
            False,
            Reason.IGNORED_WHILE_RUNNING,
            f"run request {run_request!r} ignored: a run is already in progress",
        )


def _note_waiting(p: _Planner, reason: Reason, message: str) -> None:
    """Say what the pod waits for as soon as it is known (once per distinct message)."""
    timeout = p.settings.pod_start_timeout_seconds
    text = (
        f"the worker pod is waiting: {message} "
        f"(the run fails if it has not started within {timeout:.0f}s)"
    )
    if p.current.message == text:
        return
    p.transition(Phase.RUNNING, reason, text)
    p.event("Warning", reason, text)


def _plan_run_request(p: _Planner, run_request: str) -> None:
    if p.phase == Phase.RUNNING:
        return  # handled in _plan_running
    if p.phase == Phase.COMPLETED:
        p.run_request(
            run_request,
            False,
            Reason.COMPLETED_UNCHANGED,
            "cannot run completed jobs: the spec has not changed since the last "
            "successful run; change the spec to run again",
        )
        return
    attempt = (p.current.run_count or 0) + 1
    job = build_job(p.body, run_request, attempt, p.settings)
    name = job["metadata"]["name"]
    p.plan.create_job = job
    p.run_request(
        run_request, True, Reason.ACCEPTED, f"run request {run_request!r} accepted: Job {name}"
    )
    p.transition(
        Phase.RUNNING,
        Reason.JOB_CREATED,
        f"Job {name} created",
        job_name=name,
        run_count=attempt,
        start_time=p.now,
        completion_time=None,
        result=None,
        stats=None,
    )


def plan_create_failure(
    body: Obj, create_job: Obj, message: str, *, permanent: bool, now: datetime, retry_in: float
) -> Plan:
    """What to record when the API refused the planned Job.

    ``permanent`` (the API said Invalid, 422) means no retry can help until the spec changes: the
    run request is handled and the resource ``Failed`` with reason InvalidJobSpec. Anything else
    (a quota, missing rights, an outage) may pass: the request stays unhandled so the reconcile
    is retried with backoff, and the RunRequest condition says what failed and when the next
    attempt comes.
    """
    p = _Planner(body, Settings(), now)
    request = create_job["metadata"]["annotations"][names.RUN_ANNOTATION]
    job = create_job["metadata"]["name"]
    if p.phase is None:
        p.set(observed_generation=p.generation, input_count=len(body["spec"].get("inputs") or []))
    if permanent:
        text = f"the Job {job} is invalid, so the run cannot start: {message}; fix spec.job"
        p.run_request(request, False, Reason.INVALID_JOB_SPEC, text)
        p.transition(
            Phase.FAILED,
            Reason.INVALID_JOB_SPEC,
            text,
            job_name=None,
            run_count=(p.current.run_count or 0) + 1,
            result=None,
            stats=None,
        )
        return p.plan
    failure = f"the Job {job} could not be created: {message}"
    text = f"{failure}; retrying in {retry_in:.0f}s"
    before = lifecycle.find(p.current.conditions, ConditionType.RUN_REQUEST)
    repeated = before is not None and before.message.startswith(failure)
    if p.phase is None:
        p.transition(Phase.PENDING, Reason.JOB_CREATE_FAILED, text)
    else:
        p.set(message=text)
    p.run_request(None, False, Reason.JOB_CREATE_FAILED, text)  # still unhandled: retried
    p.set(
        conditions=lifecycle.set_conditions(
            p.current.conditions,
            *lifecycle.blocked_conditions(Reason.JOB_CREATE_FAILED, text, p.generation, now),
        )
    )
    if repeated:  # one Event per distinct failure, not one per retry
        p.plan.events.clear()
    return p.plan
