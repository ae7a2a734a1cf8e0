"""Never stuck, on the real control plane: the Kubernetes boundary against an apiserver behind a
misbehaving proxy (calls that hang, 429 and 500 bursts, dropped connections), and the operator
converging by itself from refusals (a Job quota of 0, a pod quota of 0, a deleted worker
ServiceAccount) and from returning to an earlier run-request value."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from embedding_operator.api import names
from embedding_operator.kube import Kube, KubeError, RetryPolicy, core_path
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.test_operator import annotate, create, events, get, jobs, manifest, patch, wait_phase
from tests.e2e.test_operator import reason as reason_of
from tests.fault_proxy import FaultProxy, for_cluster
from tests.health import argocd, kstatus
from tests.voyage_standin import StandIn

pytestmark = pytest.mark.cluster


@pytest.fixture
def proxy(cluster: ClusterHandle) -> Iterator[FaultProxy]:
    with for_cluster(str(cluster.kubeconfig)) as p:
        yield p


def kube_via(proxy: FaultProxy, budget: float = 10.0) -> Kube:
    from embedding_operator.kube import Connection

    policy = RetryPolicy(timeout=2.0, budget=budget, initial_backoff=0.1, max_backoff=1.0)
    return Kube(Connection(host=proxy.url), field_manager="e2e", policy=policy)


# -- the boundary ---------------------------------------------------------------------------------


def test_a_call_that_never_answers_times_out_and_the_next_one_works(
    proxy: FaultProxy, namespace: str
) -> None:
    kube = kube_via(proxy, budget=3.0)
    path = core_path(namespace, "configmaps")
    proxy.fail("GET", "/configmaps", "hang", times=1_000)
    with pytest.raises(KubeError) as info:
        kube.list(path)  # without a timeout this would wait forever (pytest-timeout fails it)
    assert info.value.reason == "Timeout" and info.value.transient
    assert proxy.count("GET", "/configmaps", "hang") >= 2  # retried within the budget
    proxy.heal()
    assert "kube-root-ca.crt" in {o["metadata"]["name"] for o in kube.list(path)}


@pytest.mark.parametrize(
    ("action", "retry_after"), [("429", "1"), ("500", None), ("503", None), ("drop", None)]
)
def test_bursts_of_refusals_are_ridden_out_through_the_real_apiserver(
    proxy: FaultProxy, namespace: str, api: Any, action: str, retry_after: str | None
) -> None:
    kube = kube_via(proxy)
    proxy.fail("POST", "/configmaps", action, times=3, retry_after=retry_after)
    body = {"metadata": {"name": "c"}, "data": {"k": "v"}}  # data, so a manager owns fields
    made = kube.create(core_path(namespace, "configmaps"), body)
    assert made is not None and made["metadata"]["name"] == "c"
    assert proxy.count("POST", "/configmaps", action) == 3
    assert proxy.count("POST", "/configmaps", "forwarded") == 1
    stored = apis.CoreV1Api(api).read_namespaced_config_map("c", namespace)
    assert {f.manager for f in stored.metadata.managed_fields} == {"e2e"}  # named the manager
    proxy.fail("GET", "/configmaps/c", action, times=3, retry_after=retry_after)
    assert kube.get(core_path(namespace, "configmaps", "c")) is not None


def test_a_burst_longer_than_the_budget_is_an_error_not_a_hang(
    proxy: FaultProxy, namespace: str
) -> None:
    kube = kube_via(proxy, budget=2.0)
    proxy.fail("GET", "/configmaps", "500", times=10_000)
    with pytest.raises(KubeError) as info:
        kube.list(core_path(namespace, "configmaps"))
    assert info.value.status == 500


# -- the operator -------------------------------------------------------------------------------


def _quota(api: Any, namespace: str, hard: dict[str, str]) -> None:
    apis.CoreV1Api(api).create_namespaced_resource_quota(
        namespace, {"metadata": {"name": "zero"}, "spec": {"hard": hard}}
    )


def _condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next(
        (c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_),
        None,
    )


@pytest.mark.usefixtures("operator")
def test_a_job_quota_of_zero_is_reported_and_the_run_starts_once_it_is_lifted(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    _quota(api, namespace, {"count/jobs.batch": "0"})
    create(api, namespace, manifest("quota", ["a", "b"]))

    def refused() -> dict[str, Any] | None:
        cond = _condition(get(api, namespace, "quota"), "RunRequest")
        return cond if cond and cond["reason"] == "JobCreateFailed" else None

    cond = wait_for(refused, 30, what="RunRequest=False/JobCreateFailed")
    assert cond["status"] == "False" and "exceeded quota" in cond["message"]
    obj = get(api, namespace, "quota")
    assert obj["status"]["phase"] == "Pending"
    assert "lastHandledRunRequest" not in obj["status"]
    # a run that cannot start is not healthy: GitOps tools wait (and time out with the reason)
    assert (_condition(obj, "Ready") or {}).get("status") == "False"
    assert (kstatus([obj]), argocd(obj)) == (["InProgress"], "Progressing")
    warned = [e for e in events(api, namespace, "quota") if e.reason == "JobCreateFailed"]
    assert warned and warned[0].type == "Warning" and "exceeded quota" in warned[0].message
    apis.CoreV1Api(api).delete_namespaced_resource_quota("zero", namespace)
    # nothing else touches the resource: the operator's own requeue starts the run
    done = wait_phase(api, namespace, "quota", "Completed", "Failed", timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    assert len(jobs(api, namespace, "quota")) == 1


@pytest.mark.usefixtures("operator")
def test_a_job_that_gets_no_pod_fails_fast_with_the_jobs_own_reason(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    _quota(api, namespace, {"pods": "0"})
    create(api, namespace, manifest("nopod", ["a"]))
    failed = wait_phase(api, namespace, "nopod", "Failed", timeout=60)  # start timeout is 6 s
    assert reason_of(failed) == "PodNotStarted"
    assert "exceeded quota" in failed["status"]["message"], failed["status"]["message"]


@pytest.mark.usefixtures("operator")
def test_a_deleted_worker_service_account_fails_one_run_clearly_and_is_back_for_the_next(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    """The operator ensures the worker's rights once per namespace, not per run (docs/operator.md,
    "Reads come from the watches"): the run right after a deletion gets no pod and says why;
    that failure makes the next run check the rights again."""
    create(api, namespace, manifest("sa", ["a"]))
    done = wait_phase(api, namespace, "sa", "Completed", "Failed")
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    apis.CoreV1Api(api).delete_namespaced_service_account("embedding-operator-worker", namespace)

    def run(request: str, inputs: list[str]) -> dict[str, Any]:
        patch(api, namespace, "sa", {"spec": {"inputs": inputs}})
        wait_for(lambda: get(api, namespace, "sa")["status"]["phase"] == "Pending", 30)
        annotate(api, namespace, "sa", names.RUN_ANNOTATION, request)
        finished: dict[str, Any] = wait_for(
            lambda: (
                (o := get(api, namespace, "sa"))["status"].get("lastHandledRunRequest") == request
                and o["status"]["phase"] in ("Completed", "Failed")
                and o
            ),
            90,
            what=f"the run {request}",
        )
        return finished

    without = run("r2", ["b"])  # the start timeout is 6 s
    assert reason_of(without) == "PodNotStarted", without["status"].get("message")
    assert "serviceaccount" in without["status"]["message"], without["status"]["message"]
    again = run("r3", ["c"])
    assert again["status"]["phase"] == "Completed", again["status"].get("message")


@pytest.mark.usefixtures("operator")
def test_returning_to_an_earlier_run_request_value_runs_again_gitops_form(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    """Applied with ``first-run``, annotated ``r2`` by hand, then the manifest is edited and
    applied again, so the annotation reverts to ``first-run``: a new run, not the old Job."""
    create(api, namespace, manifest("gitops", ["a"], run="first-run"))
    first = wait_phase(api, namespace, "gitops", "Completed", "Failed")
    assert first["status"]["phase"] == "Completed", first["status"].get("message")
    patch(api, namespace, "gitops", {"spec": {"inputs": ["b"]}})
    annotate(api, namespace, "gitops", names.RUN_ANNOTATION, "r2")

    def finished(request: str) -> dict[str, Any] | None:
        obj = get(api, namespace, "gitops")
        status = obj["status"]
        done = status["phase"] in ("Completed", "Failed")
        return obj if status.get("lastHandledRunRequest") == request and done else None

    second = wait_for(lambda: finished("r2"), 90, what="the r2 run")
    assert second["status"]["phase"] == "Completed", second["status"].get("message")
    # the GitOps apply: spec edited, annotation back to the manifest's value, in one write
    patch(
        api,
        namespace,
        "gitops",
        {
            "metadata": {"annotations": {names.RUN_ANNOTATION: "first-run"}},
            "spec": {"inputs": ["c"]},
        },
    )
    third = wait_for(lambda: finished("first-run"), 90, what="the second first-run run")
    assert third["status"]["phase"] == "Completed", third["status"].get("message")
    assert third["status"]["runCount"] == 3
    names_seen = {first["status"]["jobName"], second["status"]["jobName"]}
    assert third["status"]["jobName"] not in names_seen
    assert len(jobs(api, namespace, "gitops")) == 3
