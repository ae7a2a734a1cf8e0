"""The Kubernetes glue without a cluster: ``Controller``, the worker's ``StatusWriter`` and
``run_worker`` against the in-memory API (tests/fake_kube.py), with an injected clock."""

from __future__ import annotations

import asyncio
import copy
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from embedding_operator.api import names
from embedding_operator.api.status import ConditionType, ExitCode, Phase, Reason
from embedding_operator.api.types import Result
from embedding_operator.controller.cache import VECTOR_FIELDS, Cache, Kind
from embedding_operator.controller.loop import RBAC_TTL_SECONDS, Backoff, Controller
from embedding_operator.controller.queue import WorkQueue
from embedding_operator.controller.reconcile import has_work
from embedding_operator.controller.settings import Settings
from embedding_operator.controller.watches import OWNED, Watches
from embedding_operator.kube import RetryPolicy
from embedding_operator.storage import result_array
from embedding_operator.worker.main import run_worker
from embedding_operator.worker.status import StatusWriter
from tests.fake_kube import FakeApi
from tests.unit.conftest import API_KEY
from tests.voyage_standin import StandIn

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
G = f"{names.GROUP}/{names.VERSION}"
SETTINGS = Settings(image="embedding-operator:test", pod_start_timeout_seconds=60)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


RBAC = "rbac.authorization.k8s.io/v1"


def new_api(run: str | None = "r1", inputs: list[str] | None = None) -> FakeApi:
    api = FakeApi()
    # the chart's worker ClusterRole, which the operator binds (and owns the bindings by)
    api.put(RBAC, "clusterroles", {"metadata": {"name": SETTINGS.worker_cluster_role}})
    meta: dict[str, Any] = {"name": "demo", "namespace": "ns"}
    if run:
        meta["annotations"] = {names.RUN_ANNOTATION: run}
    api.put(
        G,
        names.PLURAL,
        {
            "apiVersion": G,
            "kind": names.KIND,
            "metadata": meta,
            "spec": {"inputs": inputs or ["a", "b", "c"], "model": "voyage-3.5"},
        },
    )
    return api


WATCHED: dict[Kind, tuple[str, str]] = {
    "resource": (G, names.PLURAL),
    "job": ("batch/v1", "jobs"),
    "pod": ("v1", "pods"),
}


class Watch:
    """What kopf's watches do for the operator, over the fake API: every object as an event
    (a copy, as off the wire), DELETED for what is gone since the last look."""

    def __init__(self, api: FakeApi, cache: Cache) -> None:
        self.api = api
        self.cache = cache
        self.seen: dict[Kind, dict[tuple[str, str], dict[str, Any]]] = {k: {} for k in WATCHED}

    def deliver(self) -> None:
        for kind, (api_version, plural) in WATCHED.items():
            now = {
                (o["metadata"]["namespace"], o["metadata"]["name"]): copy.deepcopy(o)
                for o in self.api.all(api_version, plural)
            }
            for key, gone in self.seen[kind].items():
                if key not in now:
                    self.cache.observe(kind, "DELETED", gone)
            for obj in now.values():
                self.cache.observe(kind, "MODIFIED", obj)
            self.seen[kind] = now


class WatchedController(Controller):
    """The controller as it runs: its cache is filled by the watches before each reconcile."""

    def __init__(self, api: FakeApi, clock: Clock) -> None:
        super().__init__(api.kube("embedding-operator"), SETTINGS, clock=clock, backoff=Backoff())
        self.watch = Watch(api, self.cache)

    def reconcile(self, namespace: str, name: str) -> float | None:
        self.watch.deliver()
        delay = super().reconcile(namespace, name)
        assert self.events.flush(10), "Events still queued"
        return delay


def controller(api: FakeApi, clock: Clock | None = None) -> WatchedController:
    return WatchedController(api, clock or Clock())


def resource(api: FakeApi) -> dict[str, Any]:
    found = api.find(G, names.PLURAL, "ns", "demo")
    assert found is not None
    return found


def status(api: FakeApi) -> dict[str, Any]:
    out: dict[str, Any] = resource(api).get("status") or {}
    return out


def condition(api: FakeApi, type_: str) -> dict[str, Any]:
    return next(c for c in status(api)["conditions"] if c["type"] == type_)


def events(api: FakeApi) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in api.all("v1", "events", "ns")]


def annotate(api: FakeApi, key: str, value: str) -> None:
    resource(api)["metadata"].setdefault("annotations", {})[key] = value


