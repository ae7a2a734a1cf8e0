"""The aggregated API server: the seed's REST paths over the DeploymentEmbedding resources.

The custom resources are the only store: every change is written to them through kube-apiserver,
with the server's own ServiceAccount, after the caller was authenticated and a
SubjectAccessReview allowed the call (:mod:`.auth`; outcomes reused for seconds, as kube's
delegating authorizer does). Lists without vectors are answered from a watch-fed copy of the
resources (:mod:`.cache`), everything else from a fresh read. The
:class:`~embedding_operator.kube.Kube` client is synchronous, so its calls run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from embedding_operator.api import names
from embedding_operator.api.types import Result
from embedding_operator.kube import Kube, KubeError, resource_path
from embedding_operator.restapi import discovery, records
from embedding_operator.restapi.auth import (
    Access,
    RequestHeaderConfig,
    ReviewCache,
    User,
    access_key,
    access_review,
    bearer_token,
    denial,
    proxied_user,
    reviewed_user,
    token_key,
    token_review,
)
from embedding_operator.restapi.cache import ResourceCache
from embedding_operator.restapi.errors import ApiError, not_found, status_body
from embedding_operator.restapi.metrics import LATENCY, REQUESTS
from embedding_operator.storage import DigestMismatchError, result_array, to_lists

log = logging.getLogger("embedding_operator.restapi")

CONFLICT_RETRIES = 5
MAX_BODY_BYTES = 3 * 1024 * 1024
"""Request bodies: kube-apiserver's own limit; a valid spec (at most 1,000,000 characters of
inputs) fits with room to spare."""
TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
Obj = dict[str, Any]
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status)


def error_response(error: ApiError) -> web.Response:
    return _json(status_body(error.code, error.reason, error.message), error.code)


class StaleRead(ApiError):
    """A write conditional on a resourceVersion that has moved on since the read."""


def upstream_error(e: KubeError) -> ApiError:
    """kube-apiserver's refusal of the server's own call, for the client."""
    if e.status == 409 and e.reason == "Conflict":
        return StaleRead(409, e.message, e.reason)
    if e.status in (400, 404, 409, 422):
        return ApiError(400 if e.status == 422 else e.status, e.message, e.reason)
    if e.status == 403:  # the admission policy, or this server's ServiceAccount lacks a right
        return ApiError(403, e.message, e.reason)
    if e.status == 0:  # no answer (refused, reset, timed out), after kube.py's retries
        return ApiError(503, f"kube-apiserver is unreachable: {e.message}")
    return ApiError(503, f"kube-apiserver answered {e.status} {e.reason}: {e.message}")


class RestApi:
    """The REST paths' handlers over the custom resources (which stay the only store)."""

    def __init__(
        self,
        kube: Kube,
        requestheader: RequestHeaderConfig,
        max_body: int = MAX_BODY_BYTES,
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.kube = kube
        self.requestheader = requestheader
        self.max_body = max_body
        self.namespaces = frozenset(namespaces)
        """The namespaces served (the chart's watchNamespaces, where its Roles are); all when
        empty."""
        self.cache = ResourceCache(kube, namespaces or None)
        self.reviews = ReviewCache()

    # -- kube-apiserver ------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except KubeError as e:
            raise upstream_error(e) from None

    async def by_name(self, namespace: str, name: str) -> Obj:
        obj = await self.call(self.kube.get, resource_path(namespace, name))
        if obj is None:
            raise not_found(f'"{name}"')
        return obj

    async def by_id(self, namespace: str, uid: str) -> Obj:
        """Read fresh; the cache only says which name to read (a uid it does not know yet, e.g.
        of a resource created moments ago by someone else, costs a LIST)."""
        name = self.cache.name_of(namespace, uid)
        if name is not None:
            obj = await self.call(self.kube.get, resource_path(namespace, name))
            if obj is not None and obj["metadata"].get("uid") == uid:
                return obj
        items = await self.call(self.kube.list, resource_path(namespace))
        for obj in items:
            if obj["metadata"].get("uid") == uid:
                return obj
        raise not_found(f'with id "{uid}"')

    async def embeddings(self, obj: Obj) -> list[list[float]] | None:
        """The vectors of a completed run as numbers: decoded from the status (base64, or the
        JSON numbers 0.1 wrote) or reassembled from the chunks, size and digest checked."""
        raw = (obj.get("status") or {}).get("result")
        if not raw or obj["status"].get("phase") != "Completed":
            return None
        from embedding_operator.storage.configmaps import load_result

        result = Result.model_validate(raw)
        namespace = obj["metadata"]["namespace"]
        try:
            if result.storage is None:
                array = result_array(result)
            else:
                array = await self.call(load_result, self.kube, namespace, result)
        except (DigestMismatchError, FileNotFoundError) as e:
            raise ApiError(500, f"the stored result cannot be returned: {e}") from None
        return to_lists(array)

    async def record(self, obj: Obj, *, with_result: bool = True) -> Obj:
        rows = await self.embeddings(obj) if with_result else None
        return records.record(obj, rows, with_result=with_result)

    # -- who and may they ----------------------------------------------------------------

    async def user(self, request: web.Request) -> User:
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        user = proxied_user(self.requestheader, peercert, request.headers)
        if user is not None:
            return user
        token = bearer_token(request.headers)
        if token is not None:
            key = token_key(token)
            reviewed = self.reviews.get(key)
            if reviewed is None:
                review = await self.call(
                    self.kube.request, "POST", TOKEN_REVIEWS, token_review(token)
                )
                reviewed = (reviewed_user(review),)
                self.reviews.put(key, reviewed)
            if reviewed[0] is not None:
                return reviewed[0]
        raise ApiError(401, "Unauthorized")

    async def authorize(self, request: web.Request, access: Access) -> User:
        user = await self.user(request)
        if self.namespaces and access.namespace not in self.namespaces:
            raise ApiError(
                404,
                f'namespace "{access.namespace}" is not served by this REST API: its install '
                "serves a fixed list of namespaces (the chart's watchNamespaces)",
            )
        key = access_key(user, access)
        decided = self.reviews.get(key)
        if decided is None:
            review = await self.call(
                self.kube.request, "POST", ACCESS_REVIEWS, access_review(user, access)
            )
            decided = (denial(user, access, review),)
            self.reviews.put(key, decided)
        if decided[0] is not None:
            raise ApiError(403, decided[0])
        return user

    async def body(self, request: web.Request) -> Obj:
        if request.content_length is not None and request.content_length > self.max_body:
            raise self.too_large()
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise self.too_large() from None
        return records.parse_json(raw)

    def too_large(self) -> ApiError:
        return ApiError(
            413,
            f"the body is over the limit of {self.max_body} bytes; split the inputs over "
            "several records",
        )

    # -- the paths -----------------------------------------------------------------------

    async def list(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        query = records.ListQuery.parse(request.query)
        await self.authorize(request, Access("list", namespace))
        if await self.cache.caught_up(namespace):
            items = self.cache.items(namespace)
        else:  # not listed yet, or lagging behind this server's own write
            items = await self.call(self.kube.list, resource_path(namespace))
        page, total, token = query.select(items)
        if query.with_result:  # vectors: read fresh (the cache keeps none)
            fresh = await asyncio.gather(
                *(
                    self.call(self.kube.get, resource_path(namespace, o["metadata"]["name"]))
                    for o in page
                )
            )
            page = [o for o in fresh if o is not None]
        out = [
            records.pick(await self.record(o, with_result=query.with_result), query.fields)
            for o in page
        ]
        body: Obj = {
            "items": out,
            "total": total,
            "page": query.page if query.after is None else None,
            "limit": query.limit,
            "metadata": {"continue": token} if token else {},
        }
        return _json(body)

    async def create(self, request: web.Request) -> web.Response:
        namespace = request.match_info["namespace"]
        await self.authorize(request, Access("create", namespace))
        name, spec = records.creation(await self.body(request))
        obj = {
            "apiVersion": names.API_VERSION,
            "kind": names.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
        created = await self.call(self.kube.create, resource_path(namespace), obj)
        if created is None:
            raise ApiError(409, f'deployment embedding "{name}" already exists', "AlreadyExists")
        self.cache.wrote(created)
        return _json(await self.record(created), 201)

    async def get(self, request: web.Request) -> web.Response:
        namespace, uid = request.match_info["namespace"], request.match_info["id"]
        fields = records.parse_fields(request.query)
        await self.authorize(request, Access("get", namespace))
        obj = await self.by_id(namespace, uid)
        return await self.one(request, obj, fields)

    async def get_by_name(self, request: web.Request) -> web.Response:
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        fields = records.parse_fields(request.query)
        await self.authorize(request, Access("get", namespace, name))
        return await self.one(request, await self.by_name(namespace, name), fields)

    async def one(
        self, request: web.Request, obj: Obj, fields: tuple[str, ...] | None
    ) -> web.Response:
        with_result = records.include_result(request.query, default=True)
        return _json(records.pick(await self.record(obj, with_result=with_result), fields))

    async def conditionally(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Read, check, write with the read's resourceVersion; again when the write lost a race
        (the operator writes statuses all the time), so every check sees the current object."""
        for _ in range(CONFLICT_RETRIES - 1):
            with contextlib.suppress(StaleRead):
                return await attempt()
        return await attempt()

    async def update(self, request: web.Request) -> web.Response:
        namespace, uid = request.match_info["namespace"], request.match_info["id"]
        await self.authorize(request, Access("update", namespace))
        body = await self.body(request)

        async def attempt() -> Obj:
            obj = await self.by_id(namespace, uid)
            if records.phase_of(obj) == "running":
                raise ApiError(409, "cannot update running jobs; cancel the run or wait for it")
            meta = obj["metadata"]
            patch = {"metadata": {"resourceVersion": meta["resourceVersion"]}}
            patch["spec"] = records.update(body, obj)
            path = resource_path(namespace, meta["name"])
            updated: Obj = await self.call(self.kube.patch, path, patch)
            self.cache.wrote(updated)
            return updated

        return _json(await self.record(await self.conditionally(attempt)))

    async def delete(self, request: web.Request) -> web.Response:
        namespace, uid = request.match_info["namespace"], request.match_info["id"]
        await self.authorize(request, Access("delete", namespace))

        async def attempt() -> Obj:
            obj = await self.by_id(namespace, uid)
            if records.phase_of(obj) == "running":
                raise ApiError(409, "cannot delete running jobs; cancel the run first")
            meta = obj["metadata"]
            options = {
                "propagationPolicy": "Background",
                "preconditions": {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"]},
            }
            path = resource_path(namespace, meta["name"])
            self.cache.wrote(await self.call(self.kube.request, "DELETE", path, options))
            return obj

        return _json(records.record(await self.conditionally(attempt), with_result=False))

    async def run(self, request: web.Request) -> web.Response:
        """Request a run the way ``kubectl annotate`` does: a new value of the run annotation.
        The Job's name derives from it, so ``jobId`` is known before the operator acts."""
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        await self.authorize(request, Access("create", namespace, name, "run"))

        async def attempt() -> tuple[Obj, str]:
            obj = await self.by_name(namespace, name)
            meta, status = obj["metadata"], obj.get("status") or {}
            phase = records.phase_of(obj)
            if phase == "running":
                raise ApiError(409, "cannot run running jobs; wait for the run to finish")
            pending = (meta.get("annotations") or {}).get(names.RUN_ANNOTATION)
            if pending and pending != status.get("lastHandledRunRequest"):
                return obj, pending  # requested, not yet handled: the same request again
            generation = meta.get("generation")
            if phase == "completed" and status.get("observedGeneration") == generation:
                raise ApiError(409, "cannot run completed jobs; change the spec to run again")
            value = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            annotation = {names.RUN_ANNOTATION: value}
            patch = {
                "metadata": {"resourceVersion": meta["resourceVersion"], "annotations": annotation}
            }
            path = resource_path(namespace, name)
            patched = await self.call(self.kube.patch, path, patch)
            self.cache.wrote(patched)
            return patched, value

        obj, value = await self.conditionally(attempt)
        out = records.record(obj, with_result=False)
        run_number = ((obj.get("status") or {}).get("runCount") or 0) + 1  # the run it starts
        out["jobId"] = names.job_name(name, obj["metadata"]["uid"], value, run_number)
        return _json(out, 202)

    # -- discovery, health ---------------------------------------------------------------

    async def livez(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(self, request: web.Request) -> web.Response:
        """Ready once the resources are listed and while kube-apiserver answers: without it no
        path can be served."""
        if not self.cache.ready:
            return web.Response(status=503, text="not ready: the resources are not listed yet")
        try:
            await self.call(self.kube.request, "GET", "/version")
        except ApiError as e:
            return web.Response(status=503, text=f"not ready: {e.message}")
        return web.Response(text="ok")

    @staticmethod
    def document(build: Callable[[], Obj]) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            return _json(build())

        return handler

    async def no_openapi(self, request: web.Request) -> web.Response:
        """No OpenAPI document (the paths are not Kubernetes objects); the aggregator logs the
        404 and keeps the APIService Available."""
        return error_response(ApiError(404, "this server publishes no OpenAPI document"))

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[observed, statuses])
        base = discovery.PREFIX
        routes = [
            web.get("/livez", self.livez),
            web.get("/healthz", self.livez),
            web.get("/readyz", self.readyz),
            web.get("/apis", self.document(discovery.api_group_list)),
            web.get(f"/apis/{names.AGGREGATED_GROUP}", self.document(discovery.api_group)),
            web.get(f"/apis/{discovery.GROUP_VERSION}", self.document(discovery.api_resource_list)),
            web.get("/openapi/{tail:.*}", self.no_openapi),
            web.get(base, self.list),
            web.get(f"{base}/", self.list),
            web.post(base, self.create),
            web.post(f"{base}/", self.create),
            web.get(base + "/name/{name}", self.get_by_name),
            web.post(base + "/run/{name}", self.run),
            web.get(base + "/{id}", self.get),
            web.put(base + "/{id}", self.update),
            web.delete(base + "/{id}", self.delete),
        ]
        app.add_routes(routes)
        return app


@web.middleware
async def statuses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error as a Kubernetes Status; nothing unexpected leaks a traceback to the client."""
    try:
        return await handler(request)
    except ApiError as e:
        return error_response(e)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(ApiError(e.status, e.reason))
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return error_response(ApiError(500, "internal error; see the server's log"))


@web.middleware
async def observed(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.monotonic()
    response = await handler(request)
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    route = route.replace(discovery.PREFIX, "")
    REQUESTS.labels(request.method, route or "/", str(response.status)).inc()
    LATENCY.labels(request.method, route or "/").observe(time.monotonic() - started)
    return response


async def metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest())
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


def metrics_app() -> web.Application:
    app = web.Application()
    app.add_routes([web.get("/metrics", metrics)])
    return app
