"""An in-memory Kubernetes API for the fast tests of the glue (controller, worker, stores).

It plugs into the real boundary as an ``httpx`` transport, so every test exercises
``embedding_operator.kube.Kube`` itself (paths, query parameters, errors, retries, field
managers). It keeps what the glue relies on and nothing more: uid, resourceVersion (a write
with a stale one is a 409 Conflict), generation (bumped by spec changes), the status subresource
apart from the main resource, 404 and 409 AlreadyExists, generateName, label and field selectors,
merge patch and server-side apply. No watch, no admission, no garbage collection: tests that
need those run against the real control plane (tests/cluster).

``fail(...)`` injects answers (429 with Retry-After, 5xx, 403, 422) or dropped connections for
the next matching requests; ``requests`` records what was sent.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import httpx

from embedding_operator.kube import Connection, Kube, RetryPolicy

Obj = dict[str, Any]

_OBJECT = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+/[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$"
)
_REASONS = {
    403: "Forbidden",
    409: "Conflict",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
}
FAST = RetryPolicy(timeout=1.0, budget=2.0, initial_backoff=0.001, max_backoff=0.01)


@dataclass
class Fault:
    method: str
    path: str  # a substring of the request path
    status: int  # 0: the connection drops
    times: int
    retry_after: str | None = None
    message: str = "injected"
    after: int = 0  # matching requests let through first


@dataclass
class Request:
    method: str
    path: str
    params: dict[str, str]
    body: Any


@dataclass
class FakeApi:
    objects: dict[tuple[str, str, str, str], Obj] = field(default_factory=dict)
    """(api group/version, plural, namespace, name) -> object."""
    requests: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- test helpers -------------------------------------------------------------------------

    def kube(self, field_manager: str = "test", policy: RetryPolicy = FAST) -> Kube:
        return Kube(
            Connection(host="http://fake-api"),
            field_manager=field_manager,
            policy=policy,
            transport=httpx.MockTransport(self.handle),
        )

    def fail(
        self,
        method: str,
        path: str,
        status: int,
        times: int = 1,
        retry_after: str | None = None,
        message: str = "injected",
        after: int = 0,
    ) -> None:
        self.faults.append(Fault(method, path, status, times, retry_after, message, after))

    def put(self, api: str, plural: str, obj: Obj) -> Obj:
        """Store ``obj`` as a client would create it (uid, resourceVersion, timestamps)."""
        meta = obj.setdefault("metadata", {})
        return self._create(api, plural, meta.get("namespace", ""), obj, "test")

    def find(self, api: str, plural: str, namespace: str, name: str) -> Obj | None:
        return self.objects.get((api, plural, namespace, name))

    def all(self, api: str, plural: str, namespace: str | None = None) -> list[Obj]:
        return [
            o
            for (a, p, ns, _), o in self.objects.items()
            if a == api and p == plural and namespace in (None, ns)
        ]

    def remove(self, api: str, plural: str, namespace: str, name: str) -> None:
        del self.objects[api, plural, namespace, name]

    # -- the API ------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        params = dict(request.url.params)
        body = json.loads(request.content) if request.content else None
        self.requests.append(Request(request.method, path, params, body))
        for fault in self.faults:
            if fault.times > 0 and fault.method == request.method and fault.path in path:
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                if fault.status == 0:
                    raise httpx.ConnectError("injected: connection refused", request=request)
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                reason = _REASONS.get(fault.status, "Injected")
                return _status(fault.status, reason, fault.message, headers)
        m = _OBJECT.match(path)
        if not m:
            return _status(404, "NotFound", f"no route {path}")
        api = m["group"] or "v1"
        ns, plural, name, sub = m["ns"] or "", m["plural"], m["name"], m["sub"]
        manager = params.get("fieldManager", "")
        if request.method == "GET" and name:
            obj = self.find(api, plural, ns, name)
            return _ok(obj) if obj else _status(404, "NotFound", f'{plural} "{name}" not found')
        if request.method == "GET":
            items = [o for o in self.all(api, plural, ns or None) if _selected(o, params)]
            listed = {"resourceVersion": str(next(self._versions))}
            if "limit" in params:  # kube-apiserver's pages: ``continue`` resumes after the last
                start = int(params.get("continue") or 0)
                end = start + int(params["limit"])
                if end < len(items):
                    listed["continue"] = str(end)
                items = items[start:end]
            return _ok({"kind": "List", "metadata": listed, "items": copy.deepcopy(items)})
        if request.method == "POST":
            assert body is not None
            if (
                ("metadata" in body)
                and (body["metadata"].get("name") or "")
                and self.find(api, plural, ns, body["metadata"]["name"])
            ):
                return _status(
                    409, "AlreadyExists", f'{plural} "{body["metadata"]["name"]}" exists'
                )
            return _ok(self._create(api, plural, ns, body, manager), 201)
        if request.method == "DELETE" and not name:  # deletecollection
            for obj in [o for o in self.all(api, plural, ns) if _selected(o, params)]:
                self.remove(api, plural, ns, obj["metadata"]["name"])
            return _ok({"kind": "Status", "status": "Success"})
        assert name is not None
        current = self.find(api, plural, ns, name)
        if request.method == "DELETE":
            if current is None:
                return _status(404, "NotFound", f'{plural} "{name}" not found')
            self.remove(api, plural, ns, name)
            return _ok({"kind": "Status", "status": "Success"})
        if request.method == "PATCH" and "apply-patch" in request.headers["content-type"]:
            if current is None:
                return _ok(self._create(api, plural, ns, body, manager), 201)
            return self._update(current, body, sub, manager, merge=True)
        if current is None:
            return _status(404, "NotFound", f'{plural} "{name}" not found')
        return self._update(current, body, sub, manager, merge=request.method == "PATCH")

    def _create(self, api: str, plural: str, ns: str, body: Obj, manager: str) -> Obj:
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            meta["name"] = meta.get("generateName", "obj-") + uuid.uuid4().hex[:5]
        if ns:
            meta["namespace"] = ns
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(next(self._versions)),
            generation=1,
            creationTimestamp=meta.get("creationTimestamp", "2026-11-28T12:00:00Z"),
            managedFields=[{"manager": manager, "operation": "Update"}],
        )
        self.objects[api, plural, ns, meta["name"]] = obj
        return copy.deepcopy(obj)

    def _update(
        self, current: Obj, body: Obj, sub: str | None, manager: str, *, merge: bool
    ) -> httpx.Response:
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        meta = current["metadata"]
        if wanted and wanted != meta["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified; please try again")
        if sub == "status":
            body = {"status": body.get("status")}
        else:
            body = {k: v for k, v in body.items() if k != "status"}
        updated = _merge(current, body) if merge else {**copy.deepcopy(body)}
        if not merge:
            updated["metadata"] = {**meta, **(body.get("metadata") or {})}
            if "status" in current:
                updated["status"] = current["status"]
        if updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = meta.get("generation", 1) + 1
        updated["metadata"]["resourceVersion"] = str(next(self._versions))
        updated["metadata"]["uid"] = meta["uid"]
        managers = updated["metadata"].setdefault("managedFields", [])
        if manager and all(f["manager"] != manager for f in managers):
            managers.append({"manager": manager, "operation": "Update"})
        current.clear()
        current.update(updated)
        return _ok(copy.deepcopy(current))


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out


def _field(obj: Obj, dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _selected(obj: Obj, params: dict[str, str]) -> bool:
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, params.get("labelSelector", "").split(",")):
        key, equals, value = term.partition("=")
        if (labels.get(key) != value) if equals else (key not in labels):  # key=value, or key
            return False
    for term in filter(None, params.get("fieldSelector", "").split(",")):
        key, _, value = term.partition("=")
        if str(_field(obj, key) or "") != value:
            return False
    return True


def _ok(obj: Any, code: int = 200) -> httpx.Response:
    return httpx.Response(code, json=obj)


def _status(
    code: int, reason: str, message: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"kind": "Status", "status": "Failure", "reason": reason, "message": message}
    return httpx.Response(code, json=body, headers=headers or {})
