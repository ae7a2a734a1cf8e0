"""Two operator replicas on the real control plane, each a real ``embedding-operator run`` with
the chart's rights (its leader-election Role included): one leads, the other stands by; the
leader SIGKILLed in the middle of a stream of run requests is replaced, and every request ends
with exactly one Job; a leader stopped gracefully hands over at once. Handover times are printed
(run with ``-s``), not asserted: the wait limits below only end a broken test."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client import ApiException

from embedding_operator.api import names
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.conftest import OPERATOR_ENV, operator_kubeconfig
from tests.e2e.stack import OPERATOR_NAMESPACE, OperatorProcess
from tests.e2e.test_operator import create, get, jobs, manifest, wait_phase
from tests.voyage_standin import StandIn

pytestmark = pytest.mark.cluster

LEASE = "e2e-embedding-operator"  # the chart's name for release "e2e" (install_chart_rbac)
DURATION = 8  # the defaults: duration 8 s, renew deadline 5 s, retry period 2 s
REPLICAS = ("replica-a", "replica-b")


def lease(api: Any) -> dict[str, Any]:
    found = apis.CustomObjectsApi(api).get_namespaced_custom_object(
        "coordination.k8s.io", "v1", OPERATOR_NAMESPACE, "leases", LEASE
    )
    spec: dict[str, Any] = found["spec"]
    return spec


def holder(api: Any) -> str:
    try:
        return str(lease(api).get("holderIdentity") or "")
    except ApiException as e:
        if e.status == 404:
            return ""
        raise


def delete_lease(api: Any) -> None:
    try:
        apis.CustomObjectsApi(api).delete_namespaced_custom_object(
            "coordination.k8s.io", "v1", OPERATOR_NAMESPACE, "leases", LEASE
        )
    except ApiException as e:
        if e.status != 404:
            raise


def start_leader_and_standby(api: Any, a: OperatorProcess, b: OperatorProcess) -> None:
    a.start()
    wait_for(lambda: leads(api, "replica-a"), 60, what="replica-a leading")
    a.wait_ready()
    b.start()
    b.wait_ready()  # the standby's own /healthz: live while it waits
    wait_for(lambda: "standby" in b.log(), 30, what="replica-b standing by")
    assert leads(api, "replica-a")
    assert "Starting Kopf" not in b.log() and "created Job" not in b.log()


@pytest.fixture
def replicas(
    request: pytest.FixtureRequest,
    cluster: ClusterHandle,
    crd: dict[str, Any],
    standin: StandIn,
    api: Any,
    api_key_secret: str,
    voyage: StandIn,
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two replicas as the chart runs them (same Lease, own HOSTNAME and ports): replica-a
    leading, replica-b standing by."""
    from tests.cluster.harness import free_port

    kubeconfig = operator_kubeconfig(cluster, standin)
    delete_lease(api)  # no holder left by an earlier test
    env = {
        **OPERATOR_ENV,
        "VOYAGE_BASE_URL": standin.base_url,
        "EMBEDDING_OPERATOR_LEASE_NAMESPACE": OPERATOR_NAMESPACE,
        "EMBEDDING_OPERATOR_LEASE_NAME": LEASE,
        # a stream of worker pods on the process kubelet of a loaded 2-core machine starts slowly
        "EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS": "300",
    }
    a, b = (
        OperatorProcess(
            kubeconfig,
            cluster.log_dir / f"operator-{who}-{request.node.name[5:40]}.log",
            {**env, "HOSTNAME": who},
            metrics_port=free_port(),
            liveness_port=free_port(),
        )
        for who in REPLICAS
    )
    try:
        start_leader_and_standby(api, a, b)
        yield a, b
    finally:
        a.stop()
        b.stop()
        delete_lease(api)


def leads(api: Any, who: str) -> bool:
    return holder(api).startswith(f"{who}_")


