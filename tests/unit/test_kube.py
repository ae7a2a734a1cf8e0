"""The Kubernetes boundary against the in-memory API: verbs, errors, retries, field managers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from embedding_operator.kube import (
    CONNECTIONS,
    Connection,
    Kube,
    KubeError,
    RetryPolicy,
    core_path,
)
from tests.fake_kube import FakeApi

CM = core_path("ns", "configmaps")


def test_verbs_speak_plain_dicts_and_name_the_field_manager() -> None:
    api = FakeApi()
    kube = api.kube("embedding-operator")
    made = kube.create(CM, {"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert made is not None and made["metadata"]["uid"]
    assert kube.create(CM, {"metadata": {"name": "a"}}) is None  # AlreadyExists: idempotent
    assert kube.get(core_path("ns", "configmaps", "a"))["data"] == {"k": "v"}  # type: ignore[index]
    assert kube.get(core_path("ns", "configmaps", "gone")) is None
    kube.patch(core_path("ns", "configmaps", "a"), {"data": {"k": "w"}})
    assert [o["data"] for o in kube.list(CM)] == [{"k": "w"}]
    assert kube.delete(core_path("ns", "configmaps", "a")) is True
    assert kube.delete(core_path("ns", "configmaps", "a")) is False
    writes = [r for r in api.requests if r.method in ("POST", "PATCH")]
    assert writes and all(r.params["fieldManager"] == "embedding-operator" for r in writes)
    reads = [r for r in api.requests if r.method == "GET"]
    assert all("fieldManager" not in r.params for r in reads)


@pytest.mark.parametrize("status", [429, 500, 503, 0])
def test_transient_failures_are_retried_within_the_budget(status: int) -> None:
    api = FakeApi()
    api.fail("POST", "/configmaps", status, times=3, retry_after="0")
    assert api.kube().create(CM, {"metadata": {"name": "a"}}) is not None
    assert sum(r.method == "POST" for r in api.requests) == 4


def test_retry_after_is_honoured() -> None:
    api = FakeApi()
    api.fail("GET", "/configmaps", 429, times=1, retry_after="0.3")
    policy = RetryPolicy(timeout=1, budget=5, initial_backoff=0.001, max_backoff=0.5)
    started = time.monotonic()
    api.kube(policy=policy).list(CM)
    assert time.monotonic() - started >= 0.3


def test_a_burst_longer_than_the_budget_raises_the_last_error() -> None:
    api = FakeApi()
    api.fail("GET", "/configmaps", 503, times=10_000, message="etcd unavailable")
    with pytest.raises(KubeError) as info:
        api.kube().list(CM)
    assert info.value.status == 503 and "etcd unavailable" in info.value.message
    assert 1 < len(api.requests) < 10_000


@pytest.mark.parametrize("status", [400, 403, 404, 409, 422])
def test_answers_that_will_not_change_are_not_retried(status: int) -> None:
    api = FakeApi()
    api.fail("PATCH", "/configmaps", status, times=5)
    with pytest.raises(KubeError) as info:
        api.kube().patch(core_path("ns", "configmaps", "a"), {"data": {}})
    assert info.value.status == status and not info.value.transient
    assert len(api.requests) == 1


def test_a_call_that_never_answers_times_out() -> None:
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    kube = Kube(
        Connection(host="http://fake-api"),
        field_manager="t",
        policy=RetryPolicy(timeout=0.1, budget=0.3, initial_backoff=0.01, max_backoff=0.05),
        transport=httpx.MockTransport(hang),
    )
    with pytest.raises(KubeError) as info:
        kube.get(CM)
    assert info.value.status == 0 and info.value.reason == "Timeout"


def test_server_side_apply_creates_then_updates() -> None:
    api = FakeApi()
    kube = api.kube("embedding-operator")
    path = core_path("ns", "serviceaccounts", "w")
    kube.apply(path, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "w"}})
    kube.apply(path, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "w"}})
    assert len(api.all("v1", "serviceaccounts")) == 1
    [first, second] = api.requests
    assert first.params == second.params == {"fieldManager": "embedding-operator", "force": "true"}


def test_a_watch_yields_the_events_and_a_gone_version_is_a_410() -> None:
    lines = [
        {"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "5"}}},
        {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "9"}}},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.params["watch"] == "true"
        assert request.url.params["allowWatchBookmarks"] == "true"
        if request.url.params["resourceVersion"] == "1":
            return httpx.Response(410, json={"kind": "Status", "reason": "Expired", "code": 410})
        return httpx.Response(200, content="\n".join(json.dumps(e) for e in lines) + "\n")

    kube = Kube(
        Connection(host="http://fake"), field_manager="t", transport=httpx.MockTransport(answer)
    )
    assert list(kube.watch("/apis/x/v1/things", "4", 60)) == lines
    with pytest.raises(KubeError) as gone:
        list(kube.watch("/apis/x/v1/things", "1", 60))
    assert gone.value.status == 410


class _KeepAlive(BaseHTTPRequestHandler):
    """An HTTP/1.1 server's handler that keeps connections open, as kube-apiserver does."""

    protocol_version = "HTTP/1.1"
    opened = 0
    lock = threading.Lock()

    def setup(self) -> None:
        super().setup()
        with self.lock:
            type(self).opened += 1

    def do_GET(self) -> None:
        time.sleep(0.002)  # long enough for the threads' requests to overlap
        body = b'{"items": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def keep_alive_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive)
    server.daemon_threads = True
    _KeepAlive.opened = 0
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_concurrent_calls_reuse_their_connections(keep_alive_server: str) -> None:
    """A connection per thread, not per request: against kube-apiserver each new one is a TLS
    handshake, which cost the operator a quarter of its CPU in a burst (docs/performance.md)."""
    threads = 24  # more than httpcore's default keep-alive (20) and the operator's old one (16)
    kube = Kube(Connection(host=keep_alive_server), field_manager="t")
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: [kube.list(CM) for _ in range(25)], range(threads)))
    kube.close()
    assert threads <= CONNECTIONS
    assert _KeepAlive.opened <= threads, f"{_KeepAlive.opened} connections for 600 requests"


def test_a_list_is_fetched_a_page_at_a_time_as_it_is_consumed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache's LIST holds one page of full objects at a time (the restart's peak memory)."""
    monkeypatch.setattr("embedding_operator.kube.LIST_PAGE", 2)
    api = FakeApi()
    kube = api.kube()
    for i in range(5):
        kube.create(CM, {"metadata": {"name": f"c{i}", "labels": {"a": "x"}}})
    api.requests.clear()
    version, items = kube.list_pages(CM, labelSelector="a")
    assert version and [r.params for r in api.requests] == [{"labelSelector": "a", "limit": "2"}]
    assert [next(items)["metadata"]["name"] for _ in range(2)] == ["c0", "c1"]
    assert len(api.requests) == 1  # the next page only once this one is consumed
    assert [o["metadata"]["name"] for o in items] == ["c2", "c3", "c4"]
    assert [r.params.get("continue") for r in api.requests] == [None, "2", "4"]
