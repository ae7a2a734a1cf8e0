"""The worker's writes to its resource's status, each guarded so a stale worker cannot overwrite
a newer run: every write re-reads the resource and goes ahead only while its run is the current
one (``lifecycle.owns_run``: a cancelled or superseded run stops here). Phase changes follow
``api.lifecycle``, the rules the controller follows too.

A final write (Completed, Failed) is retried across an API outage for as long as the run may
still last (``patience``): the vectors are already paid for and stored, and a worker that gave up
would make its Job run again and pay Voyage a second time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import tenacity

from embedding_operator.api import lifecycle, names
from embedding_operator.api.lifecycle import Clock, Status
from embedding_operator.api.status import Phase
from embedding_operator.kube import Kube, KubeError, backoff, post_event, resource_path

log = logging.getLogger(__name__)


class Superseded(Exception):
    """The run this worker belongs to is no longer the resource's current run."""


def _transient(error: BaseException) -> bool:
    return isinstance(error, KubeError) and error.transient


class StatusWriter:
    """The worker's writes to its resource's status: only while its run is the current one (else
    :class:`Superseded`), through the shared lifecycle's transitions, retried across outages."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        job: str,
        *,
        clock: Clock = lifecycle.utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.path = resource_path(namespace, name)
        self.job = job
        self.clock = clock
        self.sleep = sleep

    def load(self, running: bool = True) -> dict[str, Any]:
        """The resource, if this worker's run is still its current one (and still Running)."""
        body = self.kube.get(self.path)
        if body is None:
            raise Superseded("the resource was deleted")
        current = lifecycle.parse(body.get("status"))
        if not lifecycle.owns_run(current, self.job, running=running):
            raise Superseded(
                f"the resource's current run is {current.job_name!r} "
                f"({current.phase}), not {self.job!r}"
            )
        return body

    def await_current(self, timeout: float, interval: float = 1.0) -> dict[str, Any]:
        """The resource, once the operator has recorded this worker's run.

        The operator creates the Job first and records it in the status second, so a pod can
        start before the record, or long before it when the operator crashed in between. While
        the run annotation and the run count still name this Job, wait for the record instead of
        giving up; past ``timeout``, raise TimeoutError (the Job may retry).
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.load()
            except Superseded:
                body = self.kube.get(self.path)
                if body is None or not self._requested(body):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the operator has not recorded run {self.job} after {timeout:.0f}s"
                    ) from None
                self.sleep(interval)

    def _requested(self, body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        request = (meta.get("annotations") or {}).get(names.RUN_ANNOTATION)
        if request is None:
            return False
        attempt = (lifecycle.parse(body.get("status")).run_count or 0) + 1
        return names.job_name(meta["name"], meta["uid"], request, attempt) == self.job

    def write(
        self,
        message: str,
        *,
        phase: Phase | None = None,
        reason: str = "",
        patience: float = 0.0,
        **fields: Any,
    ) -> None:
        """Set ``message`` and ``fields`` (status field names, snake_case); with ``phase``, move
        to it by ``lifecycle.enter``. Transient API failures are retried for ``patience`` seconds
        beyond the boundary's own budget (final writes pass the time the run has left)."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_transient),
            wait=backoff(1.0, 15.0),
            stop=tenacity.stop_after_delay(patience),
            sleep=self.sleep,
            before_sleep=lambda state: log.warning(
                "status not written yet, retrying: %s", state.outcome and state.outcome.exception()
            ),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                self._write_once(message, phase, reason, fields)

    def _write_once(
        self, message: str, phase: Phase | None, reason: str, fields: dict[str, Any]
    ) -> None:
        for _ in range(5):
            body = self.load()
            meta = body["metadata"]
            if phase is None:
                partial = Status(message=message, **fields)
            else:
                partial = lifecycle.enter(
                    lifecycle.parse(body.get("status")),
                    phase,
                    reason,
                    message,
                    generation=meta.get("generation"),
                    now=self.clock(),
                    **fields,
                )
            try:
                self.kube.patch(
                    resource_path(meta["namespace"], meta["name"], "status"),
                    {
                        "metadata": {"resourceVersion": meta["resourceVersion"]},
                        "status": lifecycle.patch_of(partial),
                    },
                )
            except KubeError as e:
                if e.status == 409:
                    continue
                raise
            return
        raise RuntimeError("the resource kept changing; giving up this status write")

    def event(self, type_: str, reason: str, message: str) -> None:
        try:
            body = self.load(running=False)
            post_event(self.kube, body, type_, reason, message, lifecycle.timestamp(self.clock()))
        except (KubeError, Superseded) as e:  # an Event is a courtesy, never a reason to fail
            log.warning("could not post event %s: %s", reason, e)
