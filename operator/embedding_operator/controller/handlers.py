"""kopf wiring: every event about a DeploymentEmbedding, its Jobs or their pods reconciles the
resource; a failed reconcile is requeued after its backoff; a periodic resync catches what no
event announces (a pod that never starts, work an earlier failure left unhandled).

Only raw event handlers are used, so kopf keeps no per-object state: no finalizers and no
``last-handled-configuration`` annotation, which a spec near the size limit would overflow
(kopf #1087). kopf never retries event handlers, so the requeue is ours. The reconcile itself is
level-based and idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import kopf

from embedding_operator.api import names
from embedding_operator.controller.loop import Controller
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import Kube, RetryPolicy

log = logging.getLogger(__name__)

FIELD_MANAGER = "embedding-operator"

_OWNED: dict[str, Any] = {
    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
    names.OWNER_LABEL: kopf.PRESENT,
}

Key = tuple[str, str]


class Serial:
    """One reconcile per resource at a time. A lock exists only while someone holds or waits
    for it, so the table is as large as the work in flight, not as the resources ever seen."""

    def __init__(self) -> None:
        self._locks: dict[Key, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Key) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def busy(self, key: Key) -> bool:
        return key in self._locks

    def __len__(self) -> int:
        return len(self._locks)


class Requeue:
    """Reconciles scheduled for later (a failed one, after its backoff): one timer per resource,
    dropped when it fires or when a reconcile succeeds."""

    def __init__(self) -> None:
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, key: Key, delay: float, memo: kopf.Memo) -> None:
        self.cancel(key)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            task = loop.create_task(reconcile(memo, *key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._timers[key] = loop.call_later(delay, fire)

    def pending(self, key: Key) -> bool:
        return key in self._timers

    def cancel(self, key: Key) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()

    def __len__(self) -> int:
        return len(self._timers)


async def reconcile(memo: kopf.Memo, namespace: str | None, name: str | None) -> None:
    if not namespace or not name:
        return
    controller: Controller = memo["controller"]
    serial: Serial = memo["serial"]
    requeue: Requeue = memo["requeue"]
    key = (namespace, name)
    async with serial.hold(key):
        requeue.cancel(key)  # this reconcile supersedes a scheduled one
        delay = await asyncio.to_thread(controller.reconcile, namespace, name)
    if delay is not None:
        requeue.schedule(key, delay, memo)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our Events are posted by the reconcile, with reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Only the Jobs and pods the operator owns cross the wire: the apiserver filters (the
    # handlers' ``labels=`` alone would filter after every Job and pod of the cluster arrived).
    owned = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE},{names.OWNER_LABEL}"
    settings.watching.label_selectors["batch", "jobs"] = owned
    settings.watching.label_selectors["", "pods"] = owned
    config = Settings.from_env()
    kube = Kube.from_environment(FIELD_MANAGER, RetryPolicy(timeout=10.0, budget=30.0))
    namespaces = tuple(memo.get("namespaces") or ())
    memo["controller"] = Controller(kube, config, namespaces=namespaces)
    memo["serial"] = Serial()
    memo["requeue"] = Requeue()
    memo["resync"] = asyncio.create_task(_resync(memo, config.resync_seconds))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("resync")
    if task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    requeue: Requeue | None = memo.get("requeue")
    if requeue:
        requeue.close()


async def _resync(memo: kopf.Memo, interval: float) -> None:
    """Every ``interval``, reconcile each resource with work left (concurrently: one slow
    resource must not hold up the others); skip those being reconciled right now, and those
    waiting out their backoff (their timer brings them back)."""
    controller: Controller = memo["controller"]
    serial: Serial = memo["serial"]
    requeue: Requeue = memo["requeue"]
    while True:
        await asyncio.sleep(interval)
        try:
            keys = await asyncio.to_thread(controller.with_work)
            due = [k for k in keys if not serial.busy(k) and not requeue.pending(k)]
            await asyncio.gather(*(reconcile(memo, *key) for key in due))
        except Exception:
            log.exception("resync failed; retrying in %ss", interval)


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def resource_event(
    memo: kopf.Memo, namespace: str | None, name: str | None, **_: Any
) -> None:
    await reconcile(memo, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=_OWNED)
async def job_event(memo: kopf.Memo, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    await reconcile(memo, namespace, labels.get(names.OWNER_LABEL))


@kopf.on.event("", "v1", "pods", labels=_OWNED)
async def pod_event(memo: kopf.Memo, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    await reconcile(memo, namespace, labels.get(names.OWNER_LABEL))
