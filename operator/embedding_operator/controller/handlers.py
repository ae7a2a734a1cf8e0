"""kopf wiring: every event about a DeploymentEmbedding goes into the controller's ``cache``
(kopf lists and watches them anyway, so the cache is filled for free, a restart included) and
queues the resource for a reconcile (``queue.WorkQueue``: de-duplicated, one at a time per
resource, a failed one back after its backoff). Its Jobs and pods come from the controller's own
watches (``watches``: much cheaper per event than kopf's), which queue the resource the same way.
A periodic resync catches what no event announces (a pod that never starts, work an earlier
failure left unhandled) with a pass over the cache, without a request.

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

from embedding_operator import memory
from embedding_operator.api import names
from embedding_operator.controller.loop import Controller
from embedding_operator.controller.queue import WorkQueue
from embedding_operator.controller.settings import Settings
from embedding_operator.controller.watches import Watches
from embedding_operator.kube import Kube, RetryPolicy

log = logging.getLogger(__name__)

FIELD_MANAGER = "embedding-operator"

EVENT_FLUSH_SECONDS = 5.0
"""How long a stopping operator waits for its queued Events to be posted."""
RECONCILE_WORKERS = 16
"""Reconciles at once (threads: the boundary blocks). Each mostly waits on the API server, so
more than the CPUs; bounded, so a burst cannot open thousands of connections."""


def configure(settings: kopf.OperatorSettings, namespaces: tuple[str, ...]) -> None:
    """kopf's settings for this operator, served ``namespaces`` (empty: all)."""
    settings.posting.enabled = False  # our Events are posted by the reconcile, with reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
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
    memo["queue"] = queue = WorkQueue(lambda key: controller.reconcile(*key), RECONCILE_WORKERS)
    loop = asyncio.get_running_loop()

    def changed(key: tuple[str, str]) -> None:  # on a watch's thread
        with contextlib.suppress(RuntimeError):  # the loop closed: the operator is stopping
            loop.call_soon_threadsafe(queue.add, key)

    memo["watches"] = Watches(kube, controller.cache, tuple(memo.get("namespaces") or ()), changed)
    memo["synced"] = asyncio.create_task(_start_when_synced(memo))
    memo["resync"] = asyncio.create_task(_resync(memo, config.resync_seconds))


async def _start_when_synced(memo: kopf.Memo) -> None:
    """List the Jobs and pods, then watch them and start reconciling, as client-go waits for
    its caches to sync: a Running resource whose Job is not in the cache yet would be confirmed
    with reads, two per resource on a restart. kopf lists and watches the resources meanwhile
    (their events wait in the queue), so the lists of all three kinds overlap."""
    watches: Watches = memo["watches"]
    try:
        await asyncio.to_thread(watches.list)
    except Exception:  # never leave the operator without reconciles: the watches list again
        log.exception("Jobs and pods not listed before the start")
    watches.start()
    memory.trim()  # the lists' full objects are slim copies now: their pages go back
    queue: WorkQueue = memo["queue"]
    queue.start()


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    watches: Watches | None = memo.get("watches")
    if watches:
        watches.stop()
    for name in ("synced", "resync"):
        task: asyncio.Task[None] | None = memo.get(name)
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
    controller: Controller = memo["controller"]
    news = controller.cache.observe("resource", event.get("type"), dict(event["object"]))
    if news and namespace and name:
        queue: WorkQueue = memo["queue"]
        queue.add((namespace, name))
