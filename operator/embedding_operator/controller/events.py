"""Kubernetes Events, posted off the reconcile's path, as client-go's EventRecorder does.

An Event is a courtesy (the status says the same, and is what kstatus, Flux and Argo CD read), yet
posting it was the third API round trip of every reconcile, after the Job and the status: each
reconcile thread waited on it before taking the next resource. Here a reconcile only queues the
Event, and one thread posts them in order. While reconciles are running (``busy``), that thread
posts at most one Event per ``TRICKLE_SECONDS``: in a burst, kube-apiserver's time goes to Jobs
first and the Events follow when it ends. The queue is bounded: a burst that outruns it drops
Events, counted and logged, and never holds up a Job. What is still queued when the operator
stops is posted within ``flush``'s timeout, then dropped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from embedding_operator import logs
from embedding_operator.kube import Kube, KubeError, post_event

log = logging.getLogger(__name__)

CAPACITY = 4096
"""Events queued at most: a burst of 1,000 runs queues about 1,000 (one Accepted each)."""
TRICKLE_SECONDS = 0.2
"""While reconciles are running, the least time between two Events."""
DROPPED = Counter(
    "embedding_operator_events_dropped_total",
    "Kubernetes Events not posted: the queue was full, or the API server refused them.",
)


@dataclass(frozen=True)
class _Event:
    body: dict[str, Any]
    type: str
    reason: str
    message: str
    stamp: str


class EventRecorder:
    def __init__(
        self, kube: Kube, capacity: int = CAPACITY, busy: Callable[[], bool] = lambda: False
    ) -> None:
        """``busy()``: whether reconciles are running now (their requests go first)."""
        self.kube = kube
        self._busy = busy
        self._queue: queue.Queue[_Event] = queue.Queue(capacity)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def record(
        self, body: dict[str, Any], type_: str, reason: str, message: str, stamp: str
    ) -> None:
        """Queue an Event on the resource ``body`` (its metadata is all that is kept); never
        blocks and never raises."""
        meta = {k: body["metadata"].get(k) for k in ("name", "namespace", "uid", "resourceVersion")}
        try:
            self._queue.put_nowait(_Event({"metadata": meta}, type_, reason, message, stamp))
        except queue.Full:
            DROPPED.inc()
            logs.for_object(log, meta["namespace"], meta["name"]).warning(
                "event %s dropped: %d Events are queued already", reason, self._queue.maxsize
            )
            return
        self._start()

    def flush(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every queued Event to be posted; whether they were
        (``Queue.join`` with a timeout: the same condition it waits on)."""
        with self._queue.all_tasks_done:
            return self._queue.all_tasks_done.wait_for(
                lambda: not self._queue.unfinished_tasks, timeout
            )

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._post, name="events", daemon=True)
                self._thread.start()

    def _post(self) -> None:
        while True:
            event = self._queue.get()
            deadline = time.monotonic() + TRICKLE_SECONDS
            while self._busy() and time.monotonic() < deadline:
                time.sleep(0.01)
            try:
                post_event(
                    self.kube, event.body, event.type, event.reason, event.message, event.stamp
                )
            except KubeError as e:  # the status says it too
                DROPPED.inc()
                log.warning("event %s not posted: %s", event.reason, e)
            except Exception:
                DROPPED.inc()
                log.exception("event %s not posted", event.reason)
            finally:
                self._queue.task_done()
