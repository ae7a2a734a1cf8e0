"""The REST API's pure parts (records, list queries, reviews) and its TLS authentication, served
for real over loopback with certificates of the test PKI. Kubernetes itself (TokenReview, RBAC,
the aggregator) is proven in tests/e2e/test_restapi.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from embedding_operator.api import names
from embedding_operator.kube import Kube, resource_path
from embedding_operator.restapi import records
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
    server_context,
    token_key,
)
from embedding_operator.restapi.cache import ResourceCache, slim
from embedding_operator.restapi.errors import ApiError
from embedding_operator.restapi.records import ListQuery
from embedding_operator.restapi.server import RestApi
from tests.cluster import pki


def obj(
    name: str,
    created: str = "2026-01-01T00:00:00Z",
    phase: str | None = None,
    model: str = "voyage-3.5",
    **status: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "uid": f"uid-{name}",
            "creationTimestamp": created,
            "generation": 1,
            "resourceVersion": "7",
        },
        "spec": {"inputs": ["a", "b"], "model": model, "outputDimension": 512},
    }
    if phase:
        out["status"] = {"phase": phase, **status}
    return out


RESULT = {
    "model": "voyage-3.5",
    "totalTokens": 4,
    "count": 2,
    "dimensions": 2,
    "dtype": "float",
    "embeddings": [[0.5, 1.0], [0.25, 0.0]],
}


# -- records ---------------------------------------------------------------------------------


def test_a_new_resource_is_a_pending_record_in_the_seed_shape() -> None:
    rec = records.record(obj("fresh"))
    assert rec["id"] == "uid-fresh"
    assert rec["status"] == "pending"
    assert rec["inputs"] == ["a", "b"]
    assert rec["outputDimension"] == 512  # extra spec fields, camelCase
    assert rec["result"] is None and rec["jobId"] is None and rec["error"] is None
    assert rec["createdAt"] == rec["updatedAt"] == "2026-01-01T00:00:00Z"


def test_a_completed_record_carries_the_result_and_a_list_can_leave_the_vectors_out() -> None:
    done = obj(
        "done",
        phase="Completed",
        jobName="done-123",
        result=RESULT,
    )
    done["metadata"]["managedFields"] = [{"time": "2026-01-01T00:01:00Z"}, {"time": None}]
    rec = records.record(done)
    assert rec["status"] == "completed" and rec["jobId"] == "done-123"
    assert rec["result"]["embeddings"] == [[0.5, 1.0], [0.25, 0.0]]
    assert rec["result"]["totalTokens"] == 4
    assert rec["updatedAt"] == "2026-01-01T00:01:00Z"
    assert "embeddings" not in records.record(done, with_result=False)["result"]
    assert records.record(done, [[9.0, 9.0]])["result"]["embeddings"] == [[9.0, 9.0]]


def test_a_failed_record_says_why() -> None:
    rec = records.record(obj("bad", phase="Failed", message="the Secret is missing"))
    assert rec["status"] == "failed" and rec["error"] == "the Secret is missing"


def test_create_accepts_one_string_as_inputs() -> None:
    name, spec = records.creation(
        {"name": "one", "inputs": "Hello world", "model": "voyage-3-large", "inputType": "document"}
    )
    assert name == "one"
    assert spec == {"inputs": ["Hello world"], "model": "voyage-3-large", "inputType": "document"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Not_A_Slug", "inputs": ["a"], "model": "voyage-3.5"}, "name"),
        ({"inputs": ["a"], "model": "voyage-3.5"}, "name"),
        ({"name": "x", "inputs": [], "model": "voyage-3.5"}, "inputs"),
        ({"name": "x", "inputs": ["a", ""], "model": "voyage-3.5"}, "inputs[1]"),
        ({"name": "x", "inputs": [5], "model": "voyage-3.5"}, "inputs[0]"),
        ({"name": "x", "inputs": ["a"], "model": "voyage-99"}, "model"),
        ({"name": "x", "inputs": ["a"]}, "model"),
        ({"name": "x", "inputs": ["a"], "model": "voyage-3.5", "inputType": "doc"}, "inputType"),
        (
            {"name": "x", "inputs": ["a"], "model": "voyage-law-2", "outputDimension": 512},
            "outputDimension",
        ),
        (
            {"name": "x", "inputs": ["a"], "model": "voyage-3.5", "outputDimension": "512"},
            "outputDimension",
        ),
        ({"name": "x", "inputs": ["a"], "model": "voyage-3.5", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ApiError) as e:
        records.creation(body)
    assert e.value.code == 400
    assert e.value.message.startswith(f"{field}:"), e.value.message


def test_read_only_fields_sent_back_are_ignored() -> None:
    _, spec = records.creation(
        {"name": "x", "inputs": ["a"], "model": "voyage-3.5", "id": "u", "status": "completed"}
    )
    assert spec == {"inputs": ["a"], "model": "voyage-3.5"}


def test_update_is_a_merge_patch_checked_whole() -> None:
    current = obj("up")
    assert records.update({"inputs": "new", "outputDimension": None}, current) == {
        "inputs": ["new"],
        "outputDimension": None,
    }
    with pytest.raises(ApiError, match=r"^outputDimension:"):
        records.update({"model": "voyage-law-2"}, current)  # 512 is not law-2's
    with pytest.raises(ApiError, match=r"^name: cannot be changed"):
        records.update({"name": "other"}, current)


@pytest.mark.parametrize(
    ("raw", "message"),
    [(b"{", "not valid JSON"), (b"[1]", "JSON object"), (b"\xff", "not valid JSON")],
)
def test_malformed_json_is_a_bad_request(raw: bytes, message: str) -> None:
    with pytest.raises(ApiError, match=message) as e:
        records.parse_json(raw)
    assert e.value.code == 400


# -- list queries ----------------------------------------------------------------------------


def items() -> list[dict[str, Any]]:
    out = [obj(f"job-{i:02d}", created=f"2026-01-01T00:00:{i % 10:02d}Z") for i in range(25)]
    out[3] = obj("job-03", created="2026-01-01T00:00:03Z", phase="Completed")
    out[4] = obj("other-04", created="2026-01-01T00:00:04Z", model="voyage-law-2")
    return out


def test_a_list_is_newest_first_and_paged() -> None:
    page, total, token = ListQuery.parse({"limit": "10"}).select(items())
    assert total == 25 and len(page) == 10 and token
    created = [o["metadata"]["creationTimestamp"] for o in page]
    assert created == sorted(created, reverse=True)
    assert [o["metadata"]["name"] for o in page[:3]] == ["job-09", "job-19", "job-08"]
    page3, _, last = ListQuery.parse({"limit": "10", "page": "3"}).select(items())
    assert len(page3) == 5 and last is None


def test_continue_tokens_walk_every_item_once() -> None:
    seen: list[str] = []
    token: str | None = ""
    while token is not None:
        query = {"limit": "7", **({"continue": token} if token else {})}
        page, _, token = ListQuery.parse(query).select(items())
        seen += [o["metadata"]["name"] for o in page]
    assert sorted(seen) == sorted(o["metadata"]["name"] for o in items())
    assert len(seen) == len(set(seen))


def test_filters() -> None:
    def names_of(query: dict[str, str]) -> list[str]:
        return [o["metadata"]["name"] for o in ListQuery.parse(query).select(items())[0]]

    assert names_of({"search": "other"}) == ["other-04"]
    assert names_of({"status": "completed"}) == ["job-03"]
    assert names_of({"model": "voyage-law-2"}) == ["other-04"]
    assert len(names_of({"status": "pending", "limit": "100"})) == 24


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "100000000000"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"page": "0"}, "page"),
        ({"status": "done"}, "status"),
        ({"model": "gpt"}, "model"),
        ({"continue": "garbage!"}, "continue"),
        ({"continue": records.encode_continue(obj("a")), "page": "2"}, "continue"),
        ({"include": "everything"}, "include"),
        ({"fields": "id,password"}, "fields"),
    ],
)
def test_bad_list_parameters_are_refused_naming_them(query: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as e:
        ListQuery.parse(query)
    assert e.value.code == 400 and e.value.message.startswith(f"{field}:")


def test_fields_pick_the_record_keys() -> None:
    query = ListQuery.parse({"fields": "id,status"})
    assert records.pick(records.record(obj("f")), query.fields) == {
        "id": "uid-f",
        "status": "pending",
    }


# -- reviews ---------------------------------------------------------------------------------


def test_a_run_is_create_on_the_run_subresource() -> None:
    user = User("alice", "u1", ("devs",), {"scopes": ("a",)})
    review = access_review(user, Access("create", "ns", "job", "run"))
    assert review["spec"]["resourceAttributes"] == {
        "namespace": "ns",
        "verb": "create",
        "group": names.GROUP,
        "version": names.VERSION,
        "resource": names.PLURAL,
        "subresource": "run",
        "name": "job",
    }
    assert review["spec"]["user"] == "alice" and review["spec"]["groups"] == ["devs"]
    assert review["spec"]["extra"] == {"scopes": ["a"]}


def test_a_denial_carries_the_reviews_reason() -> None:
    access = Access("create", "ns", "job", "run")
    assert denial(User("a"), access, {"status": {"allowed": True}}) is None
    message = denial(User("bob"), access, {"status": {"allowed": False, "reason": "no rule"}})
    assert message is not None
    assert 'User "bob" cannot create resource "deploymentembeddings/run"' in message
    assert message.endswith(": no rule")


def test_requestheader_settings_from_the_configmap() -> None:
    config = RequestHeaderConfig.from_configmap(
        {
            "requestheader-client-ca-file": "PEM",
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        }
    )
    assert config.allowed_names == ("front-proxy-client",)
    with pytest.raises(ValueError, match="requestheader-client-ca-file"):
        RequestHeaderConfig.from_configmap({})


def test_headers_count_only_with_an_allowed_certificate() -> None:
    config = RequestHeaderConfig("PEM", allowed_names=("front-proxy-client",))
    headers = {"X-Remote-User": "mallory", "X-Remote-Group": "system:masters"}
    cert = {"subject": ((("commonName", "front-proxy-client"),),)}
    assert proxied_user(config, None, headers) is None
    assert proxied_user(config, {}, headers) is None
    assert proxied_user(config, {"subject": ((("commonName", "someone"),),)}, headers) is None
    user = proxied_user(config, cert, {**headers, "X-Remote-Extra-Scopes%2Fa": "x"})
    assert user == User("mallory", groups=("system:masters",), extra={"scopes/a": ("x",)})
    assert bearer_token({"Authorization": "Bearer abc"}) == "abc"
    assert bearer_token({"Authorization": "Basic abc"}) is None


# -- TLS, for real ---------------------------------------------------------------------------


class AllowAll:
    """Stands in for kube-apiserver's reviews only: TLS and header handling are under test."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []

    def request(self, method: str, path: str, body: Any = None, **_: Any) -> Any:
        if body is None:  # GET /version, for /readyz
            return {}
        self.reviews.append(body)
        if body["kind"] == "TokenReview":
            return {"status": {"authenticated": body["spec"]["token"] == "good"}}
        return {"status": {"allowed": body["spec"]["user"] != "mallory"}}

    def list(self, path: str) -> list[Any]:
        return []


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.generate(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def serving(api: RestApi, certs: pki.Pki, context: ssl.SSLContext | None = None) -> Iterator[str]:
    """``api`` on a loopback port, its event loop in a thread of its own; yields the base URL."""
    import threading

    from aiohttp import web

    if context is None:
        key_pair = certs.apiserver
        context = server_context(str(key_pair.cert), str(key_pair.key), api.requestheader)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runner = web.AppRunner(api.app())

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context).start()
        return int(runner.addresses[0][1])

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield f"https://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def front_proxy(certs: pki.Pki) -> RequestHeaderConfig:
    return RequestHeaderConfig(
        certs.front_proxy_ca.cert.read_text(), allowed_names=(pki.FRONT_PROXY_CLIENT_NAME,)
    )