def edit_spec(api: FakeApi, inputs: list[str]) -> None:
    body = resource(api)
    body["spec"]["inputs"] = inputs
    body["metadata"]["generation"] += 1


def finish(api: FakeApi, phase: Phase = Phase.COMPLETED) -> None:
    """What a worker would write at the end of its run, and its Job succeeding."""
    job = api.find("batch/v1", "jobs", "ns", status(api)["jobName"])
    assert job is not None
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    status(api).update(phase=phase, completionTime="2026-11-28T12:01:00Z")


def test_a_run_request_creates_the_job_and_the_workers_rights() -> None:
    api = new_api()
    assert controller(api).reconcile("ns", "demo") is None
    [job] = api.all("batch/v1", "jobs", "ns")
    assert status(api)["phase"] == "Running" and status(api)["jobName"] == job["metadata"]["name"]
    assert status(api)["runCount"] == 1
    assert job["metadata"]["annotations"][names.ATTEMPT_ANNOTATION] == "1"
    assert job["metadata"]["managedFields"][0]["manager"] == "embedding-operator"
    [account] = api.all("v1", "serviceaccounts", "ns")
    [binding] = api.all(RBAC, "rolebindings", "ns")
    role = api.find(RBAC, "clusterroles", "", SETTINGS.worker_cluster_role)
    assert role is not None and not api.all(RBAC, "roles", "ns")
    assert binding["roleRef"]["name"] == SETTINGS.worker_cluster_role
    for obj in (account, binding):
        assert obj["metadata"]["ownerReferences"][0]["uid"] == role["metadata"]["uid"]


def test_existing_worker_rbac_is_never_changed() -> None:
    """The operator may create the worker's RoleBinding, never patch one (it holds no such
    right): one that exists, whatever it says, is left as it is."""
    api = new_api()
    foreign = {
        "metadata": {"name": SETTINGS.worker_service_account, "namespace": "ns"},
        "roleRef": {"kind": "ClusterRole", "name": "something-else"},
        "subjects": [],
    }
    api.put(RBAC, "rolebindings", foreign)
    assert controller(api).reconcile("ns", "demo") is None
    [binding] = api.all(RBAC, "rolebindings", "ns")
    assert binding["roleRef"]["name"] == "something-else"
    assert not [r for r in api.requests if r.method == "PATCH" and "rolebindings" in r.path]
    assert ("Normal", "Accepted") in events(api)
    assert not has_work(resource(api)) or status(api)["phase"] == "Running"


def test_a_refused_job_is_recorded_retried_with_backoff_and_recovers() -> None:
    api = new_api()
    control = controller(api)
    quota = 'jobs "demo-x" is forbidden: exceeded quota: jobs, requested: count/jobs.batch=1'
    api.fail("POST", "/jobs", 403, times=2, message=quota)
    first = control.reconcile("ns", "demo")
    assert first is not None and 0 < first <= 1.0
    assert status(api)["phase"] == "Pending"
    refused = condition(api, ConditionType.RUN_REQUEST)
    assert (refused["status"], refused["reason"]) == ("False", Reason.JOB_CREATE_FAILED)
    assert quota in refused["message"] and "retrying in" in refused["message"]
    assert "lastHandledRunRequest" not in status(api)
    # not Ready, Reconciling: GitOps tools wait instead of calling it healthy
    ready = condition(api, ConditionType.READY)
    assert (ready["status"], ready["reason"]) == ("False", Reason.JOB_CREATE_FAILED)
    assert condition(api, ConditionType.RECONCILING)["status"] == "True"
    assert condition(api, ConditionType.STALLED)["status"] == "False"
    assert has_work(resource(api))  # the resync will come back to it too
    second = control.reconcile("ns", "demo")
    assert second is not None and second > first  # exponential
    assert events(api).count(("Warning", Reason.JOB_CREATE_FAILED)) == 1  # no Event per retry
    assert control.reconcile("ns", "demo") is None  # the quota is lifted
    assert status(api)["phase"] == "Running" and len(api.all("batch/v1", "jobs", "ns")) == 1
    assert condition(api, ConditionType.READY)["status"] == "Unknown"  # Running's own triple
    assert len(control.backoff) == 0  # forgotten on success


