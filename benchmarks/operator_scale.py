"""The operator at scale, side by side with a naive kopf operator (benchmarks/naive_operator.py).

    .venv/bin/python -m benchmarks.operator_scale            # the issue's sizes, ~15 minutes
    .venv/bin/python -m benchmarks.operator_scale --quick    # smaller sizes, ~4 minutes

Starts its own test control plane (tests/cluster) with an audit log of the operators' requests,
installs the chart's RBAC and operator guard and runs each operator as a process with the chart's
ServiceAccount, watching only the namespaces of the step at hand. The guard's API-key check is
left out unless ``--pin-api-key-secrets``: its cost per Job grows with the resources of the
namespace, the same for both operators, and would make a 1,000-resource burst a measure of the
guard (``benchmarks/operator_guard.py`` measures it). Every step runs both operators one after the
other on the same cluster (the baseline first, then this operator), so the ratios compare like
with like on a noisy machine:

(1) no pods (the process kubelet is not started yet): ``--burst`` resources created, then all
    annotated at once: time until every Job exists; then ``--sequential`` resources annotated one
    at a time: annotation -> Job p50/p99, and API requests per run request; then, once every Job
    has its pod (kube-controller-manager is done), an idle window (``--idle`` s) over all of them
    (Running, pods not started): API requests per minute and CPU;
    peak RSS (VmHWM) and RSS after the idle window; then a restart on them: time until the
    operator is quiet (no request for ``QUIET`` s) and its API requests;
(2) with pods (the process kubelet runs the worker pods against the Voyage stand-in):
    ``--pods`` resources annotated at once: time until every Job exists, then until every run
    finished: API requests per run over the whole run, peak RSS;
(3) restart on ``--finished`` finished resources (each a copy of one run's real, Completed
    status from (2)): time until quiet, API requests, RSS; ``--restarts`` times each, alternating.

``--status-baseline`` adds a control to (1): the naive operator writing this operator's whole
status (``NAIVE_STATUS=operator``), on resources given this operator's Pending status first. It
tells what the status costs kube-apiserver (every later write of the resource carries it) from
what the operator itself costs.

API requests are counted exactly: kube-apiserver's audit log records every request of the
operators' ServiceAccount (policy: that user only, at RequestReceived), and only one operator
runs at a time. Not a test: nothing here fails on timings. Figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from embedding_operator.api import names
from embedding_operator.controller.objects import build_worker_rbac
from embedding_operator.controller.reconcile import plan
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import (
    Connection,
    Kube,
    RetryPolicy,
    core_path,
    group_path,
    resource_path,
)
from tests.cluster.harness import Cluster, ensure_binaries, free_port
from tests.e2e.stack import (
    OPERATOR_NAMESPACE,
    apply_manifests,
    install_chart_rbac,
    wait_established,
)
from tests.tools.fetch import ensure_tools
from tests.voyage_standin import StandIn, StandInConfig

ROOT = Path(__file__).resolve().parents[1]
STATE = ROOT / ".cache" / "bench-operator"
BIN = Path(sys.executable).parent
API_KEY = "pa-bench-operator-key"
QUIET = 3.0
"""An operator is quiet after this many seconds without an API request."""
OPERATORS = ("naive", "operator")
STATUS_BASELINE = "naive-status"
"""The naive operator writing this operator's status (``--status-baseline``)."""
SERVICE_ACCOUNT = "e2e-embedding-operator"
"""The chart's, as ``install_chart_rbac`` installs it (release ``e2e``); both operators use it."""
GUARD_VALUES = ("image.repository=embedding-operator", "image.tag=e2e")
OPERATOR_ENV = {
    "EMBEDDING_OPERATOR_IMAGE": "embedding-operator:e2e",
    "EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE": "e2e-embedding-operator-worker",
    # (1) keeps 1,000 runs Running without pods for minutes: none may time out meanwhile
    "EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS": "3600",
}
AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [ResponseStarted, ResponseComplete, Panic]
rules:
  - level: Metadata
    users: ["{user}"]
  - level: None