@pytest.fixture
def served(certs: pki.Pki) -> Iterator[tuple[str, AllowAll]]:
    kube = AllowAll()
    api = RestApi(kube, front_proxy(certs), max_body=1000)  # type: ignore[arg-type]
    with serving(api, certs) as url:
        yield url + PATH, kube


PATH = "/apis/api.embedding-operator.dev/v1alpha1/namespaces/ns/deployment-embeddings"


def fetch(
    url: str,
    certs: pki.Pki,
    client: pki.KeyPair | None = None,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    import urllib.error
    import urllib.request

    context = ssl.create_default_context(cafile=str(certs.ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_front_proxy_certificate_makes_the_headers_count(
    served: tuple[str, AllowAll], certs: pki.Pki
) -> None:
    url, kube = served
    headers = {"X-Remote-User": "alice", "X-Remote-Group": "devs"}
    code, body = fetch(url, certs, certs.front_proxy_client, headers)
    assert code == 200 and body["items"] == []
    assert kube.reviews[-1]["spec"]["user"] == "alice"
    assert kube.reviews[-1]["spec"]["groups"] == ["devs"]


def test_forged_headers_on_a_direct_connection_are_401(
    served: tuple[str, AllowAll], certs: pki.Pki
) -> None:
    url, kube = served
    code, body = fetch(url, certs, None, {"X-Remote-User": "system:admin"})
    assert code == 401
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized"
    assert kube.reviews == []  # never even reviewed


def test_a_certificate_of_another_ca_is_refused_by_tls(
    served: tuple[str, AllowAll], certs: pki.Pki
) -> None:
    url, _ = served
    with pytest.raises(OSError):  # the handshake fails: admin's CA is not the front proxy's
        fetch(url, certs, certs.admin, {"X-Remote-User": "admin"})


def test_bearer_tokens_go_through_a_token_review(
    served: tuple[str, AllowAll], certs: pki.Pki
) -> None:
    url, kube = served
    assert fetch(url, certs, headers={"Authorization": "Bearer good"})[0] == 200
    assert kube.reviews[0]["kind"] == "TokenReview"
    assert fetch(url, certs, headers={"Authorization": "Bearer bad"})[0] == 401


def test_a_body_over_the_limit_is_413_and_nothing_is_created(
    served: tuple[str, AllowAll], certs: pki.Pki
) -> None:
    url, _ = served
    headers = {"Authorization": "Bearer good", "Content-Type": "application/json"}
    code, body = fetch(url, certs, headers=headers, data=b'{"name": "' + b"x" * 2000 + b'"}')
    assert code == 413 and body["reason"] == "RequestEntityTooLarge"
    assert "1000 bytes" in body["message"]


def test_a_write_that_lost_a_race_is_retried_on_a_fresh_read() -> None:
    """The operator writes statuses all the time: a conditional write's 409 Conflict means read
    again and re-check, not fail (the e2e run request failed on this before the retry)."""
    from embedding_operator.kube import KubeError
    from embedding_operator.restapi.server import CONFLICT_RETRIES, StaleRead, upstream_error

    api = RestApi(AllowAll(), RequestHeaderConfig("PEM"))  # type: ignore[arg-type]
    attempts: list[int] = []

    async def lose_twice() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise upstream_error(KubeError(409, "Conflict", "the object has been modified"))
        return "written"

    assert asyncio.run(api.conditionally(lose_twice)) == "written"
    assert len(attempts) == 3

    async def refused() -> str:
        attempts.append(1)
        raise ApiError(409, "cannot run completed jobs")

    attempts.clear()
    with pytest.raises(ApiError, match="cannot run completed"):
        asyncio.run(api.conditionally(refused))
    assert len(attempts) == 1  # a refusal is final

    async def always_stale() -> str:
        raise upstream_error(KubeError(409, "Conflict", "modified"))

    with pytest.raises(StaleRead):
        asyncio.run(api.conditionally(always_stale))
    assert CONFLICT_RETRIES > 1
    assert not isinstance(upstream_error(KubeError(409, "AlreadyExists", "x")), StaleRead)


# -- reviews reused for seconds, like kube's delegating authorizer ---------------------------

ALICE = {"X-Remote-User": "alice", "X-Remote-Group": "devs"}


def test_review_outcomes_are_reused_until_they_expire_and_the_cache_is_bounded() -> None:
    now = [0.0]
    cache = ReviewCache(ttl=10, size=2, clock=lambda: now[0])
    cache.put("a", (None,))
    now[0] = 9.9
    assert cache.get("a") == (None,)  # a cached denial or unauthenticated token is an answer too
    now[0] = 10.0
    assert cache.get("a") is None
    for key in ("a", "b", "c"):
        cache.put(key, (key,))
    assert cache.get("a") is None and cache.get("b") == ("b",) and cache.get("c") == ("c",)


def test_the_review_key_tells_every_attribute_apart() -> None:
    alice = User("alice", "u1", ("devs",), {"scopes": ("x",)})
    base = access_key(alice, Access("get", "ns", "a", None))
    others = [
        access_key(User("bob", "u1", ("devs",), {"scopes": ("x",)}), Access("get", "ns", "a")),
        access_key(User("alice", "u2", ("devs",), {"scopes": ("x",)}), Access("get", "ns", "a")),
        access_key(User("alice", "u1", ("ops",), {"scopes": ("x",)}), Access("get", "ns", "a")),
        access_key(User("alice", "u1", ("devs",), {"scopes": ("y",)}), Access("get", "ns", "a")),
        access_key(alice, Access("list", "ns", "a")),
        access_key(alice, Access("get", "other", "a")),
        access_key(alice, Access("get", "ns", "b")),
        access_key(alice, Access("get", "ns", "a", "run")),
    ]
    assert len({base, *others}) == len(others) + 1
    same = User("alice", "u1", ("devs",), {"scopes": ("x",)})
    assert access_key(same, Access("get", "ns", "a")) == base
    assert token_key("secret") == token_key("secret") != token_key("other")
    assert "secret" not in repr(token_key("secret"))  # tokens are not kept


def test_a_caller_paging_through_a_list_costs_one_review_and_a_denial_is_reused(
    served: tuple[str, AllowAll], certs: pki.Pki
) -> None:
    url, kube = served
    for _ in range(3):
        assert fetch(url, certs, certs.front_proxy_client, ALICE)[0] == 200
    assert [r["kind"] for r in kube.reviews] == ["SubjectAccessReview"]
    mallory = {"X-Remote-User": "mallory"}
    for _ in range(2):
        code, body = fetch(url, certs, certs.front_proxy_client, mallory)
        assert code == 403 and 'User "mallory" cannot list' in body["message"]
    assert len(kube.reviews) == 2
    for _ in range(2):
        assert fetch(url, certs, headers={"Authorization": "Bearer good"})[0] == 200
    assert [r["kind"] for r in kube.reviews[2:]] == ["TokenReview", "SubjectAccessReview"]


def test_a_namespace_the_install_does_not_serve_is_a_404_before_any_review(
    certs: pki.Pki,
) -> None:
    kube = AllowAll()
    api = RestApi(kube, front_proxy(certs), namespaces=("team-a",))  # type: ignore[arg-type]
    with serving(api, certs) as url:
        code, body = fetch(url + PATH, certs, certs.front_proxy_client, ALICE)
        assert code == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
        assert 'namespace "ns" is not served by this REST API' in body["message"]
        assert kube.reviews == []
        served_path = PATH.replace("/namespaces/ns/", "/namespaces/team-a/")
        assert fetch(url + served_path, certs, certs.front_proxy_client, ALICE)[0] == 200


# -- the watch-fed copy of the resources ----------------------------------------------------


def versioned(name: str, version: str, **status: Any) -> dict[str, Any]:
    out = obj(name, phase="Completed" if status else None, **status)
    out["metadata"]["resourceVersion"] = version
    return out


VECTORS = {**RESULT, "inline": {"encoding": "float32-le", "data": "AAAA" * 100}}


def test_the_copy_keeps_no_vectors_and_gives_the_same_records_without_them() -> None:
    full = versioned("done", "3", jobName="done-1", result=VECTORS)
    full["metadata"]["managedFields"] = [
        {"manager": "a", "time": "2026-01-01T00:00:05Z", "fieldsV1": {"f:spec": {}}},
        {"manager": "b", "time": "2026-01-01T00:00:09Z", "fieldsV1": {"f:status": {}}},
    ]
    full["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}" * 100,
        "keep": "me",
    }
    kept = slim(full)
    assert set(kept["status"]["result"]) == set(records.RESULT_SUMMARY)
    assert kept["metadata"]["annotations"] == {"keep": "me"}
    assert records.record(kept, with_result=False) == records.record(full, with_result=False)
    assert full["status"]["result"]["embeddings"]  # the original is not changed


class Scripted:
    """kube-apiserver for the cache's watch thread: LISTs and WATCHes answered in turn."""

    def __init__(self, cache: ResourceCache, lists: list[Any], watches: list[Any]) -> None:
        self.cache, self.lists, self.watches = cache, lists, watches
        self.watched: list[str] = []

    list_pages = Kube.list_pages  # the real paging, over ``request``

    def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        assert (method, path) == ("GET", resource_path("ns"))
        return self.lists.pop(0)

    def watch(self, path: str, version: str, seconds: int) -> Iterator[dict[str, Any]]:
        self.watched.append(version)
        yield from self.watches.pop(0)
        if not self.watches:
            self.cache.stop()


def test_the_copy_lists_then_watches_and_relists_when_the_version_is_gone() -> None:
    def listing(version: str, *items: dict[str, Any]) -> dict[str, Any]:
        return {"metadata": {"resourceVersion": version}, "items": list(items)}

    gone = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}

    async def scenario() -> tuple[ResourceCache, Scripted]:
        cache = ResourceCache(None, ["ns"])  # type: ignore[arg-type]
        kube = Scripted(
            cache,
            lists=[
                listing("10", versioned("a", "8"), versioned("b", "9")),
                listing("20", versioned("a", "11", result=VECTORS), versioned("c", "19")),
            ],
            watches=[
                [
                    {"type": "MODIFIED", "object": versioned("a", "11", result=VECTORS)},
                    {"type": "DELETED", "object": versioned("b", "12")},
                    {"type": "ERROR", "object": gone},
                ],
                [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "25"}}}],
            ],
        )
        cache.kube = kube  # type: ignore[assignment]
        cache._loop = asyncio.get_running_loop()
        assert not cache.ready
        await asyncio.to_thread(cache.follow, "ns")
        await asyncio.sleep(0)  # the events posted to the loop
        return cache, kube

    cache, kube = asyncio.run(scenario())
    assert kube.watched == ["10", "20"]  # resumed from the LIST, then from the relist
    assert sorted(o["metadata"]["name"] for o in cache.items("ns")) == ["a", "c"]
    assert "embeddings" not in cache.objects["ns"]["a"]["status"]["result"]
    assert cache.seen["ns"] == 25 and cache.ready
    assert cache.name_of("ns", "uid-c") == "c" and cache.name_of("ns", "uid-b") is None


