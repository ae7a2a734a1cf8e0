"""What the watches deliver, kept in memory: an informer-style view of the DeploymentEmbeddings,
their Jobs and their pods, so a reconcile plans without reading the API.

kopf already lists and watches these three kinds for the handlers; each raw event is folded in
here (``observe``: DELETED removes, anything else stores), and the controller stores what its own
writes return (``stored``), so the next plan does not act on what it just changed.

Newer wins, by ``resourceVersion`` compared as integers. Kubernetes calls resourceVersions opaque,
but the apiserver's are etcd revisions, which only grow; comparing them is a heuristic that keeps
an older watch event (in flight while the operator wrote) from overwriting the body the write
returned, which would cost the next reconcile a conflict and a re-read. Where a version is not an
integer, the incoming object wins (the watch is truth, as in client-go). Either way nothing
depends on the cache being current: the status patch carries the resourceVersion it was planned
from (a stale plan meets 409 Conflict and the controller re-reads), and destructive plans are
confirmed against the API first (``loop``).

Bodies are stored slim: no ``managedFields`` (half of a small object's bytes), no vectors (a
finished resource's ``status.result`` carries its embeddings: the controller never reads them),
and of Jobs and pods only metadata and status (what ``reconcile.plan`` reads). Stored objects are
never mutated, only replaced, so readers get them without copying. Thread-safe: kopf's handlers
write on the event loop while reconciles read and write on their threads.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Literal

from embedding_operator.api import names

Obj = dict[str, Any]
Key = tuple[str, str]
Kind = Literal["resource", "job", "pod"]

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
"""Set on every pod by the Job controller: the index of pods by Job."""


def _version(obj: Obj) -> int | None:
    try:
        return int(obj["metadata"].get("resourceVersion") or "")
    except ValueError:
        return None


def _newer(new: Obj, old: Obj | None) -> bool:
    """Whether ``new`` should replace ``old`` (see the module docstring)."""
    if old is None or new["metadata"].get("uid") != old["metadata"].get("uid"):
        return True
    new_version, old_version = _version(new), _version(old)
    return new_version is None or old_version is None or new_version >= old_version


def _same(new: Obj, old: Obj | None) -> bool:
    """The very version already held (the echo of the operator's own write, say)."""
    return (
        old is not None
        and new["metadata"].get("uid") == old["metadata"].get("uid")
        and new["metadata"].get("resourceVersion") == old["metadata"].get("resourceVersion")
    )


VECTOR_FIELDS = ("inline", "embeddings")
"""The fields of ``status.result`` that hold the vectors (base64, or 0.1's JSON numbers): both
optional, so the slim result still parses as a ``Result``."""


def slim(kind: Kind, obj: Obj) -> Obj:
    """``obj`` without what the controller never reads (a new dict; ``obj`` is not changed)."""
    meta = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    if kind != "resource":
        return {"metadata": meta, "status": obj.get("status") or {}}
    out = {**obj, "metadata": meta}
    status = obj.get("status") or {}
    if isinstance(status.get("result"), dict):
        result = {k: v for k, v in status["result"].items() if k not in VECTOR_FIELDS}
        out["status"] = {**status, "result": result}
    return out


def _key(obj: Obj) -> Key:
    return obj["metadata"].get("namespace") or "", obj["metadata"]["name"]


def owner(obj: Obj) -> Key:
    """(namespace, name) of the DeploymentEmbedding a Job or pod belongs to, by its label (name
    empty when it has none)."""
    labels = obj["metadata"].get("labels") or {}
    return obj["metadata"].get("namespace") or "", labels.get(names.OWNER_LABEL, "")


class Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._resources: dict[Key, Obj] = {}
        self._jobs: dict[Key, Obj] = {}
        self._pods: dict[Key, dict[str, Obj]] = {}
        """(namespace, Job name) -> pod name -> pod."""

    def observe(self, kind: Kind, event_type: str | None, obj: Obj) -> bool:
        """Fold in one watch event (``event_type`` None: kopf's initial listing); whether it
        told anything new. An event of a version already held (the echo of the operator's own
        write, whose answer is stored) or older tells nothing: no reconcile is needed for it, so
        a write never triggers the reconcile that would skip a failed run's backoff."""
        if event_type == "DELETED":
            return self._delete(kind, obj)
        return self._store(kind, slim(kind, obj), insert=True)

    def replace(self, kind: Kind, namespace: str | None, objs: Iterable[Obj]) -> set[Key]:
        """A LIST's answer (of ``namespace``, or of the whole cluster when None) for ``kind``
        (a Job or pod): what it does not hold was deleted meanwhile. The resources whose Jobs or
        pods changed, by their owner label. One pass: ``objs`` may be fetched as it goes."""
        listed: set[Key] = set()
        owners: set[Key] = set()
        for obj in objs:
            listed.add(_key(obj))
            if self.observe(kind, None, obj):
                owners.add(owner(obj))
        with self._lock:
            if kind == "job":
                held = [o for k, o in self._jobs.items() if namespace in (None, k[0])]
            else:
                held = [
                    o
                    for k, group in self._pods.items()
                    if namespace in (None, k[0])
                    for o in group.values()
                ]
        for obj in held:
            if _key(obj) not in listed and self._delete(kind, obj):
                owners.add(owner(obj))
        return {o for o in owners if o[1]}

    def stored(self, kind: Kind, obj: Obj, *, insert: bool = False, force: bool = False) -> None:
        """Store what a write (or a read) of the controller returned. A resource is only replaced,
        never added (``insert``): one deleted meanwhile must not come back from a late write.
        ``force``: the API's answer wins even over a higher version (a re-read after a
        conflict is the truth, whatever the versions say)."""
        self._store(kind, slim(kind, obj), insert=insert, force=force)

    def resource(self, namespace: str, name: str) -> Obj | None:
        return self._resources.get((namespace, name))

    def job(self, namespace: str, name: str) -> Obj | None:
        return self._jobs.get((namespace, name))

    def pods(self, namespace: str, job: str) -> list[Obj]:
        with self._lock:
            return list(self._pods.get((namespace, job), {}).values())

    def resources(self) -> list[Obj]:
        with self._lock:
            return list(self._resources.values())

    def sizes(self) -> tuple[int, int, int]:
        """(resources, Jobs, pods) held."""
        with self._lock:
            return (
                len(self._resources),
                len(self._jobs),
                sum(len(p) for p in self._pods.values()),
            )

    def _store(self, kind: Kind, obj: Obj, *, insert: bool, force: bool = False) -> bool:
        """Whether ``obj`` was stored and differs from what was held."""
        namespace, name = _key(obj)
        with self._lock:
            table: dict[Any, Obj]
            slot: Any  # a pod name, or a (namespace, name)
            if kind == "pod":
                job = (obj["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
                if not job:
                    return False
                table, slot = self._pods.setdefault((namespace, job), {}), name
            else:
                table = self._resources if kind == "resource" else self._jobs
                slot = (namespace, name)
            old = table.get(slot)
            if (old is None and not insert) or not (force or _newer(obj, old)):
                return False
            table[slot] = obj
            return not _same(obj, old)

    def _delete(self, kind: Kind, obj: Obj) -> bool:
        key = _key(obj)
        with self._lock:
            if kind == "resource":
                return self._resources.pop(key, None) is not None
            if kind == "job":
                return self._jobs.pop(key, None) is not None
            job = (obj["metadata"].get("labels") or {}).get(JOB_NAME_LABEL, "")
            group = self._pods.get((key[0], job))
            if group is None or group.pop(key[1], None) is None:
                return False
            if not group:
                del self._pods[key[0], job]
            return True