"""
MiB = 1024 * 1024


# -- measuring ---------------------------------------------------------------------------------


@dataclass
class Request:
    at: float  # wall clock, seconds
    verb: str
    uri: str

    @property
    def kind(self) -> str:
        """``verb resource`` (``get deploymentembeddings``, ``watch pods``...), for breakdowns."""
        path = self.uri.split("?", 1)[0].split("/")
        if "namespaces" in path and len(path) > path.index("namespaces") + 2:
            rest = path[path.index("namespaces") + 2 :]
        else:
            rest = path[4:] if path[1] == "apis" else path[3:]
        return f"{self.verb} {'/'.join(p for i, p in enumerate(rest) if i != 1) or 'discovery'}"


class Audit:
    """The operators' requests, read from kube-apiserver's audit log as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.requests: list[Request] = []
        self._offset = 0
        self._lock = threading.Lock()

    def refresh(self) -> list[Request]:
        with self._lock:
            if self.path.exists():
                with self.path.open("rb") as f:
                    f.seek(self._offset)
                    data = f.read()
                end = data.rfind(b"\n") + 1
                self._offset += end
                for line in data[:end].splitlines():
                    event = json.loads(line)
                    stamp = datetime.fromisoformat(event["requestReceivedTimestamp"])
                    self.requests.append(
                        Request(stamp.timestamp(), event["verb"], event["requestURI"])
                    )
            return self.requests

    def between(self, start: float, end: float | None = None) -> list[Request]:
        end = end if end is not None else time.time() + 3600
        return [r for r in self.refresh() if start <= r.at < end]

    def wait_quiet(self, since: float, timeout: float = 600) -> float:
        """Wait until no request came for ``QUIET`` s; the wall time of the last one (or
        ``since`` when none came)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = self.between(since)
            last = seen[-1].at if seen else since
            if time.time() - last >= QUIET:
                return last
            time.sleep(0.25)
        raise TimeoutError(f"the operator was not quiet within {timeout}s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class OperatorProc:
    """One operator process (this one, or the naive baseline) watching ``namespaces``."""

    def __init__(self, which: str, namespaces: list[str], env: dict[str, str], log: Path) -> None:
        scope = [arg for ns in namespaces for arg in ("--namespace", ns)]
        if which == STATUS_BASELINE:
            env = {**env, "NAIVE_STATUS": "operator"}
        if which == "operator":
            ports = [f"--metrics-port={free_port()}", f"--liveness-port={free_port()}"]
            argv = [str(BIN / "embedding-operator"), "run", *ports, *scope]
        else:
            argv = [sys.executable, "-m", "kopf", "run", "--standalone", *scope]
            argv += ["-m", "benchmarks.naive_operator"]
        self.which = which
        self.started = time.time()
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                argv,
                env={**os.environ, **env},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def cpu(self) -> float:
        """User + system CPU seconds so far."""
        return cpu_seconds(self.proc.pid)

    def memory(self) -> tuple[int, int]:
        """(VmRSS, VmHWM) in bytes: resident now, and the peak."""
        values = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) * 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


class JobWatch:
    """When each Job of a namespace first appeared (by its owner), from a watch of the admin."""

    def __init__(self, conn: Connection, namespace: str) -> None:
        self.seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._http = httpx.Client(base_url=conn.host, verify=conn.verify, cert=conn.cert)
        self._path = group_path("batch/v1", namespace, "jobs")
        listing = self._http.get(self._path).raise_for_status().json()
        self._record(listing["items"])
        self._version = listing["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _record(self, jobs: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        with self.changed:
            for job in jobs:
                owner = job["metadata"].get("labels", {}).get(names.OWNER_LABEL, "")
                self.seen.setdefault(owner, now)
            self.changed.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            query = {"watch": "1", "resourceVersion": self._version, "timeoutSeconds": "30"}
            try:
                with self._http.stream("GET", self._path, params=query, timeout=60) as response:
                    for line in response.iter_lines():
                        event = json.loads(line)
                        if event["type"] == "ADDED":
                            self._record([event["object"]])
                        if event["type"] != "ERROR":
                            self._version = event["object"]["metadata"]["resourceVersion"]
            except httpx.HTTPError:
                if not self._stop.is_set():
                    time.sleep(0.5)

    def wait(self, done: Callable[[dict[str, float]], bool], timeout: float) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: done(self.seen), timeout):
                raise TimeoutError(f"Jobs: {len(self.seen)} seen after {timeout}s")

    def close(self) -> None:
        self._stop.set()
        self._http.close()


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the bench ---------------------------------------------------------------------------------


@dataclass
class Bench:
    cluster: Cluster
    kube: Kube  # the admin's
    audit: Audit
    env: dict[str, str]
    settings: Settings
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    breakdown: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    """(operator, figure): that figure's requests by kind."""

    def record(self, which: str, figure: str, value: float) -> None:
        self.results.setdefault(figure, {})[which] = value
        print(f"  {which:>8}  {figure}: {value:,.3f}", flush=True)

    def count(self, which: str, figure: str, requests: list[Request], per: float = 1) -> None:
        """Record ``len(requests) / per`` as ``figure``, and the requests by kind."""
        self.record(which, figure, len(requests) / per)
        self.breakdown[which, figure] = Counter(r.kind for r in requests)

    @contextmanager
    def operator(self, which: str, namespaces: list[str]) -> Iterator[OperatorProc]:
        """The operator running on ``namespaces``, ready (its resource watches open, quiet)."""
        proc = OperatorProc(which, namespaces, self.env, self.cluster.log_dir / f"{which}.log")
        try:
            self.wait_watching(proc, namespaces)
            yield proc
        finally:
            proc.stop()

    def wait_watching(self, proc: OperatorProc, namespaces: list[str]) -> float:
        """Until ``proc`` watches the resources of ``namespaces`` and is quiet; the wall time of
        its last request."""
        deadline = time.monotonic() + 120
        wanted = {f"/namespaces/{ns}/{names.PLURAL}" for ns in namespaces}
        while time.monotonic() < deadline:
            if proc.proc.poll() is not None:
                raise RuntimeError(f"{proc.which} exited: see {self.cluster.log_dir}")
            watching = {
                w
                for w in wanted
                for r in self.audit.between(proc.started)
                if r.verb == "watch"
                if w in r.uri
            }
            if watching == wanted:
                return self.audit.wait_quiet(proc.started)
            time.sleep(0.25)
        raise TimeoutError(f"{proc.which} did not start watching {namespaces}")

    # setup

    def namespace(self, name: str) -> str:
        """A namespace with the API key Secret and the worker's ServiceAccount and RoleBinding
        (made here, so the baseline need not and both find the same)."""
        self.kube.create("/api/v1/namespaces", {"metadata": {"name": name}})
        secret = {
            "metadata": {"name": names.DEFAULT_API_KEY_SECRET},
            "data": {names.DEFAULT_API_KEY_SECRET_KEY: base64.b64encode(API_KEY.encode()).decode()},
        }
        self.kube.create(core_path(name, "secrets"), secret)
        role = self.kube.get(
            f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{self.settings.worker_cluster_role}"
        )
        assert role is not None, "the chart's worker ClusterRole is missing"
        for obj in build_worker_rbac(name, self.settings, role):
            plural = "serviceaccounts" if obj["kind"] == "ServiceAccount" else "rolebindings"
            version = "v1" if plural == "serviceaccounts" else "rbac.authorization.k8s.io/v1"
            path = core_path(name, plural) if version == "v1" else group_path(version, name, plural)
            self.kube.create(path, obj)
        return name

    def create(
        self,
        namespace: str,
        count: int,
        finished: dict[str, Any] | None = None,
        pending: bool = False,
    ) -> list[str]:
        """``count`` resources, named ``r-00000``...; with ``finished``, each a copy of that
        finished resource (its spec, run annotation and status); with ``pending``, each with the
        status this operator writes on a new resource."""

        def one(i: int) -> str:
            name = f"r-{i:05d}"
            spec = {
                "inputs": [f"document {i} part {j} about topic {i % 37}" for j in range(4)],
                "model": "voyage-3.5",
                "inputType": "document",
            }
            meta: dict[str, Any] = {"name": name}
            if finished:
                spec = finished["spec"]
                run = finished["status"]["lastHandledRunRequest"]
                meta["annotations"] = {names.RUN_ANNOTATION: run}
            body = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta}
            created = self.kube.create(resource_path(namespace), {**body, "spec": spec})
            if finished:
                status = {"status": finished["status"]}
                self.kube.patch(resource_path(namespace, name, "status"), status)
            elif pending and created:
                written = plan(created, None, [], datetime.now(UTC), self.settings).patch
                self.kube.patch(resource_path(namespace, name, "status"), {"status": written})
            return name

        with ThreadPoolExecutor(8) as pool:
            return list(pool.map(one, range(count)))

    def annotate(self, namespace: str, name: str, value: str) -> None:
        self.kube.patch(
            resource_path(namespace, name),
            {"metadata": {"annotations": {names.RUN_ANNOTATION: value}}},
        )

    def burst(self, namespace: str, resources: list[str], timeout: float) -> float:
        """Annotate all at once; seconds until every Job exists."""
        watch = JobWatch(Connection.from_environment(str(self.cluster.kubeconfig)), namespace)
        try:
            t0 = time.monotonic()
            with ThreadPoolExecutor(16) as pool:
                list(pool.map(lambda n: self.annotate(namespace, n, "burst"), resources))
            try:
                watch.wait(lambda seen: all(n in seen for n in resources), timeout)
            except TimeoutError:
                made = sum(n in watch.seen for n in resources)
                print(f"  timed out: {made} of {len(resources)} Jobs after {timeout}s", flush=True)
                return float("nan")
            return max(watch.seen[n] for n in resources) - t0
        finally:
            watch.close()

    def sequential(self, namespace: str, resources: list[str]) -> list[float]:
        watch = JobWatch(Connection.from_environment(str(self.cluster.kubeconfig)), namespace)
        latencies = []
        try:
            for name in resources:
                t0 = time.monotonic()
                self.annotate(namespace, name, "sequential")
                watch.wait(lambda seen, name=name: name in seen, 60)  # type: ignore[misc]
                latencies.append(watch.seen[name] - t0)
        finally:
            watch.close()
        return latencies

    def settled(self, namespaces: list[str], jobs: int, timeout: float = 600) -> None:
        """Wait until kube-controller-manager has given each of the ``jobs`` Jobs its pod (its
        Job controller writes at 20 requests per second, so after a burst of 1,000 it creates
        pods and updates Jobs for a minute or two): the idle window starts when nothing changes
        any more, for either operator."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = sum(
                1
                for ns in namespaces
                for job in self.kube.list(group_path("batch/v1", ns, "jobs"))
                if (job.get("status") or {}).get("active")
            )
            if active >= jobs:
                time.sleep(QUIET)
                return
            time.sleep(2)
        print(f"  not settled after {timeout}s: the idle window starts anyway", flush=True)

    def finished(self, namespace: str, count: int, timeout: float) -> list[dict[str, Any]]:
        """Until every resource of ``namespace`` has finished its run (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            items = self.kube.list(resource_path(namespace))
            done = [o for o in items if (o.get("status") or {}).get("phase") in FINISHED]
            if len(done) >= count or time.monotonic() > deadline:
                return done
            time.sleep(1)

    # the steps

    def step_no_pods(self, which: str, burst: int, sequential: int, idle: float) -> None:
        print(f"(1) {which}: {sequential} one at a time, {burst} at once, no pods", flush=True)
        ns_burst = self.namespace(f"{which}-burst")
        ns_seq = self.namespace(f"{which}-seq")
        namespaces = [ns_burst, ns_seq]
        with self.operator(which, namespaces) as proc:
            resources = self.create(ns_burst, burst, pending=which == STATUS_BASELINE)
            self.create(ns_seq, sequential, pending=which == STATUS_BASELINE)
            start = self.audit.wait_quiet(proc.started)
            latencies = self.sequential(ns_seq, [f"r-{i:05d}" for i in range(sequential)])
            last = self.audit.wait_quiet(start)
            requests = [  # those of the other namespace's resources are not these runs'
                r
                for r in self.audit.between(start, last + 0.001)
                if "/namespaces/" not in r.uri or f"/namespaces/{ns_seq}/" in r.uri
            ]
            self.record(which, "annotation -> Job p50, ms", percentile(latencies, 0.5) * 1000)
            self.record(which, "annotation -> Job p99, ms", percentile(latencies, 0.99) * 1000)
            self.count(which, "API requests per run request (no pods)", requests, sequential)
            apiserver = next(r.pid for r in self.cluster.records if r.name == "kube-apiserver")
            cpu, apiserver_cpu = proc.cpu(), cpu_seconds(apiserver)
            self.record(
                which,
                f"{burst} at once, no pods: s until all Jobs exist",
                self.burst(ns_burst, resources, 900),
            )
            self.record(which, f"{burst} at once: operator CPU s", proc.cpu() - cpu)
            self.record(
                which,
                f"{burst} at once: kube-apiserver CPU s",
                cpu_seconds(apiserver) - apiserver_cpu,
            )
            self.audit.wait_quiet(proc.started)
            self.settled(namespaces, burst + sequential)
            total = burst + sequential
            start, cpu = time.time(), proc.cpu()
            time.sleep(idle)
            requests = self.audit.between(start, start + idle)
            self.count(
                which, f"idle, {total} Running: API requests per minute", requests, idle / 60
            )
            self.record(
                which, f"idle, {total} Running: CPU, % of a core", (proc.cpu() - cpu) * 100 / idle
            )
            rss, peak = proc.memory()
            self.record(which, "peak RSS (no pods), MiB", peak / MiB)
            self.record(which, "RSS after the idle window, MiB", rss / MiB)
        self.restart(which, namespaces, f"{total} Running (no pods)")

    def restart(self, which: str, namespaces: list[str], what: str) -> None:
        proc = OperatorProc(which, namespaces, self.env, self.cluster.log_dir / f"{which}.log")
        try:
            last = self.wait_watching(proc, namespaces)
            requests = self.audit.between(proc.started, last + 0.001)
            self.record(which, f"restart on {what}: s until quiet", last - proc.started)
            self.count(which, f"restart on {what}: API requests", requests)
            self.record(which, f"restart on {what}: RSS, MiB", proc.memory()[0] / MiB)
        finally:
            proc.stop()

    def step_pods(self, which: str, count: int) -> list[dict[str, Any]]:
        print(f"(2) {which}: {count} at once, with pods", flush=True)
        ns = self.namespace(f"{which}-pods")
        with self.operator(which, [ns]) as proc:
            resources = self.create(ns, count)
            self.audit.wait_quiet(proc.started)
            start = time.time()
            self.record(
                which,
                f"{count} at once, with pods: s until all Jobs exist",
                self.burst(ns, resources, 900),
            )
            done = self.finished(ns, count, 1800)
            self.record(which, f"{count} with pods: s until all runs finished", time.time() - start)
            last = self.audit.wait_quiet(start)
            requests = self.audit.between(start, last + 0.001)
            self.record(which, f"{count} with pods: runs finished", len(done))
            self.count(which, "API requests per run (with pods, whole run)", requests, count)
            self.record(which, "peak RSS (with pods), MiB", proc.memory()[1] / MiB)
            return done


FINISHED = ("Completed", "Failed")


def control_plane(state: Path) -> tuple[Cluster, Any]:
    """A control plane without a kubelet, the CRDs established; with an admin API client (the
    ``kubernetes`` package's, which the e2e helpers take). The caller stops both."""
    ensure_binaries()
    cluster = Cluster(state_dir=state, with_kubelet=False).start()
    api = cluster.api_client()
    apply_manifests(api)
    wait_established(api)
    return cluster, api


def start_cluster(state: Path) -> tuple[Cluster, Audit]:
    """A control plane without a kubelet, auditing the chart ServiceAccount's requests."""
    state.parent.mkdir(parents=True, exist_ok=True)
    policy = state.parent / f"{state.name}-audit-policy.yaml"  # the start empties ``state``
    user = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
    policy.write_text(AUDIT_POLICY.format(user=user))
    log = state / "audit.log"
    cluster = Cluster(
        state_dir=state,
        with_kubelet=False,
        apiserver_args=[f"--audit-policy-file={policy}", f"--audit-log-path={log}"],
    )
    return cluster.start(), Audit(log)


def allow_namespace_list(kube: Kube) -> None:
    """Let the operators' ServiceAccount list and watch namespaces. kopf, watching named
    namespaces, lists them first, and without this right retries the list for ~55 s before it
    falls back to assuming they exist: every start of either operator would wait that long."""
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    name = "bench-list-namespaces"
    kube.create(
        f"{rbac}/clusterroles",
        {
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}],
        },
    )
    kube.create(
        f"{rbac}/clusterrolebindings",
        {
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
            ],
        },
    )


