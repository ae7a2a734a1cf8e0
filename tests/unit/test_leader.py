"""Leader election on a Lease (controller/leader.py) against the in-memory API: acquire, renew,
take over an expired Lease, lose on conflict, release. The handover of two real operator
processes on the real apiserver is tests/e2e/test_leader_election.py."""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from embedding_operator import settings as registry
from embedding_operator.controller import leader
from embedding_operator.controller.leader import Election, LeaderElector, leadership
from embedding_operator.kube import Connection, Kube, RetryPolicy
from tests.fake_kube import FakeApi

NS, NAME = "operators", "embedding-operator"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{NAME}"
NO_RETRY = RetryPolicy(timeout=1.0, budget=0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def election(identity: str, **timing: Any) -> Election:
    return Election(
        namespace=NS,
        name=NAME,
        identity=identity,
        lease_duration=timing.get("lease_duration", 10),
        renew_deadline=timing.get("renew_deadline", 7.0),
        retry_period=timing.get("retry_period", 2.0),
    )


def elector(api: FakeApi, identity: str, clock: Clock, **timing: Any) -> LeaderElector:
    return LeaderElector(api.kube(policy=NO_RETRY), election(identity, **timing), monotonic=clock)


def lease(api: FakeApi) -> dict[str, Any]:
    found = api.find("coordination.k8s.io/v1", "leases", NS, NAME)
    assert found is not None
    spec: dict[str, Any] = found["spec"]
    return spec


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_the_first_candidate_creates_the_lease_and_leads(api: FakeApi, clock: Clock) -> None:
    a = elector(api, "a", clock)
    assert a.try_acquire_or_renew()
    spec = lease(api)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 10
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    assert datetime.fromisoformat(spec["renewTime"]).tzinfo == UTC


def test_the_leader_renews_with_one_write_and_keeps_its_acquire_time(
    api: FakeApi, clock: Clock
) -> None:
    a = elector(api, "a", clock)
    a.try_acquire_or_renew()
    first = dict(lease(api))
    api.requests.clear()
    clock.now += 2
    assert a.try_acquire_or_renew()
    assert [(r.method, r.path) for r in api.requests] == [("PUT", PATH)]
    spec = lease(api)
    assert spec["holderIdentity"] == "a"
    assert spec["acquireTime"] == first["acquireTime"]
    assert spec["renewTime"] >= first["renewTime"]
    assert spec["leaseTransitions"] == 0


def test_a_standby_waits_while_the_lease_is_renewed(api: FakeApi, clock: Clock) -> None:
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.try_acquire_or_renew()
    for _ in range(10):  # 30 s: three lease durations, renewed all along
        assert not b.try_acquire_or_renew()
        clock.now += 3
        a.try_acquire_or_renew()
    assert lease(api)["holderIdentity"] == "a"
    assert b.holder == "a"


def test_a_standby_takes_over_a_lease_not_renewed_for_its_duration(
    api: FakeApi, clock: Clock
) -> None:
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b first sees the record now
    clock.now += 9.9
    assert not b.try_acquire_or_renew()  # unchanged for less than leaseDurationSeconds
    clock.now += 0.2
    assert b.try_acquire_or_renew()
    spec = lease(api)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1


def test_a_standby_asks_again_when_the_lease_would_expire_not_a_period_later(
    api: FakeApi, clock: Clock
) -> None:
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    assert 2.0 <= b._until_next_attempt() <= 2.4  # a retry period, jittered
    clock.now += 9.5  # the Lease, unchanged, expires in 0.5 s
    assert b._until_next_attempt() == pytest.approx(0.51)
    clock.now += 1
    assert 2.0 <= b._until_next_attempt() <= 2.4  # expired: the period again


def test_expiry_is_judged_by_the_standbys_own_clock_not_the_written_times(
    api: FakeApi, clock: Clock
) -> None:
    # The holder's renewTime is an hour old (a skewed clock); the standby has only now seen
    # the record, so it waits the lease duration from now.
    a = LeaderElector(
        api.kube(policy=NO_RETRY),
        election("a"),
        monotonic=clock,
        wall=lambda: datetime(2020, 1, 1, tzinfo=UTC),
    )
    a.try_acquire_or_renew()
    b = elector(api, "b", clock)
    assert not b.try_acquire_or_renew()
    clock.now += 5
    assert not b.try_acquire_or_renew()


def test_the_holders_lease_duration_counts_not_the_standbys(api: FakeApi, clock: Clock) -> None:
    a, b = elector(api, "a", clock, lease_duration=30), elector(api, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.now += 15  # past b's own 10 s, within a's 30 s
    assert not b.try_acquire_or_renew()
    clock.now += 16
    assert b.try_acquire_or_renew()


def test_of_two_standbys_racing_for_an_expired_lease_one_wins(api: FakeApi, clock: Clock) -> None:
    elector(api, "old", clock).try_acquire_or_renew()
    b = elector(api, "b", clock)

    # c's client lets b act between c's read and c's write: both saw the same expired Lease.
    def interleave(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            assert b.try_acquire_or_renew()
        return api.handle(request)

    c_kube = Kube(
        Connection(host="http://fake-api"),
        field_manager="test",
        policy=NO_RETRY,
        transport=httpx.MockTransport(interleave),
    )
    c = LeaderElector(c_kube, election("c"), monotonic=clock)
    assert not b.try_acquire_or_renew() and not c.try_acquire_or_renew()
    clock.now += 11
    assert not c.try_acquire_or_renew()  # its write named a resourceVersion b's changed: 409
    assert lease(api)["holderIdentity"] == "b"
    assert lease(api)["leaseTransitions"] == 1
    assert c.renewed_at is None


def test_a_leader_whose_lease_was_taken_knows_at_its_next_renewal(
    api: FakeApi, clock: Clock
) -> None:
    # Its own clock says its renew deadline is far (it was not paused: b's clock ran fast, or
    # a's renewals were lost on the way); the Lease naming b is what tells it.
    a = elector(api, "a", Clock(), retry_period=0.01)
    b = elector(api, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.now += 11
    assert b.try_acquire_or_renew()
    timer = threading.Timer(10, a.stopping.set)  # a wrong renew would loop: end it, fail below
    timer.start()
    try:
        assert not a.renew()  # the 409 on its renewal; then it reads b's Lease
    finally:
        timer.cancel()
    assert a.renewed_at is None
    assert lease(api)["holderIdentity"] == "b"


def test_the_leader_gives_up_after_the_renew_deadline(api: FakeApi, clock: Clock) -> None:
    a = elector(api, "a", clock, lease_duration=1, renew_deadline=0.3, retry_period=0.05)
    a.try_acquire_or_renew()
    api.fail("PUT", "/leases/", 503, times=1000)
    api.fail("GET", "/leases/", 0, times=1000)  # and reads never connect
    clock.now += 0.31
    assert not a.renew()
    assert a.renewed_at is None
    assert leader.LEADING._value.get() == 0


def test_the_leader_keeps_leading_through_a_short_outage(api: FakeApi, clock: Clock) -> None:
    a = elector(api, "a", clock, retry_period=0.01)
    a.try_acquire_or_renew()
    api.fail("PUT", "/leases/", 503, times=3)
    done: list[bool] = []
    thread = threading.Thread(target=lambda: done.append(a.renew()))
    thread.start()
    try:
        api_renewals = 0
        while api_renewals < 6:  # three refused, then renewed again
            api_renewals = sum(r.method == "PUT" for r in api.requests)
            time.sleep(0.01)
        assert a.renewed_at is not None
    finally:
        a.release()
        thread.join(5)
    assert done == [True]
    assert not lease(api).get("holderIdentity")


def test_release_hands_over_at_the_next_attempt(api: FakeApi, clock: Clock) -> None:
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    a.release()
    spec = lease(api)
    assert not spec.get("holderIdentity")
    assert spec["leaseDurationSeconds"] == 1
    assert b.try_acquire_or_renew()  # no waiting out the duration
    assert lease(api)["holderIdentity"] == "b"
    assert lease(api)["leaseTransitions"] == 1


def test_release_leaves_a_lease_someone_else_took_alone(api: FakeApi, clock: Clock) -> None:
    a, b = elector(api, "a", clock), elector(api, "b", clock)
    a.try_acquire_or_renew()
    b.try_acquire_or_renew()
    clock.now += 11
    b.try_acquire_or_renew()
    a.release()  # a's copy is stale: a 409, so b's Lease stays as b wrote it
    assert lease(api)["holderIdentity"] == "b"
    assert lease(api)["leaseDurationSeconds"] == 10


def test_timings_that_could_make_two_leaders_are_refused() -> None:
    with pytest.raises(registry.SettingError, match="EMBEDDING_OPERATOR_LEASE_RENEW_DEADLINE"):
        election("a", lease_duration=10, renew_deadline=8.0, retry_period=2.0)
    env = {"EMBEDDING_OPERATOR_LEASE_NAMESPACE": NS}
    found = Election.from_env(env)
    assert found is not None
    assert (found.lease_duration, found.renew_deadline, found.retry_period) == (8, 5.0, 2.0)
    # defaults: a crashed leader is replaced within duration + 1.2 retry periods
    assert found.lease_duration + 1.2 * found.retry_period < 11
    assert Election.from_env({}) is None
    assert found.identity != Election.from_env(env).identity  # type: ignore[union-attr]


def get_health(port: int) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture
def port() -> int:
    from tests.cluster.harness import free_port

    return int(free_port())


@pytest.fixture
def held(api: FakeApi, clock: Clock) -> Iterator[LeaderElector]:
    holder = elector(api, "other", clock)
    holder.try_acquire_or_renew()
    yield holder


def test_a_standby_is_live_and_leads_when_the_lease_is_released(
    api: FakeApi, held: LeaderElector, port: int
) -> None:
    config = election("me", lease_duration=2, renew_deadline=0.5, retry_period=0.05)
    entered = threading.Event()

    def run() -> None:
        with leadership(config, port, kube=api.kube(policy=NO_RETRY), on_lost=lambda: None):
            entered.set()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        status, body = 0, b""
        while status != 200:
            try:
                status, body = get_health(port)
            except OSError:
                time.sleep(0.01)
        assert b"standby" in body
        assert not entered.is_set()  # the body (kopf) has not started
        held.release()
        assert entered.wait(10)
    finally:
        thread.join(10)
    assert not lease(api).get("holderIdentity")  # released again on the way out


def test_a_leader_that_loses_the_lease_calls_on_lost(api: FakeApi) -> None:
    config = election("me", lease_duration=2, renew_deadline=0.5, retry_period=0.05)
    lost = threading.Event()
    with leadership(config, 0, kube=api.kube(policy=NO_RETRY), on_lost=lost.set):
        spec = lease(api)
        spec["holderIdentity"] = "intruder"  # written behind its back, as by a new leader
        api.objects["coordination.k8s.io/v1", "leases", NS, NAME]["metadata"]["resourceVersion"] = (
            "999"
        )
        assert lost.wait(10)
    assert lease(api)["holderIdentity"] == "intruder"  # not released: it is not its own


def test_lease_requests_stay_out_of_the_log(api: FakeApi, caplog: pytest.LogCaptureFixture) -> None:
    config = election("me", lease_duration=2, renew_deadline=0.5, retry_period=0.05)
    with caplog.at_level(logging.INFO), leadership(config, 0, kube=api.kube(policy=NO_RETRY)):
        api.kube().get("/api/v1/namespaces/x/configmaps/y")
    requests = [r.getMessage() for r in caplog.records if r.name == "httpx"]
    assert requests and not any("/leases/" in m for m in requests), requests
    assert any("leading" in r.getMessage() for r in caplog.records)


def test_without_a_lease_namespace_the_body_runs_at_once() -> None:
    with leadership(None, 0) as elected:
        assert elected is None
