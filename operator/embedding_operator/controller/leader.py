"""Leader election on a ``coordination.k8s.io/v1`` Lease, the way client-go's ``leaderelection``
(and so controller-runtime) does it, so that several replicas run but only one acts.

A replica acquires the Lease *before* kopf starts: a standby runs no watches and no reconciles,
and costs the API one GET of the Lease per retry period. The leader renews it every retry period
on a thread and client of its own (a burst of reconciles cannot starve the renewals of
connections), and the process exits at once when it could not renew for the renew deadline or
finds another holder: a leader that might have been replaced never acts again (the kubelet
restarts it as a standby). On a graceful stop the Lease is released, so a rolling update hands
over within one retry period instead of a lease duration.

Expiry is judged as client-go judges it, on this process's monotonic clock: a standby takes over
a Lease whose record it has seen unchanged for the holder's ``leaseDurationSeconds``; the times
written in the Lease are for people. Every write names the ``resourceVersion`` it read, so of two
replicas racing for an expired Lease exactly one wins (the other gets 409 Conflict). The timing
rule that keeps two leaders apart: a leader gives up at the latest ``renew_deadline`` plus one
request timeout (``retry_period``) after its last successful renewal, which the settings require
to be under ``lease_duration``, the earliest a standby may take over.

A Job's name is fixed by its resource and attempt (``objects.job_name``) and the reconcile adopts
a Job an earlier leader created but did not record, so a handover mid-run creates no second Job.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import Gauge

from embedding_operator import settings as registry
from embedding_operator.kube import Kube, KubeError, Obj, RetryPolicy, group_path

log = logging.getLogger(__name__)

LEASES = "coordination.k8s.io/v1"
LEADING = Gauge("embedding_operator_leader", "1 while this replica holds the leader Lease.")


@dataclass(frozen=True)
class Election:
    """Which Lease, who is asking, and its timing (client-go's three durations)."""

    namespace: str
    name: str
    identity: str
    lease_duration: int
    """Seconds a Lease stays someone's without renewal (written into the Lease)."""
    renew_deadline: float
    """The leader gives up when it could not renew for this long."""
    retry_period: float
    """Between renewals, between a standby's attempts, and each request's timeout."""

    def __post_init__(self) -> None:
        if self.renew_deadline + self.retry_period >= self.lease_duration:
            raise registry.SettingError(
                "EMBEDDING_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS plus "
                "EMBEDDING_OPERATOR_LEASE_RETRY_PERIOD_SECONDS must be under "
                f"EMBEDDING_OPERATOR_LEASE_DURATION_SECONDS ({self.renew_deadline:g} + "
                f"{self.retry_period:g} >= {self.lease_duration}): a leader must give up "
                "before a standby may take over"
            )

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Election | None:
        """From the environment the chart sets; None when no Lease namespace is set (a process
        run by hand, outside the chart: one replica, no election)."""
        namespace = registry.string("EMBEDDING_OPERATOR_LEASE_NAMESPACE", env)
        if not namespace:
            return None
        host = os.environ.get("HOSTNAME") or socket.gethostname()
        return cls(
            namespace=namespace,
            name=str(registry.string("EMBEDDING_OPERATOR_LEASE_NAME", env)),
            # unique per process, as controller-runtime's: a restarted pod of the same name is a
            # new candidate, never mistaken for the leader it replaced
            identity=f"{host}_{uuid.uuid4()}",
            lease_duration=int(
                registry.integer("EMBEDDING_OPERATOR_LEASE_DURATION_SECONDS", env) or 0
            ),
            renew_deadline=float(
                registry.number("EMBEDDING_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS", env) or 0
            ),
            retry_period=float(
                registry.number("EMBEDDING_OPERATOR_LEASE_RETRY_PERIOD_SECONDS", env) or 0
            ),
        )


def micro_time(moment: datetime) -> str:
    """A Lease's MicroTime (RFC 3339 with microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquires, renews and releases one Lease through ``kube``. ``monotonic`` and ``wall`` are
    injected so tests decide what time it is."""

    def __init__(
        self,
        kube: Kube,
        election: Election,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.kube = kube
        self.election = election
        self.monotonic = monotonic
        self.wall = wall
        self._observed: Obj | None = None
        """The Lease as last read or written."""
        self._observed_at = 0.0
        """When its spec last changed, as this process saw it."""
        self.renewed_at: float | None = None
        """When this process last acquired or renewed it (None: not leading)."""
        self.attempted_at = monotonic()
        """When the last attempt ended, answered or not (the standby's liveness)."""
        self.stopping = threading.Event()
        """Set by :meth:`release`: no further attempt."""
        self._lock = threading.Lock()
        """Keeps a renewal and the release from crossing (both write the Lease)."""

    @property
    def path(self) -> str:
        return group_path(LEASES, self.election.namespace, "leases", self.election.name)

    @property
    def holder(self) -> str:
        return str(((self._observed or {}).get("spec") or {}).get("holderIdentity") or "")

    def try_acquire_or_renew(self) -> bool:
        """One attempt: True when this process holds the Lease now. Never raises on API errors
        (they are a failed attempt, logged)."""
        try:
            return self._attempt()
        except KubeError as e:
            log.warning("leader election: %s of Lease %s failed: %s", self._verb, self.path, e)
            return False
        finally:
            self.attempted_at = self.monotonic()

    @property
    def _verb(self) -> str:
        return "renewal" if self.renewed_at is not None else "acquisition"

    def _attempt(self) -> bool:
        election, now = self.election, self.monotonic()
        stamp = micro_time(self.wall())
        if self.renewed_at is not None and self._observed is not None:
            # Leading: renew what this process wrote last, one request (as client-go does);
            # a 409 means someone else wrote it: read it and decide below.
            spec = self._observed["spec"]
            renewal = {**self._observed, "spec": {**spec, "renewTime": stamp}}
            try:
                return self._took(self.kube.request("PUT", self.path, renewal), now)
            except KubeError as e:
                if e.status != 409:
                    raise
        lease = self.kube.get(self.path)
        if lease is None:
            created = self.kube.create(
                group_path(LEASES, election.namespace, "leases"),
                {
                    "apiVersion": LEASES,
                    "kind": "Lease",
                    "metadata": {"name": election.name, "namespace": election.namespace},
                    "spec": self._spec(stamp, acquired=stamp, transitions=0),
                },
            )
            return created is not None and self._took(created, now)
        spec = lease.get("spec") or {}
        if self._observed is None or spec != self._observed.get("spec"):
            self._observed_at = now
        self._observed = lease
        holder = spec.get("holderIdentity") or ""
        duration = spec.get("leaseDurationSeconds") or election.lease_duration
        if holder and holder != election.identity and now < self._observed_at + duration:
            return False  # someone else's, and not expired as far as this process has seen
        transitions = int(spec.get("leaseTransitions") or 0)
        mine = holder == election.identity
        body = {
            **lease,
            "spec": self._spec(
                stamp,
                acquired=spec.get("acquireTime") if mine else stamp,
                transitions=transitions if mine else transitions + 1,
            ),
        }
        if not mine:
            log.info("leader election: taking over Lease %s from %r", self.path, holder)
        # resourceVersion of what was read: a concurrent writer makes this a 409 Conflict
        return self._took(self.kube.request("PUT", self.path, body), now)

    def _spec(self, renewed: str, acquired: str | None, transitions: int) -> Obj:
        return {
            "holderIdentity": self.election.identity,
            "leaseDurationSeconds": self.election.lease_duration,
            "acquireTime": acquired,
            "renewTime": renewed,
            "leaseTransitions": transitions,
        }

    def _took(self, lease: Obj, now: float) -> bool:
        self._observed, self._observed_at, self.renewed_at = lease, now, now
        return True

    def acquire(self) -> bool:
        """Try every retry period (jittered, so standbys do not ask in step) until this process
        leads (True) or it is stopping (False)."""
        logged = False
        while not self.stopping.is_set():
            if self.try_acquire_or_renew():
                log.info(
                    "leader election: leading (Lease %s, %s)", self.path, self.election.identity
                )
                LEADING.set(1)
                return True
            if not logged:
                log.info("leader election: standby; Lease %s is held by %r", self.path, self.holder)
                logged = True
            self.stopping.wait(self._until_next_attempt())
        return False

    def _until_next_attempt(self) -> float:
        """A retry period, jittered (so standbys do not ask in step); sooner when the holder's
        Lease expires before that, as last seen (a crashed leader's successor does not wait a
        period more than it must)."""
        wait = self.election.retry_period * random.uniform(1.0, 1.2)  # noqa: S311
        spec = (self._observed or {}).get("spec") or {}
        duration = spec.get("leaseDurationSeconds") or self.election.lease_duration
        expires_in = self._observed_at + duration - self.monotonic()
        return min(wait, expires_in + 0.01) if expires_in > 0 else wait

    def renew(self) -> bool:
        """Renew every retry period until released (True) or leadership is lost (False): no
        renewal for the renew deadline, or another holder in the Lease."""
        election = self.election
        while True:
            renewed = self.renewed_at if self.renewed_at is not None else -math.inf
            remaining = renewed + election.renew_deadline - self.monotonic()
            if remaining <= 0:
                log.error(
                    "leader election: Lease %s not renewed for %ss",
                    self.path,
                    election.renew_deadline,
                )
                return self._lost()
            if self.stopping.wait(min(election.retry_period, remaining)):
                return True
            with self._lock:
                if self.stopping.is_set():
                    return True
                renewed_now = self.try_acquire_or_renew()
            if not renewed_now and self.holder not in ("", election.identity):
                log.error("leader election: Lease %s is now held by %r", self.path, self.holder)
                return self._lost()

    def _lost(self) -> bool:
        self.renewed_at = None
        LEADING.set(0)
        return False

    def release(self) -> None:
        """Stop renewing and give the Lease up (holder cleared, expired at once), so a standby
        takes over within its next attempt; only when this process still holds it as last
        seen. Idempotent."""
        self.stopping.set()
        with self._lock:
            self._release()

    def _release(self) -> None:
        if self.renewed_at is None or self._observed is None:
            return
        self.renewed_at = None
        LEADING.set(0)
        stamp = micro_time(self.wall())
        spec = self._observed.get("spec") or {}
        body = {
            **self._observed,
            "spec": {
                "leaseDurationSeconds": 1,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": spec.get("leaseTransitions") or 0,
            },
        }
        try:
            self.kube.request("PUT", self.path, body)
        except KubeError as e:  # taken meanwhile, or the API is away: it expires on its own
            log.warning("leader election: Lease %s not released: %s", self.path, e)
            return
        log.info("leader election: released Lease %s", self.path)


class _StandbyHealth(BaseHTTPRequestHandler):
    """``/healthz`` of a standby (kopf serves it once leading): live while its attempts keep
    coming, whatever their answers (an API outage is no reason to restart a standby)."""

    elector: LeaderElector

    def do_GET(self) -> None:
        idle = self.elector.monotonic() - self.elector.attempted_at
        alive = idle < 10 * self.elector.election.retry_period  # attempts take <= 2.2 periods
        code = (200 if alive else 500) if self.path.split("?")[0] == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"standby": true}' if code == 200 else b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def _standby_health(elector: LeaderElector, port: int) -> Iterator[None]:
    if not port:
        yield
        return
    handler = type("Health", (_StandbyHealth,), {"elector": elector})
    server = ThreadingHTTPServer(("0.0.0.0", port), handler)  # noqa: S104 (the probe's port)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()  # the port is kopf's next
        thread.join()


def _exit_now() -> None:
    """Leadership lost: stop acting this instant (no cleanup, which would keep acting); the
    kubelet restarts the container as a standby."""
    logging.shutdown()
    os._exit(1)


def _quiet_lease_requests(record: logging.LogRecord) -> bool:
    """httpx logs every request at INFO: the Lease's would be 30 lines a minute per replica,
    saying nothing (a failed attempt is logged here, with its error)."""
    return "/leases/" not in record.getMessage()


@contextlib.contextmanager
def leadership(
    election: Election | None,
    liveness_port: int,
    kube: Kube | None = None,
    on_lost: Callable[[], None] = _exit_now,
) -> Iterator[LeaderElector | None]:
    """Block until this process leads (serving a standby's ``/healthz`` on ``liveness_port``
    meanwhile), keep the Lease renewed while the body runs (``on_lost`` when it cannot), and
    release it after (the body may release it sooner: :meth:`LeaderElector.release`).
    ``election`` None: no election, the body runs at once."""
    if election is None:
        log.info("leader election off (EMBEDDING_OPERATOR_LEASE_NAMESPACE unset): run one replica")
        yield None
        return
    # A client of its own, each request bounded by the retry period and not retried (the loops
    # retry), so one attempt cannot outlast the renew deadline by more than that.
    kube = kube or Kube.from_environment(
        "embedding-operator", RetryPolicy(timeout=election.retry_period, budget=0.0)
    )
    logging.getLogger("httpx").addFilter(_quiet_lease_requests)
    elector = LeaderElector(kube, election)
    with _standby_health(elector, liveness_port):
        elector.acquire()

    def keep() -> None:
        if not elector.renew():
            on_lost()

    renewer = threading.Thread(target=keep, name="lease-renewer", daemon=True)
    renewer.start()
    try:
        yield elector
    finally:
        elector.release()
        renewer.join()
        kube.close()
