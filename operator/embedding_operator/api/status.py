"""Status vocabulary shared by the controller and the worker: phases, condition reasons, and the
pure functions that build status patches in the ``metav1.Condition`` shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

SUCCEEDED: Final = "Succeeded"
"""Tekton-style condition of a bounded run: Unknown while pending or running, then True/False."""
RUN_REQUEST: Final = "RunRequest"
"""Whether the last run request was accepted, and why not when it was not."""
# The conditions GitOps tools read (kstatus, which Flux uses, and the project's Argo CD health
# check): a resource is healthy when Ready, progressing while Reconciling, failed when Stalled.
READY: Final = "Ready"
RECONCILING: Final = "Reconciling"
STALLED: Final = "Stalled"

# Reasons (CamelCase, stable: users alert on them).
AWAITING_RUN_REQUEST: Final = "AwaitingRunRequest"
SPEC_CHANGED: Final = "SpecChanged"
JOB_CREATED: Final = "JobCreated"
EMBEDDING: Final = "Embedding"
COMPLETED: Final = "Completed"
ACCEPTED: Final = "Accepted"
IGNORED_WHILE_RUNNING: Final = "IgnoredWhileRunning"
COMPLETED_UNCHANGED: Final = "CompletedAndUnchanged"
CANCELLED: Final = "Cancelled"
JOB_DELETED: Final = "JobDeleted"
WORKER_LOST: Final = "WorkerLost"
POD_NOT_STARTED: Final = "PodNotStarted"
SECRET_NOT_FOUND: Final = "SecretNotFound"
VOYAGE_ERROR: Final = "VoyageError"
RESULT_TOO_LARGE: Final = "ResultTooLarge"
# Job condition reasons (BackoffLimitExceeded, DeadlineExceeded, PodFailurePolicy) pass through.


def now() -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes timestamps."""
    return datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(
    type_: str, status: str, reason: str, message: str, generation: int | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def merge_conditions(
    current: list[dict[str, Any]] | None, *updates: dict[str, Any]
) -> list[dict[str, Any]]:
    """``current`` with ``updates`` applied by type; lastTransitionTime moves only when the status
    does (the metav1.Condition contract)."""
    merged = {c["type"]: dict(c) for c in current or []}
    for update in updates:
        old = merged.get(update["type"])
        if old is not None and old.get("status") == update["status"]:
            update = {**update, "lastTransitionTime": old["lastTransitionTime"]}  # noqa: PLW2901
        merged[update["type"]] = update
    return list(merged.values())


def succeeded_status(phase: str) -> str:
    return {"Completed": "True", "Failed": "False"}.get(phase, "Unknown")


def phase_conditions(
    phase: str, reason: str, message: str, generation: int | None
) -> list[dict[str, Any]]:
    """The conditions a phase implies: ``Succeeded`` (the run's outcome) and the health triple.

    Pending (waiting for a run request) and Completed are Ready; Running is Reconciling with Ready
    Unknown (a run's outcome is not known yet); Failed is Stalled and not Ready, with the reason.
    Every condition carries the phase's reason and message, so any one of them tells the story.
    """
    ready = {"Pending": "True", "Completed": "True", "Failed": "False"}.get(phase, "Unknown")
    running = "True" if phase == "Running" else "False"
    stalled = "True" if phase == "Failed" else "False"
    return [
        condition(type_, value, reason, message, generation)
        for type_, value in (
            (SUCCEEDED, succeeded_status(phase)),
            (READY, ready),
            (RECONCILING, running),
            (STALLED, stalled),
        )
    ]
