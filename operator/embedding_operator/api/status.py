"""The run's vocabulary, shared by the controller and the worker: phases, condition types, reasons
and the worker's exit codes. Values are stable API (users alert on reasons; the Job's
podFailurePolicy matches an exit code), so they are enums, never string literals."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class Phase(StrEnum):
    """``status.phase``: the seed's states, kept for users and printer columns."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"

    @property
    def finished(self) -> bool:
        return self in (Phase.COMPLETED, Phase.FAILED)


class ConditionType(StrEnum):
    """The ``status.conditions`` types (``metav1.Condition`` shape) the operator maintains."""

    SUCCEEDED = "Succeeded"
    """Tekton-style outcome of a bounded run: Unknown while pending or running, then True/False."""
    RUN_REQUEST = "RunRequest"
    """Whether the last run request was accepted, and why not when it was not."""
    # The conditions GitOps tools read (kstatus, which Flux uses, and Argo CD health checks): a
    # resource is healthy when Ready, progressing while Reconciling, failed when Stalled.
    READY = "Ready"
    RECONCILING = "Reconciling"
    STALLED = "Stalled"


class Reason(StrEnum):
    """Condition and Event reasons (CamelCase). Job condition reasons (BackoffLimitExceeded,
    DeadlineExceeded, PodFailurePolicy) pass through as plain strings."""

    AWAITING_RUN_REQUEST = "AwaitingRunRequest"
    SPEC_CHANGED = "SpecChanged"
    JOB_CREATED = "JobCreated"
    EMBEDDING = "Embedding"
    COMPLETED = "Completed"
    ACCEPTED = "Accepted"
    IGNORED_WHILE_RUNNING = "IgnoredWhileRunning"
    COMPLETED_UNCHANGED = "CompletedAndUnchanged"
    CANCELLED = "Cancelled"
    CANCEL_IGNORED = "CancelIgnored"
    JOB_DELETED = "JobDeleted"
    WORKER_LOST = "WorkerLost"
    POD_NOT_STARTED = "PodNotStarted"
    POD_WAITING = "PodWaiting"
    SECRET_NOT_FOUND = "SecretNotFound"
    SECRET_KEY_NOT_FOUND = "SecretKeyNotFound"
    VOYAGE_ERROR = "VoyageError"
    RESULT_TOO_LARGE = "ResultTooLarge"
    INVALID_SETTING = "InvalidSetting"
    """An operator setting handed to the worker does not parse: permanent until it is fixed."""
    JOB_CREATE_FAILED = "JobCreateFailed"
    """The API refused the Job for a reason that may pass (quota, RBAC, outage): retried."""
    INVALID_JOB_SPEC = "InvalidJobSpec"
    """The API refused the Job as invalid (422): no retry can help until the spec changes."""


class ExitCode(IntEnum):
    """The worker's exit codes, i.e. what its Job should do next (the one definition: the worker
    returns them, the Job's podFailurePolicy matches PERMANENT)."""

    OK = 0
    """Done: the result is recorded, or the run is no longer current (nothing to do)."""
    TRANSIENT = 1
    """A transient failure outlasted the worker's retries: the Job may retry the pod."""
    PERMANENT = 3
    """Retrying cannot help (bad key, invalid input, result too large): Failed is written and the
    Job fails at once."""