def test_a_list_waits_for_the_watch_to_deliver_the_servers_own_write() -> None:
    async def scenario() -> None:
        cache = ResourceCache(None, ["ns"])  # type: ignore[arg-type]
        cache.catch_up = 0.01
        assert not await cache.caught_up("ns")  # not listed yet: read kube-apiserver
        cache.catch_up = 30
        cache._replace("ns", [versioned("a", "9")], "10")
        assert await cache.caught_up("ns")
        cache.wrote(versioned("b", "12"))
        waiting = asyncio.create_task(cache.caught_up("ns"))
        await asyncio.sleep(0)
        cache._event("ns", "ADDED", versioned("x", "11"))
        await asyncio.sleep(0)
        assert not waiting.done()  # 11 is not yet the write (12)
        cache._event("ns", "ADDED", versioned("b", "12"))
        assert await asyncio.wait_for(waiting, 5)
        cache.wrote(versioned("c", "13"))
        cache.catch_up = 0.01
        assert not await cache.caught_up("ns")  # the watch lags: read kube-apiserver instead

    asyncio.run(scenario())


def test_lists_come_from_the_copy_unless_it_lags_and_readyz_waits_for_it(
    certs: pki.Pki,
) -> None:
    import urllib.error
    import urllib.request

    kube = AllowAll()  # its LIST answers nothing: a list with items came from the copy
    api = RestApi(kube, front_proxy(certs))  # type: ignore[arg-type]
    context = ssl.create_default_context(cafile=str(certs.ca.cert))
    with serving(api, certs) as url:
        with pytest.raises(urllib.error.HTTPError) as unready:
            urllib.request.urlopen(url + "/readyz", context=context, timeout=10)
        assert unready.value.code == 503
        api.cache._replace(None, [versioned("cached", "9")], "10")
        with urllib.request.urlopen(url + "/readyz", context=context, timeout=10) as ready:
            assert ready.status == 200
        code, body = fetch(url + PATH, certs, certs.front_proxy_client, ALICE)
        assert code == 200 and [r["name"] for r in body["items"]] == ["cached"]
        api.cache.catch_up = 0.01
        api.cache.wrote(versioned("new", "11"))
        code, body = fetch(url + PATH, certs, certs.front_proxy_client, ALICE)
        assert code == 200 and body["items"] == []  # read fresh (kube-apiserver's answer)


