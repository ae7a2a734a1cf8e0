"""The worker's writes to its resource's status, each guarded so a stale worker cannot overwrite
a newer run: every write re-reads the resource and goes ahead only while ``status.jobName`` is
this worker's Job and the phase is Running (a cancelled or superseded run stops here)."""

from __future__ import annotations

import logging
import time
from typing import Any

from embedding_operator.api import names
from embedding_operator.api import status as st
from embedding_operator.kube import Kube, KubeError, post_event, resource_path

log = logging.getLogger(__name__)

COMPONENT = "embedding-operator-worker"


class Superseded(Exception):
    """The run this worker belongs to is no longer the resource's current run."""


class StatusWriter:
    def __init__(self, kube: Kube, namespace: str, name: str, job: str) -> None:
        self.kube = kube
        self.path = resource_path(namespace, name)
        self.job = job

    def load(self, running: bool = True) -> dict[str, Any]:
        """The resource, if this worker's run is still its current one (and still Running)."""
        body = self.kube.get(self.path)
        if body is None:
            raise Superseded("the resource was deleted")
        status = body.get("status") or {}
        if status.get("jobName") != self.job or (running and status.get("phase") != "Running"):
            raise Superseded(
                f"the resource's current run is {status.get('jobName')!r} "
                f"({status.get('phase')}), not {self.job!r}"
            )
        return body

    def await_current(self, timeout: float, interval: float = 1.0) -> dict[str, Any]:
        """The resource, once the operator has recorded this worker's run.

        The operator creates the Job first and records it in the status second, so a pod can
        start before the record, or long before it when the operator crashed in between. While
        the run annotation still asks for this Job's run, wait for the record instead of giving
        up; past ``timeout``, raise TimeoutError (the Job may retry).
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
                time.sleep(interval)

    def _requested(self, body: dict[str, Any]) -> bool:
        meta = body["metadata"]
        request = (meta.get("annotations") or {}).get(names.RUN_ANNOTATION)
        if request is None:
            return False
        return names.job_name(meta["name"], meta["uid"], request) == self.job

    def write(self, patch: dict[str, Any], phase: str | None = None, reason: str = "") -> None:
        """Merge ``patch`` into the status; with ``phase``, also move the phase's conditions."""
        for _ in range(5):
            body = self.load()
            status = dict(patch)
            if phase:
                generation = body["metadata"].get("generation")
                conditions = st.merge_conditions(
                    (body.get("status") or {}).get("conditions"),
                    *st.phase_conditions(phase, reason, patch["message"], generation),
                )
                status.update(phase=phase, conditions=conditions)
            try:
                self.kube.patch(
                    resource_path(
                        body["metadata"]["namespace"], body["metadata"]["name"], "status"
                    ),
                    {
                        "metadata": {"resourceVersion": body["metadata"]["resourceVersion"]},
                        "status": status,
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
            post_event(self.kube, self.load(running=False), type_, reason, message, COMPONENT)
        except (KubeError, Superseded) as e:  # an Event is a courtesy, never a reason to fail
            log.warning("could not post event %s: %s", reason, e)