def run(args: argparse.Namespace, cluster: Cluster, audit: Audit) -> Bench:
    api = cluster.api_client()
    apply_manifests(api)
    wait_established(api)
    standin = StandIn(StandInConfig(api_key=API_KEY)).__enter__()
    kubeconfig = install_chart_rbac(
        api,
        ensure_tools()["helm"],
        cluster.kubeconfig,
        cluster.state_dir / "operator.kubeconfig",
        *GUARD_VALUES,
        f"voyage.baseURL={standin.base_url}",
        f"operatorGuard.pinApiKeySecrets={str(args.pin_api_key_secrets).lower()}",
    )
    api.close()
    env = {**OPERATOR_ENV, "VOYAGE_BASE_URL": standin.base_url, "KUBECONFIG": str(kubeconfig)}
    # patient: on a busy machine a burst can keep kube-apiserver from answering for many seconds
    patient = RetryPolicy(timeout=60.0, budget=600.0)
    kube = Kube.from_environment("benchmark", patient, kubeconfig=str(cluster.kubeconfig))
    allow_namespace_list(kube)
    bench = Bench(cluster, kube, audit, env, Settings.from_env(env))
    first = (*OPERATORS, STATUS_BASELINE) if args.status_baseline else OPERATORS
    for which in first:
        bench.step_no_pods(which, args.burst, args.sequential, args.idle)
    # The Jobs of (1) would all start with the kubelet: their namespaces go first.
    for which in first:
        for suffix in ("burst", "seq"):
            kube.delete(f"/api/v1/namespaces/{which}-{suffix}")
    while any(kube.get(f"/api/v1/namespaces/{w}-burst") for w in first):
        time.sleep(2)
    cluster.start_kubelet()
    done = {which: bench.step_pods(which, args.pods) for which in OPERATORS}
    # this operator's finished status (the baseline's lacks observedGeneration: this operator
    # would take it for a changed spec and reset the resource)
    completed = [o for o in done["operator"] if o["status"]["phase"] == "Completed"]
    if completed:
        ns = bench.namespace("finished")
        bench.create(ns, args.finished, finished=completed[0])
        print(f"(3) restart on {args.finished} finished resources, {args.restarts}x", flush=True)
        for _ in range(args.restarts):
            for which in OPERATORS:
                bench.restart(which, [ns], f"{args.finished} finished")
    else:
        print("(3) skipped: no run of (2) completed", flush=True)
    standin.__exit__(None, None, None)
    return bench