def test_an_invalid_job_fails_the_run_with_the_apis_message() -> None:
    api = new_api()
    api.fail("POST", "/jobs", 422, message='Job.batch "x" is invalid: spec.template...: "lots"')
    assert controller(api).reconcile("ns", "demo") is None  # nothing to retry
    assert status(api)["phase"] == "Failed"
    assert condition(api, ConditionType.SUCCEEDED)["reason"] == Reason.INVALID_JOB_SPEC
    assert '"lots"' in status(api)["message"]
    assert status(api)["lastHandledRunRequest"] == "r1"
    assert ("Warning", Reason.INVALID_JOB_SPEC) in events(api)
    assert not has_work(resource(api))


def test_an_admission_policy_denial_is_retried_not_final() -> None:
    api = new_api()
    denial = (
        "jobs.batch \"x\" is forbidden: ValidatingAdmissionPolicy 'guard' with binding 'guard' "
        "denied request: failed to configure binding: no params found for policy binding"
    )
    api.fail("POST", "/jobs", 422, message=denial)
    control = controller(api)
    assert control.reconcile("ns", "demo") is not None  # retried after its backoff
    assert status(api)["phase"] == "Pending"
    assert condition(api, ConditionType.RUN_REQUEST)["reason"] == Reason.JOB_CREATE_FAILED
    assert control.reconcile("ns", "demo") is None
    assert status(api)["phase"] == "Running"


def test_going_back_to_an_earlier_run_request_value_starts_a_new_run() -> None:
    api = new_api("first-run")
    control = controller(api)
    control.reconcile("ns", "demo")
    first_job = status(api)["jobName"]
    finish(api)
    annotate(api, names.RUN_ANNOTATION, "r2")
    edit_spec(api, ["x"])
    control.reconcile("ns", "demo")
    finish(api)
    edit_spec(api, ["y"])  # the GitOps form: the manifest's value comes back with the edit
    annotate(api, names.RUN_ANNOTATION, "first-run")
    control.reconcile("ns", "demo")
    assert status(api)["phase"] == "Running", status(api)["message"]
    assert status(api)["jobName"] != first_job and status(api)["runCount"] == 3
    assert len(api.all("batch/v1", "jobs", "ns")) == 3


def test_a_job_of_the_same_name_that_is_not_this_runs_is_not_adopted() -> None:
    api = new_api()
    control = controller(api)
    from embedding_operator.controller.objects import build_job

    impostor = build_job(resource(api), "r1", 1, SETTINGS)
    impostor["metadata"]["annotations"][names.ATTEMPT_ANNOTATION] = "7"
    api.put("batch/v1", "jobs", impostor)
    assert control.reconcile("ns", "demo") is None
    assert status(api)["phase"] == "Failed" and "not this run's" in status(api)["message"]


def test_a_job_created_before_a_crash_is_adopted() -> None:
    api = new_api()
    from embedding_operator.controller.objects import build_job

    api.put("batch/v1", "jobs", build_job(resource(api), "r1", 1, SETTINGS))
    assert controller(api).reconcile("ns", "demo") is None
    assert status(api)["phase"] == "Running" and len(api.all("batch/v1", "jobs", "ns")) == 1


def test_the_workers_rights_are_ensured_once_per_namespace_and_again_when_a_pod_is_missing() -> (
    None
):
    api = new_api()
    clock = Clock()
    control = controller(api, clock)
    control.reconcile("ns", "demo")
    account = ("v1", "serviceaccounts", "ns", SETTINGS.worker_service_account)
    api.remove(*account)
    finish(api, Phase.FAILED)
    annotate(api, names.RUN_ANNOTATION, "r2")
    before = len(api.requests)
    control.reconcile("ns", "demo")
    assert api.find(*account) is None  # remembered: no request about it
    assert not [r for r in api.requests[before:] if "rbac" in r.path or "serviceaccounts" in r.path]
    # the run's Job gets no pod (no ServiceAccount): past the start timeout the run fails...
    clock.now = NOW + timedelta(seconds=61)
    control.reconcile("ns", "demo")
    assert condition(api, ConditionType.SUCCEEDED)["reason"] == Reason.POD_NOT_STARTED
    # ...and the next run of the namespace checks the rights again
    annotate(api, names.RUN_ANNOTATION, "r3")
    control.reconcile("ns", "demo")
    assert api.find(*account) is not None and status(api)["phase"] == "Running"
    # so does one after the TTL
    api.remove(*account)
    finish(api, Phase.FAILED)
    annotate(api, names.RUN_ANNOTATION, "r4")
    clock.now += timedelta(seconds=RBAC_TTL_SECONDS)
    control.reconcile("ns", "demo")
    assert api.find(*account) is not None


