"""The one Kubernetes boundary: a small JSON client shared by the controller, the worker and the
stores, with a few verbs (``request``, ``get``, ``list``, ``create``, ``patch``, ``apply``,
``delete``, ``watch``).

Why httpx under it (measured by ``benchmarks/kube_client.py``, figures in docs/performance.md):
the callers block today (reconciles on a thread pool, the worker), and httpx's sync client was
as fast as the generated ``kubernetes`` client (0.84-1.29x its calls per second one at a time,
1.02-1.20x at 16 concurrent, two runs on a loaded 2-core machine) and ``kubernetes.dynamic``
(0.60-1.21x / 1.25-1.27x) while being a small, well-kept HTTP library instead of generated-client
internals, whose request internals changed shape between releases (``param_serialize`` exists
only from kubernetes 37 on). Tests plug an in-memory API in as an ``httpx`` transport
(``tests/fake_kube.py``). For an async reconcile (issue 12), httpx's AsyncClient measured poorly
under concurrency (0.27-0.30x) while aiohttp, kopf's own transport, held up (0.64-1.08x): an
async boundary should go over aiohttp and keep this module's rules (``error_of``, ``backoff``,
``KubeError.transient``), which do not depend on the transport. The ``kubernetes`` package is
used only to *load configuration* (kubeconfig, in-cluster service account, exec plugins), its
public, stable API. Objects stay plain dicts: the objects this project builds are dicts (pure
builder functions), and generated model classes would add a second shape to keep in sync.

Every call has a timeout; transient failures (429 with ``Retry-After``, 5xx, dropped or refused
connections, timeouts) are retried with tenacity within a time budget; every write names the
field manager, so ``managedFields`` tells the operator's writes from the worker's.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import tenacity

from embedding_operator.api import names

log = logging.getLogger(__name__)

Obj = dict[str, Any]

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class KubeError(Exception):
    """An API error: ``status`` is the HTTP code (0 when no answer came), ``reason`` the Status
    reason (e.g. Conflict)."""

    def __init__(self, status: int, reason: str, message: str, retry_after: float = 0.0) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Whether the same request may succeed later without anyone changing anything."""
        return self.status == 0 or self.status in TRANSIENT_STATUS


@dataclass(frozen=True)
class RetryPolicy:
    """Per-call timeout and the budget for retrying transient failures."""

    timeout: float = 10.0
    """Seconds for one request (connect, send, wait for the answer)."""
    budget: float = 30.0
    """Seconds, all attempts of one call together; then the last error is raised."""
    initial_backoff: float = 0.2
    max_backoff: float = 5.0


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:  # an HTTP date: rare from the apiserver; back off normally
        return 0.0