def report(bench: Bench) -> None:
    baselines = {"naive": "naive kopf", STATUS_BASELINE: "naive, this operator's status"}
    if not any(STATUS_BASELINE in v for v in bench.results.values()):
        del baselines[STATUS_BASELINE]
    head = ["figure", "this operator"] + [c for b in baselines.values() for c in (b, "ratio")]
    print(f"\n| {' | '.join(head)} |\n|{'---|' * len(head)}")
    for figure, values in bench.results.items():
        ours = values.get("operator")
        row = [figure, f"{ours:,.1f}" if ours is not None else "-"]
        for which in baselines:
            other = values.get(which)
            row.append(f"{other:,.1f}" if other is not None else "-")
            row.append(f"{ours / other:.2f}x" if ours is not None and other else "-")
        print(f"| {' | '.join(row)} |")
    print("\nThe requests by kind (all of the step, not divided):")
    for (which, figure), counts in bench.breakdown.items():
        top = ", ".join(f"{k} x{v}" for k, v in counts.most_common(8))
        print(f"- {which}, {figure}: {top or 'none'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.operator_scale")
    parser.add_argument("--burst", type=int, default=1000, help="resources annotated at once")
    parser.add_argument("--sequential", type=int, default=50, help="annotated one at a time")
    parser.add_argument("--idle", type=float, default=60, help="idle window, seconds")
    parser.add_argument("--pods", type=int, default=200, help="annotated at once, with pods")
    parser.add_argument("--finished", type=int, default=1000, help="finished, for the restart")
    parser.add_argument("--restarts", type=int, default=2, help="restarts of each on those")
    parser.add_argument("--quick", action="store_true", help="200 / 20 / 20 s / 30 / 200 / 1")
    parser.add_argument(
        "--pin-api-key-secrets",
        action="store_true",
        help="with the guard's API-key check, whose cost grows with the namespace "
        "(benchmarks/operator_guard.py): every Job create then waits on it, both operators' alike",
    )
    parser.add_argument(
        "--status-baseline",
        action="store_true",
        help="step (1) also for the naive operator writing this operator's status: what the "
        "status costs kube-apiserver, apart from what the operator costs",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--state-dir", type=Path, default=STATE, help="the cluster's files")
    args = parser.parse_args(argv)
    if args.quick:
        args.burst, args.sequential, args.idle = 200, 20, 20
        args.pods, args.finished, args.restarts = 30, 200, 1
    ensure_binaries()
    cluster, audit = start_cluster(args.state_dir)
    try:
        bench = run(args, cluster, audit)
    finally:
        cluster.stop()
    report(bench)
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