def test_a_job_without_pods_fails_past_the_start_timeout_with_its_events_message() -> None:
    api = new_api()
    clock = Clock()
    control = controller(api, clock)
    control.reconcile("ns", "demo")
    job = status(api)["jobName"]
    why = 'Error creating: pods "x" is forbidden: serviceaccount "worker" not found'
    api.put(
        "v1",
        "events",
        {
            "metadata": {"name": "e1", "namespace": "ns"},
            "involvedObject": {"kind": "Job", "name": job},
            "type": "Warning",
            "reason": "FailedCreate",
            "message": why,
        },
    )
    clock.now = NOW + timedelta(seconds=30)
    control.reconcile("ns", "demo")
    assert status(api)["phase"] == "Running"
    clock.now = NOW + timedelta(seconds=61)
    control.reconcile("ns", "demo")
    assert status(api)["phase"] == "Failed" and why in status(api)["message"]
    assert condition(api, ConditionType.SUCCEEDED)["reason"] == Reason.POD_NOT_STARTED
    assert api.find("batch/v1", "jobs", "ns", job) is None  # deleted


def test_a_write_conflict_makes_the_reconcile_look_again() -> None:
    api = new_api()
    api.fail("PATCH", "/status", 409, message="the object has been modified")
    assert controller(api).reconcile("ns", "demo") is None
    assert status(api)["phase"] == "Running"


def test_an_api_outage_is_retried_later_not_raised() -> None:
    api = new_api()
    api.fail("PATCH", "/deploymentembeddings/demo/status", 503, times=1_000)
    delay = controller(api).reconcile("ns", "demo")
    assert delay is not None and delay > 0


def test_the_work_queue_folds_a_burst_into_one_more_reconcile_per_resource() -> None:
    import threading
    import time

    calls: list[tuple[str, str]] = []
    running: set[tuple[str, str]] = set()
    overlaps: list[tuple[str, str]] = []
    release = threading.Event()
    lock = threading.Lock()

    def reconcile(key: tuple[str, str]) -> float | None:
        with lock:
            if key in running:
                overlaps.append(key)
            running.add(key)
            calls.append(key)
        if key == ("ns", "a"):
            release.wait(5)
        time.sleep(0.01)
        with lock:
            running.discard(key)
        return None

    async def main() -> int:
        queue = WorkQueue(reconcile, workers=4)
        queue.start()
        queue.add(("ns", "a"))
        while ("ns", "a") not in running:
            await asyncio.sleep(0.01)
        for _ in range(100):  # a burst of events while "a" is being reconciled
            queue.add(("ns", "a"))
            queue.add(("ns", "b"))
        while ("ns", "b") not in calls:  # "b" does not wait for "a"
            await asyncio.sleep(0.01)
        release.set()
        while len(queue):
            await asyncio.sleep(0.01)
        await queue.stop()
        return len(queue)

    assert asyncio.run(main()) == 0  # nothing kept once the work is done
    assert calls.count(("ns", "a")) == 2 and calls.count(("ns", "b")) == 1
    assert overlaps == []  # never two reconciles of one resource at once


def test_the_work_queue_retries_a_failed_reconcile_after_its_backoff() -> None:
    results = iter([0.05, 0.05, None])
    calls: list[tuple[str, str]] = []

    def reconcile(key: tuple[str, str]) -> float | None:
        calls.append(key)
        return next(results)

    async def main() -> bool:
        queue = WorkQueue(reconcile, workers=2)
        queue.start()
        queue.add(("ns", "a"))
        while len(calls) < 1:
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.01)
        waiting = queue.waiting(("ns", "a"))
        while len(queue) or len(calls) < 3:
            await asyncio.sleep(0.01)
        await queue.stop()
        return waiting

    assert asyncio.run(main()) is True
    assert calls == [("ns", "a")] * 3


def test_metrics_remember_a_bounded_number_of_runs() -> None:
    from embedding_operator.controller.metrics import RunMetrics

    metrics = RunMetrics(NOW, memory=10)
    for i in range(50):
        metrics.observe(
            {
                "spec": {"model": "voyage-3.5"},
                "status": {
                    "phase": "Completed",
                    "jobName": f"j{i}",
                    "completionTime": "2026-11-28T12:01:00Z",
                },
            }
        )
    assert len(metrics._counted) == 10


