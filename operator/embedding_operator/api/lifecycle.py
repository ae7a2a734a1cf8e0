"""The run's state machine as pure functions over the typed status, used by both writers (the
controller and the worker), so both move phases and conditions by the same rules.

Every function takes the time (``now``) from its caller: the clock is injected (``Clock``), so the
decisions are deterministic under test. A *partial* status is a ``DeploymentEmbeddingStatus`` in
which only the fields to change are set; ``patch_of`` dumps it as a JSON merge patch (explicit
None deletes a field).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from embedding_operator.api.status import ConditionType, Phase
from embedding_operator.api.types import Condition, ConditionStatus, DeploymentEmbeddingStatus

Status = DeploymentEmbeddingStatus
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The production clock: UTC, whole seconds (Kubernetes timestamps have no fraction)."""
    return datetime.now(UTC).replace(microsecond=0)


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a Z, as Kubernetes writes timestamps."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- conditions (metav1.Condition) ---


def find(conditions: Iterable[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or () if c.type == type_), None)


def is_true(conditions: Iterable[Condition] | None, type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_conditions(current: Iterable[Condition] | None, *updates: Condition) -> list[Condition]:
    """``current`` with ``updates`` applied by type; lastTransitionTime moves only when a
    condition's status does (the metav1.Condition contract)."""
    merged = {c.type: c for c in current or ()}
    for update in updates:
        old = merged.get(update.type)
        if old is not None and old.status == update.status:
            update = update.model_copy(  # noqa: PLW2901
                update={"last_transition_time": old.last_transition_time}
            )
        merged[update.type] = update
    return list(merged.values())


def condition(
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> Condition:
    cond = Condition(
        type=type_, status=status, reason=reason, message=message, last_transition_time=now
    )
    if generation is not None:  # unset, not null: the CRD's schema has no nullable fields
        cond.observed_generation = generation
    return cond


def phase_conditions(
    phase: Phase, reason: str, message: str, generation: int | None, now: datetime
) -> list[Condition]:
    """The conditions a phase implies: ``Succeeded`` (the run's outcome) and the triple GitOps
    tools read. Pending (waiting for a run request) and Completed are Ready; Running is
    Reconciling with Ready Unknown; Failed is Stalled and not Ready. Each carries the phase's
    reason and message, so any one of them tells the story."""
    succeeded: ConditionStatus = {Phase.COMPLETED: "True", Phase.FAILED: "False"}.get(
        phase, "Unknown"
    )  # type: ignore[assignment]
    ready: ConditionStatus = {Phase.RUNNING: "Unknown", Phase.FAILED: "False"}.get(phase, "True")  # type: ignore[assignment]
    triple: list[tuple[ConditionType, ConditionStatus]] = [
        (ConditionType.SUCCEEDED, succeeded),
        (ConditionType.READY, ready),
        (ConditionType.RECONCILING, "True" if phase == Phase.RUNNING else "False"),
        (ConditionType.STALLED, "True" if phase == Phase.FAILED else "False"),
    ]
    return [condition(t, s, reason, message, generation, now) for t, s in triple]


def blocked_conditions(
    reason: str, message: str, generation: int | None, now: datetime
) -> list[Condition]:
    """The GitOps triple while a requested run cannot start yet but is being retried (a quota,
    missing rights): not Ready and Reconciling, so kstatus says InProgress and Flux or Argo CD
    wait, then time out with this message, instead of reporting a healthy resource whose run
    never starts. Not Stalled: the operator keeps trying and the run starts once the cause goes."""
    triple: list[tuple[ConditionType, ConditionStatus]] = [
        (ConditionType.READY, "False"),
        (ConditionType.RECONCILING, "True"),
        (ConditionType.STALLED, "False"),
    ]
    return [condition(t, s, reason, message, generation, now) for t, s in triple]


# --- transitions ---


def enter(
    current: Status,
    phase: Phase,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
    **fields: Any,
) -> Status:
    """The partial status that moves ``current`` to ``phase`` (its conditions with it), plus
    ``fields``. A finished phase stamps ``completionTime`` unless ``fields`` set it."""
    partial = Status(
        phase=phase,
        message=message,
        conditions=set_conditions(
            current.conditions, *phase_conditions(phase, reason, message, generation, now)
        ),
        **fields,
    )
    if phase.finished and "completion_time" not in fields:
        partial.completion_time = now
    return partial


def note_run_request(
    current: Status,
    request: str | None,
    accepted: bool,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime,
) -> Status:
    """The partial status recording the fate of a run request: ``request`` is marked handled,
    unless it is None (the request stays pending, e.g. to be retried)."""
    cond = condition(
        ConditionType.RUN_REQUEST,
        "True" if accepted else "False",
        reason,
        message,
        generation,
        now,
    )
    partial = Status(conditions=set_conditions(current.conditions, cond))
    if request is not None:
        partial.last_handled_run_request = request
    return partial


def owns_run(current: Status, job: str, *, running: bool = True) -> bool:
    """Whether a worker of Job ``job`` may write: its Job is the current run (and, unless
    ``running`` is False, the run is still Running: a cancelled or superseded run stops)."""
    return current.job_name == job and (not running or current.phase == Phase.RUNNING)


def merged(current: Status, partial: Status) -> Status:
    """``current`` after ``partial`` is applied (what the API will hold after the patch)."""
    return current.model_copy(update={k: getattr(partial, k) for k in partial.model_fields_set})


def patch_of(partial: Status) -> dict[str, Any]:
    """The JSON merge patch of ``status`` for a partial status (camelCase, None deletes)."""
    return partial.model_dump(by_alias=True, exclude_unset=True, mode="json")


_KNOWN = frozenset(f.alias or name for name, f in Status.model_fields.items())


def parse(status: dict[str, Any] | None) -> Status:
    """The typed view of a stored ``status``. Fields this version does not know (written by a
    newer one, say) are ignored rather than refused: they must not wedge the reconcile."""
    return Status.model_validate({k: v for k, v in (status or {}).items() if k in _KNOWN})
