"""A watch-fed copy of the DeploymentEmbeddings the server serves, so lists, pages, filters and
sorting are answered from memory instead of a LIST of every resource per request.

Not state: the custom resources stay the only source of truth. The copy is what one LIST and
then a WATCH from its resourceVersion delivered (a relist after ``410 Gone``), kept slim (no
vectors, no ``managedFields`` beyond the latest time, no last-applied annotation), and it is used
only where it cannot mislead:

* lists of records without vectors (GET / without ``include=result``);
* finding a record's name by its id, after which the record itself is read fresh.

Single records, anything with vectors, and every check before a write read kube-apiserver.
Read-your-writes: the server notes the resourceVersion of each of its own writes
(:meth:`ResourceCache.wrote`); a list waits, briefly and bounded, until the watch has delivered
that version, and otherwise (the watch lags or is down, or the first LIST has not finished) reads
kube-apiserver as before. Versions are compared as integers: kube-apiserver's are etcd
revisions, which only grow (Kubernetes calls them opaque; a non-integer one is not waited for).

The watches run on threads (the ``Kube`` client is synchronous) and hand every event to the
event loop, where all of the copy is read and changed: no locks, and no thread hop per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable
from typing import Any

from embedding_operator.api import names
from embedding_operator.kube import Kube, list_and_watch, resource_path
from embedding_operator.restapi.records import RESULT_SUMMARY

log = logging.getLogger("embedding_operator.restapi")

Obj = dict[str, Any]
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CATCH_UP_SECONDS = 2.0
"""How long a list waits for the watch to deliver the server's own last write."""


def slim(obj: Obj) -> Obj:
    """What a record without vectors needs of ``obj`` (a new dict; ``obj`` is not changed)."""
    meta = dict(obj["metadata"])
    times = [str(e["time"]) for e in meta.pop("managedFields", None) or [] if e.get("time")]
    if times:
        meta["managedFields"] = [{"time": max(times)}]  # records.updated_at reads it
    annotations = meta.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    out = {**obj, "metadata": meta}
    status = obj.get("status")
    if status and status.get("result"):
        result = {k: v for k, v in status["result"].items() if k in RESULT_SUMMARY}
        out["status"] = {**status, "result": result}
    return out


def version(value: str | None) -> int | None:
    try:
        return int(value or "")
    except ValueError:
        return None


class ResourceCache:
    """The slim DeploymentEmbeddings of ``namespaces`` (every namespace when None), by
    namespace and name. One LIST+WATCH per namespace (a namespaced install holds Roles only
    there), or one for the whole cluster."""

    def __init__(self, kube: Kube, namespaces: Iterable[str] | None = None) -> None:
        self.kube = kube
        self.scopes: tuple[str | None, ...] = tuple(namespaces) if namespaces else (None,)
        self.objects: dict[str, dict[str, Obj]] = {}
        self.seen: dict[str | None, int] = {}
        """Per scope: the newest resourceVersion the LIST or WATCH delivered."""
        self.written: dict[str | None, int] = {}
        """Per scope: the newest resourceVersion this server wrote."""
        self.synced: set[str | None] = set()
        self.catch_up = CATCH_UP_SECONDS
        self._changed = asyncio.Event()
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- on the event loop -----------------------------------------------------------------

    def scope(self, namespace: str) -> str | None:
        return None if self.scopes == (None,) else namespace

    @property
    def ready(self) -> bool:
        return len(self.synced) == len(self.scopes)

    def items(self, namespace: str) -> list[Obj]:
        return list(self.objects.get(namespace, {}).values())

    def name_of(self, namespace: str, uid: str) -> str | None:
        for name, obj in self.objects.get(namespace, {}).items():
            if obj["metadata"].get("uid") == uid:
                return name
        return None

    def wrote(self, obj: Obj | None) -> None:
        """Note the server's own write (the object kube-apiserver returned for it)."""
        meta = (obj or {}).get("metadata") or {}
        written = version(meta.get("resourceVersion"))
        if written is not None and meta.get("namespace"):
            scope = self.scope(meta["namespace"])
            self.written[scope] = max(written, self.written.get(scope, 0))

    async def caught_up(self, namespace: str) -> bool:
        """Whether the copy of ``namespace`` may answer a list now: listed once, and holding
        this server's own writes (waited for up to ``catch_up`` seconds)."""
        scope = self.scope(namespace)

        def current() -> bool:
            return scope in self.synced and self.seen.get(scope, 0) >= self.written.get(scope, 0)

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.catch_up):
                while not current():
                    await self._changed.wait()
        return current()

    def _replace(self, scope: str | None, items: list[Obj], listed: str) -> None:
        """A LIST's answer replaces everything of ``scope``."""
        if scope is None:
            self.objects.clear()
        else:
            self.objects.pop(scope, None)
        for obj in items:
            self._store(obj)
        self._advance(scope, listed)
        self.synced.add(scope)

    def _event(self, scope: str | None, kind: str, obj: Obj) -> None:
        meta = obj["metadata"]
        if kind == "DELETED":
            self.objects.get(meta["namespace"], {}).pop(meta["name"], None)
        elif kind in ("ADDED", "MODIFIED"):
            self._store(obj)
        self._advance(scope, meta.get("resourceVersion"))

    def _store(self, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects.setdefault(meta["namespace"], {})[meta["name"]] = obj

    def _advance(self, scope: str | None, resource_version: str | None) -> None:
        seen = version(resource_version)
        if seen is not None:
            self.seen[scope] = max(seen, self.seen.get(scope, 0))
        self._changed.set()  # wake the waiters, which re-check; then wait for the next change
        self._changed = asyncio.Event()

    # -- the watches, on threads -----------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for scope in self.scopes:
            name = f"watch-{scope or 'all'}"
            threading.Thread(target=self.follow, args=(scope,), name=name, daemon=True).start()

    def stop(self) -> None:
        """Ends the watches (each after its current request; they are daemon threads)."""
        self._stopped.set()

    def _post(self, fn: Any, *args: Any) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop closed: the server is stopping
            self._loop.call_soon_threadsafe(fn, *args)

    def follow(self, scope: str | None) -> None:
        """LIST, then WATCH for as long as the server runs (``kube.list_and_watch``)."""
        path = (
            resource_path(scope) if scope else f"/apis/{names.GROUP}/{names.VERSION}/{names.PLURAL}"
        )
        list_and_watch(
            self.kube,
            path,
            lambda items, version: self._post(
                self._replace, scope, [slim(o) for o in items], version
            ),
            lambda type_, obj: self._post(self._event, scope, type_, slim(obj)),
            self._stopped,
        )