# -- TLS material reloaded without a restart ------------------------------------------------


def test_a_rotated_front_proxy_ca_and_a_renewed_certificate_take_effect_without_a_restart(
    certs: pki.Pki,
) -> None:
    import socket

    from embedding_operator.restapi.main import ReloadingTls

    def material(ca: pki.KeyPair, allowed: str, serving: pki.KeyPair) -> Any:
        config = RequestHeaderConfig(ca.cert.read_text(), allowed_names=(allowed,))
        return config, serving.cert.read_bytes(), serving.key.read_bytes()

    current = [material(certs.front_proxy_ca, pki.FRONT_PROXY_CLIENT_NAME, certs.apiserver)]
    kube = AllowAll()
    api = RestApi(kube, RequestHeaderConfig(""))  # type: ignore[arg-type]
    tls = ReloadingTls(lambda: current[0], api)

    def served_certificate(url: str) -> bytes:
        host, port = url.removeprefix("https://").split(":")
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only which certificate is served counts here
        with (
            socket.create_connection((host, int(port)), timeout=10) as raw,
            context.wrap_socket(raw) as conn,
        ):
            der = conn.getpeercert(binary_form=True)
            assert der is not None
            return der

    def pem_der(pair: pki.KeyPair) -> bytes:
        return ssl.PEM_cert_to_DER_cert(pair.cert.read_text())

    with serving(api, certs, tls.listening) as url:
        assert fetch(url + PATH, certs, certs.front_proxy_client, ALICE)[0] == 200
        with pytest.raises(OSError):  # the cluster CA's admin is no front proxy (yet)
            fetch(url + PATH, certs, certs.admin, ALICE)
        assert served_certificate(url) == pem_der(certs.apiserver)
        assert not tls.reload()  # nothing changed

        # the front-proxy CA rotated (here: to the cluster CA, whose "admin" is the proxy now)
        current[0] = material(certs.ca, "admin", certs.apiserver)
        assert tls.reload()
        assert fetch(url + PATH, certs, certs.admin, {"X-Remote-User": "carol"})[0] == 200
        assert kube.reviews[-1]["spec"]["user"] == "carol"  # its headers are trusted now
        with pytest.raises(OSError):  # the old proxy's CA is no longer trusted
            fetch(url + PATH, certs, certs.front_proxy_client, ALICE)

        # the serving certificate was renewed (here: another certificate of the test PKI)
        current[0] = material(certs.ca, "admin", certs.front_proxy_client)
        assert tls.reload()
        assert served_certificate(url) == pem_der(certs.front_proxy_client)

        current[0] = (current[0][0], b"not a certificate", b"nor a key")
        with pytest.raises(ssl.SSLError):
            tls.reload()  # bad material: refused, the last good one stays in force
        assert served_certificate(url) == pem_der(certs.front_proxy_client)
