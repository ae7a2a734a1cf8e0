"""The REST API's pure parts (records, list queries, reviews) and its TLS authentication, served
for real over loopback with certificates of the test PKI. Kubernetes itself (TokenReview, RBAC,
the aggregator) is proven in tests/e2e/test_restapi.py."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from typing import Any

import pytest

from embedding_operator.api import names
from embedding_operator.restapi import records
from embedding_operator.restapi.auth import (
    Access,
    RequestHeaderConfig,
    User,
    access_review,
    bearer_token,
    denial,
    proxied_user,
    server_context,
)
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
        result={
            "model": "voyage-3.5",
            "totalTokens": 4,
            "count": 2,
            "dimensions": 2,
            "dtype": "float",
            "embeddings": [[0.5, 1.0], [0.25, 0.0]],
        },
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
        self.reviews.append(body)
        if body["kind"] == "TokenReview":
            return {"status": {"authenticated": body["spec"]["token"] == "good"}}
        return {"status": {"allowed": True}}

    def list(self, path: str) -> list[Any]:
        return []


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> pki.Pki:
    return pki.generate(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def served(certs: pki.Pki) -> Iterator[tuple[str, AllowAll]]:
    """The app on a loopback port, its event loop in a thread of its own."""
    import threading

    from aiohttp import web

    kube = AllowAll()
    config = RequestHeaderConfig(
        certs.front_proxy_ca.cert.read_text(), allowed_names=(pki.FRONT_PROXY_CLIENT_NAME,)
    )
    api = RestApi(kube, config, max_body=1000)  # type: ignore[arg-type]
    context = server_context(str(certs.apiserver.cert), str(certs.apiserver.key), config)
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
        yield f"https://127.0.0.1:{port}{PATH}", kube
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


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
