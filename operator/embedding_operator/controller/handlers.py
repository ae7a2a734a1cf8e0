"""kopf wiring: every event about a DeploymentEmbedding, its Jobs or their pods reconciles the
resource; a periodic resync catches what no event announces (a pod that never starts).

Only raw event handlers are used, so kopf keeps no per-object state: no finalizers and no
``last-handled-configuration`` annotation, which a spec near the size limit would overflow
(kopf #1087). The reconcile itself is level-based and idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import kopf

from embedding_operator.api import names
from embedding_operator.controller.loop import Controller
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import Kube

log = logging.getLogger(__name__)

_OWNED: dict[str, Any] = {
    names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
    names.OWNER_LABEL: kopf.PRESENT,
}
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)


async def _reconcile(memo: kopf.Memo, namespace: str | None, name: str | None) -> None:
    if not namespace or not name:
        return
    controller: Controller = memo["controller"]
    async with _locks[namespace, name]:  # one reconcile per resource at a time
        await asyncio.to_thread(controller.reconcile, namespace, name)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # our Events are posted by the reconcile, with reasons
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    config = Settings.from_env()
    memo["controller"] = Controller(Kube.from_environment(), config)
    memo["resync"] = asyncio.create_task(_resync(memo, config.resync_seconds))


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("resync")
    if task:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _resync(memo: kopf.Memo, interval: float) -> None:
    controller: Controller = memo["controller"]
    while True:
        await asyncio.sleep(interval)
        try:
            for namespace, name in await asyncio.to_thread(controller.unfinished):
                await _reconcile(memo, namespace, name)
        except Exception:
            log.exception("resync failed; retrying in %ss", interval)


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
async def resource_event(
    memo: kopf.Memo, namespace: str | None, name: str | None, **_: Any
) -> None:
    await _reconcile(memo, namespace, name)


@kopf.on.event("batch", "v1", "jobs", labels=_OWNED)
async def job_event(memo: kopf.Memo, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    await _reconcile(memo, namespace, labels.get(names.OWNER_LABEL))


@kopf.on.event("", "v1", "pods", labels=_OWNED)
async def pod_event(memo: kopf.Memo, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    await _reconcile(memo, namespace, labels.get(names.OWNER_LABEL))