def test_a_killed_leader_is_replaced_mid_stream_with_one_job_per_run_request(
    api: Any, namespace: str, replicas: tuple[OperatorProcess, OperatorProcess]
) -> None:
    a, b = replicas
    transitions = lease(api)["leaseTransitions"]

    # A stream of run requests, one new resource every 200 ms, before, during and after the
    # handover: the kill lands in the middle of it by construction.
    names_ = [f"stream-{i:02d}" for i in range(20)]
    created: list[float] = []

    def stream() -> None:
        for name in names_:
            create(api, namespace, manifest(name, [f"text of {name}"]))
            created.append(time.monotonic())
            time.sleep(0.2)

    streamer = threading.Thread(target=stream)
    streamer.start()
    try:
        wait_for(lambda: len(created) >= 8, 60, what="the stream under way")
        wait_for(lambda: jobs_in(api, namespace), 60, what="the leader creating Jobs")
        assert "created Job" not in b.log()  # the standby has not acted
        last_renewal = lease(api)["renewTime"]
        killed = time.monotonic()
        a.kill()
        had_job = {j.metadata.labels[names.OWNER_LABEL] for j in jobs_in(api, namespace)}
        wait_for(lambda: leads(api, "replica-b"), 60, interval=0.05, what="replica-b leading")
        acquired = time.monotonic()
        first_new = wait_for(
            lambda: [
                j
                for j in jobs_in(api, namespace)
                if j.metadata.labels[names.OWNER_LABEL] not in had_job
            ],
            60,
            interval=0.05,
            what="a Job from the new leader",
        )
        acting = time.monotonic()
    finally:
        streamer.join(60)
    requests_during_gap = sum(killed < t < acting for t in created)

    taken = lease(api)
    assert taken["leaseTransitions"] == transitions + 1
    # never early: the standby waited out a full duration after the dead leader's last renewal
    waited = (_time(taken["acquireTime"]) - _time(last_renewal)).total_seconds()
    assert waited >= DURATION - 0.5, (last_renewal, taken["acquireTime"])

    def recorded(name: str) -> dict[str, Any] | None:
        status = get(api, namespace, name).get("status") or {}
        started = status.get("phase") in ("Running", "Completed") and status.get("jobName")
        return status if started else None

    for name in names_:  # every request taken up, each with exactly its one Job
        status = wait_for(lambda n=name: recorded(n), 120, what=f"{name}'s run recorded")
        assert status["lastHandledRunRequest"] == "r1", name
        assert [j.metadata.name for j in jobs(api, namespace, name)] == [status["jobName"]]
    assert len(jobs_in(api, namespace)) == len(names_)
    print(
        f"\nhandover after SIGKILL: lease acquired {acquired - killed:.1f} s, first Job by the "
        f"new leader {acting - killed:.1f} s after the kill (renewal to acquisition {waited:.1f}"
        f" s); {len(had_job)} of {len(names_)} resources had a Job at the kill, "
        f"{requests_during_gap} run requests arrived leaderless; {first_new[0].metadata.name}"
    )


def test_a_leader_stopped_gracefully_hands_over_at_once(
    api: Any, namespace: str, replicas: tuple[OperatorProcess, OperatorProcess]
) -> None:
    a, _ = replicas
    assert a.proc is not None
    stopped = time.monotonic()
    os.killpg(a.proc.pid, signal.SIGTERM)  # as a rolling update or a drain
    wait_for(lambda: leads(api, "replica-b"), 60, interval=0.05, what="replica-b leading")
    acquired = time.monotonic()
    a.stop()  # wait for it to exit
    assert "released Lease" in a.log()
    create(api, namespace, manifest("after-handover", ["handed over"]))
    done = wait_phase(api, namespace, "after-handover", "Completed", "Failed", timeout=90)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    assert len(jobs(api, namespace, "after-handover")) == 1
    print(
        f"\nhandover after SIGTERM: lease acquired {acquired - stopped:.1f} s after the stop began"
    )


def jobs_in(api: Any, namespace: str) -> list[Any]:
    return list(apis.BatchV1Api(api).list_namespaced_job(namespace).items)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