@pytest.fixture
def worker_env(standin: StandIn, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    """A worker's environment: the key and the stand-in's URL."""
    monkeypatch.setenv("VOYAGE_API_KEY", API_KEY)
    monkeypatch.setenv("VOYAGE_BASE_URL", standin.base_url)
    return standin


# -- reconciling from the watches' cache ---------------------------------------------------------


def calls(api: FakeApi, since: int = 0) -> list[tuple[str, str]]:
    """(method, resource plural[/subresource]) of the requests sent since ``since``."""
    out = []
    for r in api.requests[since:]:
        parts = r.path.split("/")
        tail = parts[-1] if parts[-1] == "status" else ""
        plural = next(p for p in reversed(parts) if p in PLURALS)
        out.append((r.method, f"{plural}/{tail}" if tail else plural))
    return out


PLURALS = {
    names.PLURAL,
    "jobs",
    "pods",
    "events",
    "serviceaccounts",
    "rolebindings",
    "clusterroles",
}


def add_resource(api: FakeApi, name: str, run: str | None = None, namespace: str = "ns") -> None:
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if run:
        meta["annotations"] = {names.RUN_ANNOTATION: run}
    api.put(G, names.PLURAL, {"metadata": meta, "spec": {"inputs": ["a"], "model": "voyage-3.5"}})


def worker_writes(api: FakeApi, name: str, **fields: Any) -> None:
    """A status write of the worker's: through the API, so the resourceVersion moves."""
    api.kube("embedding-operator-worker").patch(
        f"/apis/{G}/namespaces/ns/{names.PLURAL}/{name}/status", {"status": fields}
    )


def pod_of(job: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {
            "name": f"{job}-pod",
            "namespace": "ns",
            "labels": {"batch.kubernetes.io/job-name": job, names.OWNER_LABEL: "x"},
            "creationTimestamp": "2026-11-28T12:00:01Z",
        },
        "spec": {"containers": [{"name": "worker", "image": "i"}]},
        "status": {"phase": phase},
    }


def test_a_run_costs_three_requests_and_none_while_it_runs_and_ends() -> None:
    api = new_api()
    control = controller(api)
    control.reconcile("ns", "demo")  # the namespace's first run ensures the worker's rights
    add_resource(api, "other")
    control.reconcile("ns", "other")  # a new resource: Pending
    annotate_other = api.find(G, names.PLURAL, "ns", "other")
    assert annotate_other is not None
    annotate_other["metadata"]["annotations"] = {names.RUN_ANNOTATION: "r1"}
    start = len(api.requests)
    control.reconcile("ns", "other")
    assert calls(api, start) == [
        ("POST", "jobs"),
        ("PATCH", f"{names.PLURAL}/status"),
        ("POST", "events"),
    ]
    # the rest of the run arrives as events: the Job's, its pod's, the worker's status writes
    other = api.find(G, names.PLURAL, "ns", "other")
    assert other is not None
    job = other["status"]["jobName"]
    start = len(api.requests)
    api.put("v1", "pods", pod_of(job))
    control.reconcile("ns", "other")
    worker_writes(api, "other", message="embedding")
    control.reconcile("ns", "other")
    worker_writes(
        api, "other", phase="Completed", message="done", completionTime="2026-11-28T12:01:00Z"
    )
    control.reconcile("ns", "other")
    job_obj = api.find("batch/v1", "jobs", "ns", job)
    assert job_obj is not None
    job_obj["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    control.reconcile("ns", "other")
    assert calls(api, start) == [("PATCH", f"{names.PLURAL}/status")] * 2  # the worker's two


def test_a_restart_costs_no_request_per_resource() -> None:
    """kopf's initial listings fill the cache; reconciling every listed resource, and the
    resync, read nothing more."""
    api = new_api(run=None)
    for i in range(10):
        add_resource(api, f"done-{i}", run="r1")
        add_resource(api, f"running-{i}", run="r1")
    first = controller(api)
    first.reconcile("ns", "demo")
    for i in range(10):
        first.reconcile("ns", f"done-{i}")
        first.reconcile("ns", f"running-{i}")
        worker_writes(api, f"done-{i}", phase="Completed", completionTime="2026-11-28T12:01:00Z")
    for job in api.all("batch/v1", "jobs", "ns"):
        api.put("v1", "pods", pod_of(job["metadata"]["name"]))
    start = len(api.requests)
    restarted = controller(api)
    restarted.watch.deliver()
    for obj in api.all(G, names.PLURAL, "ns"):
        restarted.reconcile("ns", obj["metadata"]["name"])
    assert restarted.with_work() == []  # the running ones are young: no clock-based ending yet
    restarted.clock.now += timedelta(seconds=61)  # past the pod start timeout
    running = {("ns", f"running-{i}") for i in range(10)}
    assert set(restarted.with_work()) == running  # their pods may never start: look again
    for key in restarted.with_work():
        restarted.reconcile(*key)  # each has its pod: nothing to do, nothing to confirm
    assert calls(api, start) == []


def test_a_burst_in_a_new_namespace_ensures_the_workers_rights_once() -> None:
    from concurrent.futures import ThreadPoolExecutor

    api = new_api(run=None)
    for i in range(16):
        add_resource(api, f"r-{i}", run="r1")
    control = controller(api)
    control.watch.deliver()
    with ThreadPoolExecutor(16) as pool:  # the work queue's reconciles, at once
        delays = list(pool.map(lambda i: Controller.reconcile(control, "ns", f"r-{i}"), range(16)))
    assert delays == [None] * 16 and len(api.all("batch/v1", "jobs", "ns")) == 16
    assert calls(api).count(("GET", "clusterroles")) == 1


def test_a_namespace_slow_to_get_the_workers_rights_holds_up_no_other() -> None:
    """Ensuring the worker's rights is serialized per namespace, not across them: a first run
    in a namespace whose ServiceAccount create hangs must not stall runs elsewhere."""
    api = new_api()
    add_resource(api, "demo", run="r1", namespace="slow")
    held, release = threading.Event(), threading.Event()
    handle = api.handle

    def gated(request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and "/namespaces/slow/serviceaccounts" in request.url.path:
            held.set()
            release.wait(30)
        return handle(request)

    api.handle = gated  # type: ignore[method-assign]
    control = controller(api)
    control.watch.deliver()
    slow = threading.Thread(target=Controller.reconcile, args=(control, "slow", "demo"))
    slow.start()
    assert held.wait(30)
    assert Controller.reconcile(control, "ns", "demo") is None
    assert slow.is_alive(), "the other namespace's run waited for the slow one"
    assert status(api)["phase"] == "Running"
    release.set()
    slow.join(30)
    assert len(api.all("batch/v1", "jobs", "slow")) == 1


def test_a_restart_lists_jobs_and_pods_once_before_the_resources_arrive() -> None:
    """The operator's Job and pod watches list before kopf's resource watch starts, so no
    Running resource is confirmed read by read."""
    api = new_api(run=None)
    first = controller(api)
    first.reconcile("ns", "demo")
    for i in range(10):
        add_resource(api, f"running-{i}", run="r1")
        first.reconcile("ns", f"running-{i}")
    api.put("v1", "pods", pod_of("unrelated"))  # not the operator's: the LIST must not see it
    api.find("v1", "pods", "ns", "unrelated-pod")["metadata"]["labels"].pop(names.OWNER_LABEL)  # type: ignore[index]
    start = len(api.requests)
    restarted = Controller(api.kube("embedding-operator"), SETTINGS, clock=Clock())
    Watches(restarted.kube, restarted.cache, ("ns",), changed=lambda key: None).list()
    for obj in api.all(G, names.PLURAL, "ns"):  # the resource watch, before the Job watch
        restarted.cache.observe("resource", None, copy.deepcopy(obj))
    for obj in api.all(G, names.PLURAL, "ns"):
        assert restarted.reconcile("ns", obj["metadata"]["name"]) is None
    assert calls(api, start) == [("GET", "jobs"), ("GET", "pods")]
    assert api.requests[start].params["labelSelector"] == OWNED
    assert restarted.cache.sizes() == (11, 10, 0)
    assert all(o["status"]["phase"] == "Running" for o in api.all(G, names.PLURAL, "ns")[1:])


def test_a_plan_that_would_end_a_run_is_confirmed_with_the_api_first() -> None:
    """A cold or lagging cache (the Job's watch not listed yet after a restart) says the Job is
    gone and the pod never came: that must not fail a healthy run or delete its Job."""
    api = new_api()
    clock = Clock()
    control = controller(api, clock)
    control.reconcile("ns", "demo")
    job = status(api)["jobName"]
    api.put("v1", "pods", pod_of(job))
    cold = Controller(api.kube("embedding-operator"), SETTINGS, clock=clock)
    cold.cache.observe("resource", None, copy.deepcopy(resource(api)))  # only the resource
    clock.now = NOW + timedelta(seconds=61)  # past the start timeout, too
    start = len(api.requests)
    assert cold.reconcile("ns", "demo") is None
    assert calls(api, start) == [("GET", "jobs"), ("GET", "pods")]
    assert status(api)["phase"] == "Running" and api.find("batch/v1", "jobs", "ns", job)
    start = len(api.requests)
    cold.reconcile("ns", "demo")  # what it read is cached now
    assert calls(api, start) == []


def test_a_stale_cache_meets_a_conflict_and_rereads_once() -> None:
    api = new_api()
    control = controller(api)
    control.watch.deliver()
    # the resource changes behind the cache's back (its watch event not delivered yet)
    api.kube().patch(
        f"/apis/{G}/namespaces/ns/{names.PLURAL}/demo", {"metadata": {"labels": {"a": "b"}}}
    )
    start = len(api.requests)
    assert Controller.reconcile(control, "ns", "demo") is None
    assert control.events.flush(10)
    gets = [c for c in calls(api, start) if c == ("GET", names.PLURAL)]
    assert len(gets) == 1
    assert ("PATCH", f"{names.PLURAL}/status") in calls(api, start)
    assert status(api)["phase"] == "Running" and len(api.all("batch/v1", "jobs", "ns")) == 1
    assert events(api).count(("Normal", "Accepted")) == 1


def test_an_older_watch_event_never_overwrites_what_a_write_returned() -> None:
    api = new_api()
    control = controller(api)
    control.watch.deliver()
    old = copy.deepcopy(resource(api))
    Controller.reconcile(control, "ns", "demo")  # writes Running; the cache holds the answer
    # the watch, lagging, delivers the old version: nothing new, nothing stored
    assert not control.cache.observe("resource", "MODIFIED", old)
    cached = control.cache.resource("ns", "demo")
    assert cached is not None and cached["status"]["phase"] == "Running"
    start = len(api.requests)
    assert Controller.reconcile(control, "ns", "demo") is None
    assert calls(api, start) == []  # nothing planned from the old body


def test_the_echo_of_the_operators_own_write_queues_no_reconcile() -> None:
    """So a failed reconcile's status write cannot bring it back before its backoff, and a run
    costs one reconcile per change that is not the operator's own."""
    import kopf

    from embedding_operator.controller import handlers

    api = new_api()
    control = controller(api)
    queue = WorkQueue(lambda key: None, workers=1)
    memo = kopf.Memo(controller=control, queue=queue)
    control.watch.deliver()
    Controller.reconcile(control, "ns", "demo")  # writes Running, stores the answer
    echo = {"type": "MODIFIED", "object": copy.deepcopy(resource(api))}
    asyncio.run(handlers.resource_event(memo=memo, event=echo, namespace="ns", name="demo"))  # type: ignore[arg-type]
    assert len(queue) == 0
    annotate(api, names.CANCEL_ANNOTATION, "c1")
    api.kube().patch(f"/apis/{G}/namespaces/ns/{names.PLURAL}/demo", {"metadata": {}})
    news = {"type": "MODIFIED", "object": copy.deepcopy(resource(api))}
    asyncio.run(handlers.resource_event(memo=memo, event=news, namespace="ns", name="demo"))  # type: ignore[arg-type]
    assert len(queue) == 1


def test_the_cache_forgets_deleted_objects_and_a_late_write_does_not_revive_them() -> None:
    cache = Cache()
    body = {"metadata": {"namespace": "ns", "name": "a", "uid": "u", "resourceVersion": "5"}}
    cache.observe("resource", None, body)
    cache.observe("resource", "DELETED", {**body, "metadata": {**body["metadata"]}})
    late = {"metadata": {**body["metadata"], "resourceVersion": "4"}}
    cache.stored("resource", late)
    assert cache.resource("ns", "a") is None
    pod = pod_of("j")
    cache.observe("pod", None, pod)
    assert [p["metadata"]["name"] for p in cache.pods("ns", "j")] == ["j-pod"]
    cache.observe("pod", "DELETED", pod)
    assert cache.pods("ns", "j") == [] and cache.sizes() == (0, 0, 0)


def test_the_cache_keeps_no_vectors_and_no_managed_fields(worker_env: StandIn) -> None:
    api, job = running_api(["alpha", "beta"])
    assert run_worker("ns", "demo", job, kube=api.kube("embedding-operator-worker")) == 0
    control = controller(api)
    control.watch.deliver()
    body = resource(api)
    assert set(VECTOR_FIELDS) & set(body["status"]["result"])  # what the worker wrote has them
    cached = control.cache.resource("ns", "demo")
    assert cached is not None
    assert not set(VECTOR_FIELDS) & set(cached["status"]["result"])
    assert cached["status"]["result"]["totalTokens"] == body["status"]["result"]["totalTokens"]
    assert "managedFields" not in cached["metadata"] and "managedFields" in body["metadata"]
    start = len(api.requests)
    assert Controller.reconcile(control, "ns", "demo") is None  # the slim body still parses
    assert calls(api, start) == []
    control.cache.observe("pod", None, pod_of("j"))
    assert "spec" not in control.cache.pods("ns", "j")[0]


# -- the worker ---------------------------------------------------------------------------------


def running_api(inputs: list[str] | None = None) -> tuple[FakeApi, str]:
    api = new_api(inputs=inputs)
    controller(api).reconcile("ns", "demo")
    return api, status(api)["jobName"]


def test_the_final_write_outlasts_an_api_outage() -> None:
    api, job = running_api()
    slept: list[float] = []
    kube = api.kube("embedding-operator-worker", policy=RetryPolicy(timeout=1, budget=0))
    writer = StatusWriter(kube, "ns", "demo", job, sleep=slept.append)
    api.fail("PATCH", "/status", 503, times=10)  # minutes of outage at the writer's pace
    api.fail("GET", "/deploymentembeddings/demo", 0, times=5)  # and dropped connections
    writer.write("done", phase=Phase.COMPLETED, reason=Reason.COMPLETED, patience=600)
    assert status(api)["phase"] == "Completed"
    assert len(slept) == 15 and sum(slept) > 40  # it waited between attempts
    managers = {f["manager"] for f in resource(api)["metadata"]["managedFields"]}
    assert "embedding-operator-worker" in managers


def test_a_write_without_patience_gives_up_on_an_outage() -> None:
    from embedding_operator.kube import KubeError

    api, job = running_api()
    kube = api.kube(policy=RetryPolicy(timeout=1, budget=0))
    writer = StatusWriter(kube, "ns", "demo", job, sleep=lambda _: None)
    api.fail("PATCH", "/status", 503, times=10_000)
    with pytest.raises(KubeError):
        writer.write("done", phase=Phase.COMPLETED, reason=Reason.COMPLETED)


def test_run_worker_completes_and_does_not_pay_twice_across_an_outage(
    worker_env: StandIn,
) -> None:
    standin = worker_env
    api, job = running_api(["alpha", "beta"])
    kube = api.kube("embedding-operator-worker", policy=RetryPolicy(timeout=1, budget=0))
    # the "embedding" write goes through; the final one meets an outage
    api.fail("PATCH", "/status", 503, times=6, after=1)
    slept: list[float] = []
    assert run_worker("ns", "demo", job, kube=kube, clock=Clock(), sleep=slept.append) == 0
    assert len(slept) == 6
    assert status(api)["phase"] == "Completed", status(api)["message"]
    assert result_array(Result.model_validate(status(api)["result"])).shape == (2, 1024)
    assert standin.stats.inputs == 2  # each input paid for once
    assert condition(api, ConditionType.SUCCEEDED)["reason"] == Reason.COMPLETED


def test_run_worker_of_a_superseded_run_does_nothing() -> None:
    api, _ = running_api()
    assert run_worker("ns", "demo", "someone-elses-job", kube=api.kube()) == ExitCode.OK
    assert status(api)["phase"] == "Running"


def test_a_namespaced_operator_does_not_scan_namespaces() -> None:
    """A namespaced install may not list namespaces; kopf scanning them anyway would wait out
    its error backoffs (~55 s) on every start and leader handover before acting."""
    import kopf

    from embedding_operator.controller import handlers

    namespaced, clusterwide = kopf.OperatorSettings(), kopf.OperatorSettings()
    handlers.configure(namespaced, ("team-a", "team-b"))
    handlers.configure(clusterwide, ())
    assert namespaced.scanning.disabled and not clusterwide.scanning.disabled
    for settings in (namespaced, clusterwide):
        assert not settings.posting.enabled
