"""kopf wiring: every event about a DeploymentEmbedding, its Jobs or their pods goes into the
controller's ``cache`` (kopf lists and watches these kinds anyway, so the cache is filled for free,
a restart included) and queues the resource for a reconcile (``queue.WorkQueue``: de-duplicated,
one at a time per resource, a failed one back after its backoff); a periodic resync catches what
no event announces (a pod that never starts, work an earlier failure left unhandled) with a pass
over the cache, without a request.

Only raw event handlers are used, so kopf keeps no per-object state: no finalizers and no
``last-handled-configuration`` annotation, which a spec near the size limit would overflow
(kopf #1087). kopf never retries event handlers, so the requeue is ours. The reconcile itself is
level-based and idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import kopf

from embedding_operator.api import names
from embedding_operator.controller.cache import Kind
from embedding_operator.controller.loop import OWNED, Controller
from embedding_operator.controller.queue import WorkQueue
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import Kube, RetryPolicy

log = logging.getLogger(__name__)

FIELD_MANAGER = "embedding-operator"

_OWNED: dict[str, Any] = {
    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
    names.OWNER_LABEL: kopf.PRESENT,
}

EVENT_FLUSH_SECONDS = 5.0
"""How long a stopping operator waits for its queued Events to be posted."""
RECONCILE_WORKERS = 16
"""Reconciles at once (threads: the boundary blocks). Each mostly waits on the API server, so
more than the CPUs; bounded, so a burst cannot open thousands of connections."""


def _enqueue(
    memo: kopf.Memo, kind: Kind, event: kopf.RawEvent, namespace: str | None, name: str | None
) -> None:
    controller: Controller = memo["controller"]
    news = controller.cache.observe(kind, event.get("type"), dict(event["object"]))
    if news and namespace and name:
        queue: WorkQueue = memo["queue"]
        queue.add((namespace, name))


def configure(settings: kopf.OperatorSettings, namespaces: tuple[str, ...]) -> None:
    """kopf's settings for this operator, served ``namespaces`` (empty: all)."""
    settings.posting.enabled = False  # our Events are posted by the reconcile, with reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # Only the Jobs and pods the operator owns cross the wire: the apiserver filters (the
    # handlers' ``labels=`` alone would filter after every Job and pod of the cluster arrived).
    settings.watching.label_selectors["batch", "jobs"] = OWNED
    settings.watching.label_selectors["", "pods"] = OWNED
    # A namespaced install serves exact names and holds no right to list namespaces or watch
    # CRDs: kopf would retry that forbidden list through its error backoffs (~55 s) before
    # acting, on every start and every leader handover. Scanning off is kopf's declared mode
    # for exactly this (the named namespaces are taken as existing).
    settings.scanning.disabled = bool(namespaces)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    configure(settings, tuple(memo.get("namespaces") or ()))
    config = Settings.from_env()
    kube = Kube.from_environment(FIELD_MANAGER, RetryPolicy(timeout=10.0, budget=30.0))
    memo["controller"] = controller = Controller(kube, config)
    # before kopf's watches start (startup handlers run first): see ``Controller.prime``
    await asyncio.to_thread(controller.prime, tuple(memo.get("namespaces") or ()))
    memo["queue"] = queue = WorkQueue(lambda key: controller.reconcile(*key), RECONCILE_WORKERS)
    queue.start()
    memo["resync"] = asyncio.create_task(_resync(memo, config.resync_seconds))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("resync")
    if task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    queue: WorkQueue | None = memo.get("queue")
    if queue:
        await queue.stop()
    controller: Controller | None = memo.get("controller")
    if controller and not await asyncio.to_thread(controller.events.flush, EVENT_FLUSH_SECONDS):
        log.warning("stopping with Events not posted (the statuses say the same)")


async def _resync(memo: kopf.Memo, interval: float) -> None:
    """Every ``interval``, queue each resource with work left; those waiting out their backoff
    stay with their timer, and the queue folds the rest into what is already queued."""
    controller: Controller = memo["controller"]
    queue: WorkQueue = memo["queue"]
    while True:
        await asyncio.sleep(interval)
        try:
            for key in controller.with_work():
                if not queue.waiting(key):
                    queue.add(key)
        except Exception:
            log.exception("resync failed; retrying in %ss", interval)


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def resource_event(
    memo: kopf.Memo, event: kopf.RawEvent, namespace: str | None, name: str | None, **_: Any
) -> None:
    _enqueue(memo, "resource", event, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=_OWNED)
async def job_event(
    memo: kopf.Memo, event: kopf.RawEvent, namespace: str | None, labels: kopf.Labels, **_: Any
) -> None:
    _enqueue(memo, "job", event, namespace, labels.get(names.OWNER_LABEL))


@kopf.on.event("", "v1", "pods", labels=_OWNED)
async def pod_event(
    memo: kopf.Memo, event: kopf.RawEvent, namespace: str | None, labels: kopf.Labels, **_: Any
) -> None:
    _enqueue(memo, "pod", event, namespace, labels.get(names.OWNER_LABEL))
