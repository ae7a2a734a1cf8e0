"""The operator's own Job and pod watches (``controller.watches``) and what they do to the cache."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from embedding_operator.api import names
from embedding_operator.controller.cache import Cache
from embedding_operator.controller.reconcile import announces
from embedding_operator.controller.watches import OWNED, Watches
from embedding_operator.kube import LIST_PAGE, Kube, core_path, group_path

Obj = dict[str, Any]


def job(name: str, version: str, owner: str = "demo", ended: str = "") -> Obj:
    conditions = [{"type": ended, "status": "True"}] if ended else []
    return {
        "metadata": {
            "namespace": "ns",
            "name": name,
            "uid": f"uid-{name}",
            "resourceVersion": version,
            "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE, names.OWNER_LABEL: owner},
        },
        "status": {"active": 1, "conditions": conditions},
    }


def listing(version: str, *items: Obj) -> Obj:
    return {"metadata": {"resourceVersion": version}, "items": list(items)}


GONE = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}


class Scripted:
    """kube-apiserver for the watch threads: per path, LISTs and WATCHes answered in turn."""

    def __init__(self, lists: dict[str, list[Obj]], watches: dict[str, list[list[Obj]]]) -> None:
        self.lists, self.watches = lists, watches
        self.calls: list[tuple[str, str, str]] = []
        self.watches_done: Any = None

    list_pages = Kube.list_pages  # the real paging, over ``request``

    def request(self, method: str, path: str, query: dict[str, str] | None = None) -> Obj:
        assert method == "GET" and query == {"labelSelector": OWNED, "limit": str(LIST_PAGE)}
        self.calls.append(("LIST", path, ""))
        return self.lists[path].pop(0)

    def watch(self, path: str, version: str, seconds: int, **query: str) -> Iterator[Obj]:
        assert query == {"labelSelector": OWNED}
        self.calls.append(("WATCH", path, version))
        script = self.watches[path]
        yield from script.pop(0)
        if not script:
            self.watches_done()


JOBS, PODS = group_path("batch/v1", "ns", "jobs"), core_path("ns", "pods")


def test_jobs_are_listed_first_then_watched_and_relisted_when_the_version_is_gone() -> None:
    cache = Cache()
    changed: list[tuple[str, str]] = []
    kube = Scripted(
        lists={
            JOBS: [
                listing("10", job("a-1", "8", "a"), job("b-1", "9", "b")),
                listing("20", job("a-1", "11", "a", ended="Failed"), job("c-1", "19", "c")),
            ],
            PODS: [listing("10")],
        },
        watches={
            JOBS: [
                [
                    {"type": "MODIFIED", "object": job("b-1", "10", "b")},  # counters only
                    {"type": "MODIFIED", "object": job("a-1", "11", "a", ended="Failed")},
                    {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                    {"type": "ERROR", "object": GONE},
                ],
                [{"type": "DELETED", "object": job("c-1", "21", "c")}],
            ],
            PODS: [[]],
        },
    )
    watches = Watches(kube, cache, ("ns",), changed.append)  # type: ignore[arg-type]
    watches.list()
    assert cache.sizes() == (0, 2, 0) and changed == []  # the first LIST queues nothing
    kube.watches_done = watches.stop
    watches._follow("job", "ns")
    assert [c for c in kube.calls if c[1] == JOBS] == [
        ("LIST", JOBS, ""),
        ("WATCH", JOBS, "10"),  # from the first LIST's version
        ("LIST", JOBS, ""),  # 410 Gone: relisted at once
        ("WATCH", JOBS, "20"),
    ]
    # a-1 ended (once: the relist brought the version already held); b-1's counters changed no
    # plan (stored, not queued), and it is gone since the relist; c-1 came with the relist and
    # went with the last event
    assert changed[0] == ("ns", "a") and changed[3] == ("ns", "c")
    assert sorted(changed[1:3]) == [("ns", "b"), ("ns", "c")]
    assert cache.job("ns", "a-1") is not None
    assert cache.job("ns", "b-1") is None and cache.job("ns", "c-1") is None


def test_a_relist_replaces_only_its_own_namespace() -> None:
    cache = Cache()
    other = {**job("x-1", "3", "x"), "metadata": {**job("x-1", "3", "x")["metadata"]}}
    other["metadata"]["namespace"] = "other"
    cache.observe("job", None, other)
    cache.observe("job", None, job("a-1", "4", "a"))
    assert cache.replace("job", "ns", []) == {("ns", "a")}
    assert cache.job("other", "x-1") is not None and cache.job("ns", "a-1") is None


def pod(phase: str, waiting: str = "") -> Obj:
    statuses = [{"state": {"waiting": {"reason": waiting, "message": "m"}}}] if waiting else []
    return {"metadata": {"name": "p"}, "status": {"phase": phase, "containerStatuses": statuses}}


def test_only_job_and_pod_events_that_can_change_the_plan_queue_the_resource() -> None:
    assert announces("job", "MODIFIED", job("j", "1", ended="Complete"))
    assert announces("job", "MODIFIED", job("j", "1", ended="Failed"))
    assert announces("job", "DELETED", job("j", "1"))
    assert not announces("job", "MODIFIED", job("j", "1"))  # counters: active, ready
    assert not announces("job", "MODIFIED", job("j", "1", ended="Suspended"))
    assert announces("pod", "MODIFIED", pod("Pending", waiting="ImagePullBackOff"))
    assert announces("pod", "MODIFIED", pod("Pending", waiting="CreateContainerConfigError"))
    assert not announces("pod", "ADDED", pod("Pending"))
    assert not announces("pod", "MODIFIED", pod("Pending", waiting="ContainerCreating"))
    assert not announces("pod", "MODIFIED", pod("Running"))
    assert not announces("pod", "DELETED", pod("Pending", waiting="ErrImagePull"))


def test_reconciles_start_after_the_lists_and_even_when_they_fail() -> None:
    """The queue's workers start once the Job and pod lists are in the cache; a list that
    fails outright (not a KubeError) must not leave the operator without reconciles."""
    import asyncio

    import kopf

    from embedding_operator.controller import handlers
    from embedding_operator.controller.queue import WorkQueue

    class Lists:
        def __init__(self, fail: bool) -> None:
            self.fail = fail
            self.steps: list[str] = []

        def list(self) -> None:
            self.steps.append("list")
            if self.fail:
                raise RuntimeError("boom")

        def start(self) -> None:
            self.steps.append("watch")

    async def scenario(fail: bool) -> tuple[list[str], int]:
        reconciled: list[tuple[str, str]] = []
        queue = WorkQueue(reconciled.append, workers=1)
        queue.add(("ns", "listed-by-kopf-meanwhile"))
        lists = Lists(fail)
        await handlers._start_when_synced(kopf.Memo(watches=lists, queue=queue))
        for _ in range(3000):  # the reconcile runs on the queue's thread
            if reconciled:
                break
            await asyncio.sleep(0.01)
        await queue.stop()
        return lists.steps, len(reconciled)

    assert asyncio.run(scenario(fail=False)) == (["list", "watch"], 1)
    assert asyncio.run(scenario(fail=True)) == (["list", "watch"], 1)


def test_a_malformed_event_or_a_callbacks_bug_relists_instead_of_ending_the_watch() -> None:
    """A watch thread that died would leave the cache silently stale: anything unexpected is
    logged, and the watch lists again (after a short backoff) and goes on."""
    cache = Cache()
    changed: list[tuple[str, str]] = []
    kube = Scripted(
        lists={JOBS: [listing("10"), listing("30", job("a-1", "29", "a", ended="Complete"))]},
        watches={
            JOBS: [
                [{"type": "MODIFIED", "object": {"no": "metadata"}}],
                [{"type": "DELETED", "object": job("a-1", "31", "a")}],
            ]
        },
    )
    watches = Watches(kube, cache, ("ns",), changed.append)  # type: ignore[arg-type]
    kube.watches_done = watches.stop
    watches._follow("job", "ns")
    assert [c[0] for c in kube.calls] == ["LIST", "WATCH", "LIST", "WATCH"]
    assert changed == [("ns", "a"), ("ns", "a")]  # the relist brought a-1, the watch its end
    assert cache.job("ns", "a-1") is None


def test_the_first_lists_fill_the_cache_page_by_page(monkeypatch: Any) -> None:
    """A restart on thousands of runs: every page of Jobs and pods reaches the cache."""
    from tests.fake_kube import FakeApi

    monkeypatch.setattr("embedding_operator.kube.LIST_PAGE", 2)
    api = FakeApi()
    for i in range(5):
        api.kube().create(JOBS, job(f"r{i}-1", "1", f"r{i}"))
    cache = Cache()
    watches = Watches(api.kube(), cache, ("ns",), lambda _: None)
    watches.list()
    assert all(cache.job("ns", f"r{i}-1") is not None for i in range(5))
    pages = [
        r.params.get("continue") for r in api.requests if r.method == "GET" and "jobs" in r.path
    ]
    assert pages == [None, "2", "4"]
    assert watches._versions["job", "ns"]  # the watch starts from the list's version


def test_a_page_refused_mid_list_leaves_the_watch_to_list_again(monkeypatch: Any) -> None:
    """A later page that fails (its continue token expired: 410) is a failed LIST: no version is
    kept, so the watch thread lists again from the start, and that list fills the cache."""
    from tests.fake_kube import FakeApi

    monkeypatch.setattr("embedding_operator.kube.LIST_PAGE", 2)
    api = FakeApi()
    for i in range(5):
        api.kube().create(JOBS, job(f"r{i}-1", "1", f"r{i}"))
    api.fail("GET", "/jobs", 410, after=1, message="continue token expired")
    cache = Cache()
    watches = Watches(api.kube(), cache, ("ns",), lambda _: None)
    watches.list()
    assert ("job", "ns") not in watches._versions  # the watch will not resume from it
    assert cache.job("ns", "r4-1") is None
    watches.list()
    assert all(cache.job("ns", f"r{i}-1") is not None for i in range(5))
    assert watches._versions["job", "ns"]