def error_of(response: httpx.Response) -> KubeError:
    """The KubeError a non-2xx answer stands for (from its Status body when it has one)."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    payload = payload if isinstance(payload, dict) else {}
    return KubeError(
        response.status_code,
        payload.get("reason") or response.reason_phrase or "Unknown",
        payload.get("message") or response.text[:1024],
        _retry_after(response),
    )


def backoff(initial: float, cap: float) -> Callable[[tenacity.RetryCallState], float]:
    """Capped exponential backoff with jitter, at least what a 429's ``Retry-After`` asks for
    (itself capped, so a confused server cannot park a caller for an hour)."""

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        hinted = min(error.retry_after, cap * 4) if isinstance(error, KubeError) else 0.0
        exponential = min(cap, initial * 2.0 ** (state.attempt_number - 1))
        return max(hinted, exponential * random.uniform(0.5, 1.0))  # noqa: S311 (jitter)

    return wait


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, KubeError) and error.transient


@dataclass(frozen=True)
class Connection:
    """Where the API is and how to authenticate: what a kubeconfig or a pod's service account
    says, in the shape httpx takes."""

    host: str
    verify: ssl.SSLContext | bool = True
    cert: tuple[str, str] | None = None
    token: Callable[[], str | None] = lambda: None

    @classmethod
    def from_environment(cls, kubeconfig: str | None = None) -> Connection:
        """``kubeconfig``, else $KUBECONFIG or ~/.kube/config when there is one, else the pod's
        in-cluster service account."""
        from kubernetes import client, config

        configuration = client.Configuration()
        kubeconfig = (
            kubeconfig or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        )
        if os.path.exists(kubeconfig.split(os.pathsep)[0]):
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration
            )
        else:
            config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        verify: ssl.SSLContext | bool = bool(configuration.verify_ssl)
        if configuration.verify_ssl and configuration.ssl_ca_cert:
            verify = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        cert = (
            (configuration.cert_file, configuration.key_file)
            if configuration.cert_file and configuration.key_file
            else None
        )

        def token() -> str | None:
            # auth_settings() runs the refresh hook (rotated service-account tokens, exec
            # plugins) and yields "Bearer <token>" when there is one.
            setting: Any = configuration.auth_settings().get("BearerToken") or {}
            value = setting.get("value")
            return str(value) if value else None

        return cls(host=configuration.host, verify=verify, cert=cert, token=token)


class _BearerAuth(httpx.Auth):
    def __init__(self, token: Callable[[], str | None]) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        value = self._token()
        if value:
            request.headers["Authorization"] = (
                value if value.lower().startswith("bearer ") else f"Bearer {value}"
            )
        yield request


LIST_PAGE = 500
"""Objects per page of the LISTs that fill a cache (client-go's reflector pages by 500 too): a
restart on thousands of runs holds one page of full objects at a time, not every Job and pod."""
CONNECTIONS = 32
"""Connections to kube-apiserver at most, all of them kept alive. Keeping fewer alive than may be
open costs a TLS handshake per request once more are open (httpcore 1.0 closes an idle connection
whenever the pool holds more than the keep-alive limit, busy ones included). At 16 of 32, a
burst's 16 reconciles, the Event poster and the two watches opened a new connection for most
requests: a burst of 1,000 runs cost the operator 17.0 CPU s instead of 12.7
(docs/performance.md)."""


class Kube:
    """The Kubernetes API as six verbs on plain dicts (see the module docstring).

    ``field_manager`` names this client's writes in ``managedFields``; ``policy`` bounds every
    call in time. ``transport`` replaces the network (tests pass an in-memory API).
    """

    def __init__(
        self,
        connection: Connection,
        *,
        field_manager: str,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.field_manager = field_manager
        self.policy = policy or RetryPolicy()
        self._http = httpx.Client(
            base_url=connection.host,
            verify=connection.verify,
            cert=connection.cert,
            auth=_BearerAuth(connection.token),
            timeout=self.policy.timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
        )

    @classmethod
    def from_environment(
        cls, field_manager: str, policy: RetryPolicy | None = None, kubeconfig: str | None = None
    ) -> Kube:
        return cls(
            Connection.from_environment(kubeconfig), field_manager=field_manager, policy=policy
        )

    def close(self) -> None:
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> Any:
        """One API call, retried while its failure is transient and the budget lasts."""
        params = dict(query or {})
        if method in ("POST", "PUT", "PATCH"):
            params.setdefault("fieldManager", self.field_manager)
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = content_type
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_is_transient),
            wait=backoff(self.policy.initial_backoff, self.policy.max_backoff),
            stop=tenacity.stop_after_delay(self.policy.budget),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                return self._send(method, path, body, params, headers)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _send(
        self, method: str, path: str, body: Any, params: dict[str, str], headers: dict[str, str]
    ) -> Any:
        try:
            response = self._http.request(method, path, params=params, headers=headers, json=body)
        except httpx.TimeoutException as e:
            raise KubeError(0, "Timeout", f"{method} {path}: no answer in time ({e})") from e
        except httpx.TransportError as e:
            raise KubeError(0, "ConnectionError", f"{method} {path}: {e}") from e
        if not response.is_success:
            raise error_of(response)
        return response.json() if response.content else None

    def watch(self, path: str, resource_version: str, seconds: int, **query: str) -> Iterator[Obj]:
        """The events (``{"type", "object"}``) of a WATCH of ``path`` from ``resource_version``,
        with bookmarks, until kube-apiserver ends it after ``seconds``. Not retried: a dropped
        connection is a KubeError with status 0, and the caller resumes from the last version it
        saw (or relists, after a 410 Gone): ``list_and_watch`` does both."""
        params = {
            **query,
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        timeout = httpx.Timeout(self.policy.timeout, read=seconds + self.policy.timeout)
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if not response.is_success:
                    response.read()
                    raise error_of(response)
                for line in response.iter_lines():
                    if line:
                        yield json.loads(line)
        except httpx.TimeoutException as e:
            raise KubeError(0, "Timeout", f"WATCH {path}: no event in time ({e})") from e
        except httpx.TransportError as e:
            raise KubeError(0, "ConnectionError", f"WATCH {path}: {e}") from e

    def get(self, path: str, **query: str) -> Obj | None:
        """The object at ``path``, or None when it does not exist."""
        try:
            obj: Obj = self.request("GET", path, query=query or None)
        except KubeError as e:
            if e.status == 404:
                return None
            raise
        return obj

    def list(self, path: str, **query: str) -> list[Obj]:
        items: list[Obj] = self.request("GET", path, query=query or None)["items"]
        return items

    def list_pages(self, path: str, **query: str) -> tuple[str, Iterator[Obj]]:
        """A LIST of ``path`` a page of ``LIST_PAGE`` at a time, as client-go's reflector lists:
        the list's resourceVersion (every page is of the first one's snapshot) and its items,
        each later page fetched only once the one before is consumed. A page that fails (a 410
        when its continue token expired) raises from the iteration, as a failed LIST would."""
        first = self.request("GET", path, query={**query, "limit": str(LIST_PAGE)})

        def items(page: Obj) -> Iterator[Obj]:
            while True:
                yield from page.pop("items")
                token = page["metadata"].get("continue")
                if not token:
                    return
                query_ = {**query, "limit": str(LIST_PAGE), "continue": token}
                page = self.request("GET", path, query=query_)

        return str(first["metadata"]["resourceVersion"]), items(first)

    def create(self, path: str, body: Obj) -> Obj | None:
        """Create; None when an object of that name already exists (creation is idempotent)."""
        try:
            obj: Obj = self.request("POST", path, body)
        except KubeError as e:
            if e.status == 409 and e.reason == "AlreadyExists":
                return None
            raise
        return obj

    def patch(self, path: str, body: Obj) -> Obj:
        obj: Obj = self.request("PATCH", path, body, content_type=MERGE_PATCH)
        return obj

    def apply(self, path: str, body: Obj) -> Obj:
        """Server-side apply ``body`` (a whole object) as this client's field manager: creates it
        when missing, takes over the fields it sets (force) otherwise."""
        obj: Obj = self.request(
            "PATCH", path, body, query={"force": "true"}, content_type=APPLY_PATCH
        )
        return obj

    def delete(self, path: str, propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            self.request("DELETE", path, {"propagationPolicy": propagation})
        except KubeError as e:
            if e.status == 404:
                return False
            raise
        return True


def owner_reference(body: Obj, *, block_owner_deletion: bool = False) -> Obj:
    """An ownerReference to the DeploymentEmbedding ``body``: what it owns is garbage-collected
    with it. Blocking foreground deletion needs update rights on the owner's finalizers, so only
    the operator, which has them, asks for it."""
    meta = body["metadata"]
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


def resource_path(namespace: str, name: str | None = None, subresource: str | None = None) -> str:
    path = f"/apis/{names.GROUP}/{names.VERSION}/namespaces/{quote(namespace)}/{names.PLURAL}"
    if name:
        path += f"/{quote(name)}"
    if subresource:
        path += f"/{subresource}"
    return path


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/api/v1/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def group_path(group_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/apis/{group_version}/namespaces/{quote(namespace)}/{plural}"
    return f"{path}/{quote(name)}" if name else path


def api_path(api_version: str, namespace: str | None, plural: str, name: str | None = None) -> str:
    """``core_path`` or ``group_path`` by ``api_version``; ``namespace`` None: the collection
    across the whole cluster."""
    if namespace is None:
        return f"/api/v1/{plural}" if api_version == "v1" else f"/apis/{api_version}/{plural}"
    if api_version == "v1":
        return core_path(namespace, plural, name)
    return group_path(api_version, namespace, plural, name)


WATCH_SECONDS = 300
"""Server-side length of one watch request (then it resumes from the last version seen)."""


def list_and_watch(
    kube: Kube,
    path: str,
    listed: Callable[[Iterable[Obj], str], None],
    changed: Callable[[str, Obj], None],
    stopped: threading.Event,
    *,
    resume: str | None = None,
    seconds: int = WATCH_SECONDS,
    **query: str,
) -> None:
    """LIST ``path``, then WATCH it from the list's version until ``stopped`` is set (client-go's
    reflector, for a thread of its own): resume from the last version seen when a watch ends,
    relist at once on 410 Gone (that version is compacted away), back off while kube-apiserver
    is unreachable, and after anything unexpected (a malformed event, a callback's bug) back off
    and relist rather than let the thread die: a dead watch would leave its caller's copy
    silently stale. ``listed(items, version)`` gets each LIST's whole answer, fetched page by
    page as it iterates (``Kube.list_pages``; it replaces what was known), ``changed(type,
    object)`` every watch event but errors (ADDED, MODIFIED, DELETED and BOOKMARK). ``resume``:
    a version already listed by the caller, to watch from first."""
    failures = 0
    while not stopped.is_set():
        try:
            if resume is None:
                version, items = kube.list_pages(path, **query)
                listed(items, version)
                resume = version
            for event in kube.watch(path, resume, seconds, **query):
                failures = 0
                obj = event["object"]
                if event["type"] == "ERROR":
                    raise KubeError(obj.get("code", 0), obj.get("reason", ""), str(obj))
                resume = obj["metadata"]["resourceVersion"]
                changed(event["type"], obj)
                if stopped.is_set():
                    return
            continue  # the watch ended in time: resume from the last version seen
        except KubeError as e:
            if e.status == 410:  # Gone: too old to resume from; relist at once
                resume = None
                continue
            log.warning("watch of %s: %s; again shortly", path, e)
        except Exception:
            log.exception("watch of %s failed; listing again shortly", path)
            resume = None
        failures += 1
        stopped.wait(min(30.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0))  # noqa: S311


def post_event(kube: Kube, body: Obj, type_: str, reason: str, message: str, stamp: str) -> None:
    """A core/v1 Event on the resource (what ``kubectl describe`` shows); ``stamp`` is the
    caller's clock reading (RFC 3339)."""
    meta = body["metadata"]
    component = kube.field_manager
    kube.create(
        core_path(meta["namespace"], "events"),
        {
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": names.API_VERSION,
                "kind": names.KIND,
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": os.environ.get("HOSTNAME", component),
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        },
    )
