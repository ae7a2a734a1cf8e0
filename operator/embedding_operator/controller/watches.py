"""The operator's own watches of its Jobs and their pods, feeding the cache (client-go's
reflectors, a thread per kind and namespace, or per kind for the whole cluster).

kopf watches the DeploymentEmbeddings, whose events are the handlers'; Jobs and pods come here
instead. kopf spends milliseconds of CPU on every event it delivers (a worker task per object,
body wrappers, a deep copy), and a run's Job and pod change many times while no resource does:
measured at 1,000 runs, those events made most of the operator's CPU, 9.7 % of a core in the
"idle" minute while kube-controller-manager was still creating the runs' pods, and a restart
on 1,050 Running runs handled 3,150 listed objects instead of 1,050 (4.2x the baseline's time).
Here an event is parsed, slimmed and stored, and queues its resource only when it tells the
cache something new that can change the plan (``reconcile.announces``).

No reconcile runs before the first LIST of each is in the cache (``list``), as client-go waits
for its caches to sync: a Running resource whose Job the cache did not hold yet would be
confirmed with reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from embedding_operator.api import names
from embedding_operator.controller.cache import Cache, Key, Kind, Obj, owner
from embedding_operator.controller.reconcile import announces
from embedding_operator.kube import Kube, KubeError, api_path, list_and_watch

log = logging.getLogger(__name__)

OWNED = f"{names.MANAGED_BY_LABEL}={names.MANAGED_BY_VALUE},{names.OWNER_LABEL}"
"""The label selector of the Jobs and pods the operator owns (set by ``objects.build_job``):
kube-apiserver filters, so no other Job or pod of the cluster crosses the wire."""
KINDS: dict[Kind, tuple[str, str]] = {"job": ("batch/v1", "jobs"), "pod": ("v1", "pods")}


def _path(kind: Kind, namespace: str | None) -> str:
    api_version, plural = KINDS[kind]
    return api_path(api_version, namespace, plural)


class Watches:
    """LIST and WATCH the owned Jobs and pods of ``namespaces`` (empty: the whole cluster) into
    ``cache``; ``changed(key)`` is called, on the watch's thread, for each resource whose Job or
    pods changed."""

    def __init__(
        self, kube: Kube, cache: Cache, namespaces: tuple[str, ...], changed: Callable[[Key], None]
    ) -> None:
        self.kube = kube
        self.cache = cache
        self.changed = changed
        self.scopes: tuple[str | None, ...] = namespaces or (None,)
        self._versions: dict[tuple[Kind, str | None], str] = {}
        self._stopped = threading.Event()

    def list(self) -> None:
        """The first LIST of each kind and scope (at once, each into the cache page by page);
        best effort: a failed one is listed again by its watch thread."""
        targets = [(kind, scope) for kind in KINDS for scope in self.scopes]
        with ThreadPoolExecutor(min(8, len(targets)), thread_name_prefix="list") as pool:
            list(pool.map(self._list, targets))

    def _list(self, target: tuple[Kind, str | None]) -> None:
        kind, scope = target
        try:
            version, items = self.kube.list_pages(_path(kind, scope), labelSelector=OWNED)
            self.cache.replace(kind, scope, items)
        except KubeError as e:
            log.warning("%ss not listed before the start: %s", kind, e)
            return
        self._versions[kind, scope] = version

    def start(self) -> None:
        """Watch each kind and scope on a daemon thread, from its first LIST's version."""
        for kind in KINDS:
            for scope in self.scopes:
                threading.Thread(
                    target=self._follow,
                    args=(kind, scope),
                    name=f"watch-{kind}-{scope or 'all'}",
                    daemon=True,
                ).start()

    def stop(self) -> None:
        """End the watches (each after its current request)."""
        self._stopped.set()

    def _follow(self, kind: Kind, scope: str | None) -> None:
        def listed(items: Iterable[Obj], _version: str) -> None:
            for key in self.cache.replace(kind, scope, items):
                self.changed(key)

        def event(type_: str, obj: Obj) -> None:
            if type_ == "BOOKMARK":
                return
            if self.cache.observe(kind, type_, obj) and announces(kind, type_, obj):
                key = owner(obj)
                if key[1]:
                    self.changed(key)

        list_and_watch(
            self.kube,
            _path(kind, scope),
            listed,
            event,
            self._stopped,
            resume=self._versions.get((kind, scope)),
            labelSelector=OWNED,
        )
