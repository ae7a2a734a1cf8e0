"""One reconcile: look at what is (in the watches' ``cache``), ask ``reconcile.plan`` what to do,
do it. The API is read only to confirm what a plan would end or delete, to re-read after a
conflict, and to adopt a Job of the run's name; a run costs three requests (create its Job, write
its status, and its Event, which ``events`` posts off the reconcile's path).

All Kubernetes I/O of the controller lives here; the decisions live in ``reconcile``. A
reconcile never raises: it returns when to look again (an explicit requeue, with capped
exponential backoff per resource while it keeps failing, as controller-runtime does), so a
resource whose reconcile failed is retried without waiting for an unrelated event.
"""

from __future__ import annotations

import logging
import random
import threading
from datetime import datetime

from embedding_operator import logs
from embedding_operator.api import lifecycle, names
from embedding_operator.api.lifecycle import Clock
from embedding_operator.api.status import Phase
from embedding_operator.controller.cache import JOB_NAME_LABEL, Cache
from embedding_operator.controller.events import EventRecorder
from embedding_operator.controller.metrics import RunMetrics
from embedding_operator.controller.objects import build_worker_rbac
from embedding_operator.controller.reconcile import (
    Obj,
    Plan,
    overdue,
    plan,
    plan_create_failure,
    starting,
    unhandled,
)
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import (
    Kube,
    KubeError,
    api_path,
    core_path,
    resource_path,
)
from embedding_operator.storage.configmaps import delete_previous_runs

log = logging.getLogger(__name__)

_RBAC_PATHS = {
    "ServiceAccount": ("v1", "serviceaccounts"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
}
_PERMANENT = (400, 422)
"""API answers to a Job creation that no retry can change (the Job as built is invalid). A refusal
of the chart's operator guard (403: a namespace the operator does not serve, say) or a missing
worker ClusterRole (404) is retried: an administrator can change either."""
_ADMISSION_DENIALS = ("ValidatingAdmissionPolicy", "admission webhook")
RBAC_TTL_SECONDS = 600.0
"""How long a namespace's worker ServiceAccount and RoleBinding, once ensured, are taken to exist
without checking (see ``_ensure_worker_rbac``)."""


def _destructive(todo: Plan) -> bool:
    """Whether acting on ``todo`` ends a run or deletes something: never done on the cache's word
    alone."""
    return bool(todo.delete_job or todo.delete_results or todo.status.phase == Phase.FAILED)


class Backoff:
    """Capped exponential backoff per key, with jitter; forgotten on success, so its size is
    bounded by the number of resources failing right now."""

    def __init__(self, initial: float = 1.0, cap: float = 300.0) -> None:
        self.initial = initial
        self.cap = cap
        self._failures: dict[tuple[str, str], int] = {}

    def peek(self, key: tuple[str, str]) -> float:
        """The delay the next failure of ``key`` will wait (without jitter)."""
        return float(min(self.cap, self.initial * 2.0 ** self._failures.get(key, 0)))

    def failed(self, key: tuple[str, str]) -> float:
        delay = self.peek(key)
        self._failures[key] = self._failures.get(key, 0) + 1
        return delay * random.uniform(0.8, 1.0)  # noqa: S311 (jitter, not crypto)

    def succeeded(self, key: tuple[str, str]) -> None:
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._failures)


class _CreateFailed(Exception):
    """The Job could not be created and that is recorded; retry after the backoff."""


class Controller:
    """Converges DeploymentEmbeddings through the Kubernetes boundary ``kube``. ``clock`` is
    injected so tests decide what time it is."""

    def __init__(
        self,
        kube: Kube,
        settings: Settings,
        clock: Clock = lifecycle.utc_now,
        backoff: Backoff | None = None,
        cache: Cache | None = None,
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.cache = cache or Cache()
        """Filled by the watches (``handlers``); the reconcile plans from it."""
        self._reconciling = 0
        self._reconciling_lock = threading.Lock()
        self.events = EventRecorder(kube, busy=self.busy)
        """Posts the plans' Events on a thread of its own: off the reconcile's path."""
        self.metrics = RunMetrics(clock())
        self._rbac_ensured: dict[str, datetime] = {}
        """Namespace -> when its worker ServiceAccount and RoleBinding were last ensured."""
        self._rbac_locks: dict[str, threading.Lock] = {}
        """Namespace -> its lock: a burst's first reconciles of a namespace ensure it once,
        while other namespaces' runs go on."""
        self._rbac_locks_lock = threading.Lock()

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Converge one resource; the seconds after which to reconcile it again when this attempt
        failed, else None."""
        key = (namespace, name)
        with self._reconciling_lock:
            self._reconciling += 1
        try:
            self._converge(namespace, name)
        except _CreateFailed:
            return self.backoff.failed(key)
        except Exception as e:
            delay = self.backoff.failed(key)
            logs.for_object(log, *key).warning(
                "reconcile failed, retrying in %.0fs: %r", delay, e, exc_info=True
            )
            return delay
        finally:
            with self._reconciling_lock:
                self._reconciling -= 1
        self.backoff.succeeded(key)
        return None

    def busy(self) -> bool:
        """Whether a reconcile is running now."""
        return self._reconciling > 0

    def _converge(self, namespace: str, name: str) -> None:
        """Plan from the cache and write. Reads go to the API only where the cache may mislead
        at a cost: a plan that ends a run or deletes something is confirmed first (the Job and
        its pods, then the resource, read afresh: a cold cache after a restart, or a watch
        lagging behind, must not fail a healthy run or delete its Job), and a conflict (someone
        wrote the resource since the cached version) re-reads the resource and plans again."""
        body = self.cache.resource(namespace, name)
        fresh = confirmed = False
        for _ in range(6):
            if body is None:
                return
            todo = self._plan(body, fresh=fresh)
            if _destructive(todo) and not confirmed:
                if fresh:
                    body, confirmed = self._read(namespace, name), True
                fresh = True
                continue
            try:
                self._apply(body, todo)
            except KubeError as e:
                if e.status == 409 and e.reason == "Conflict":
                    body, fresh, confirmed = self._read(namespace, name), True, True
                    continue
                raise
            return
        raise RuntimeError("the resource kept changing under reconcile")

    def _read(self, namespace: str, name: str) -> Obj | None:
        """The resource as the API has it now (and the cache with it)."""
        body = self.kube.get(resource_path(namespace, name))
        if body is not None:
            self.cache.stored("resource", body, force=True)
        return body

    def with_work(self) -> list[tuple[str, str]]:
        """Resources that need the operator without an event announcing it, for the periodic
        resync: requests, cancels or spec changes an earlier, failed reconcile left unhandled,
        and runs whose pod has not started once their Job is past the pod start timeout (before
        that, no clock-based ending can come, and the Job's and pods' events say the rest). A
        pass over the cache: no API request, and no reconcile for a run that is merely young."""
        now = self.clock()
        return [
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for o in self.cache.resources()
            if unhandled(o) or (starting(o) and self._overdue(o, now))
        ]

    def _overdue(self, body: Obj, now: datetime) -> bool:
        """Whether a starting run's Job is past the pod start timeout (or not in the cache)."""
        job = self.cache.job(body["metadata"]["namespace"], body["status"].get("jobName") or "")
        return job is None or overdue(job, now, self.settings)

    def _plan(self, body: Obj, *, fresh: bool) -> Plan:
        """``plan`` on the resource, its Job and pods: from the cache, or ``fresh`` from the API
        (with the Job's Warning Events when it is overdue without a pod)."""
        status = body.get("status") or {}
        namespace = body["metadata"]["namespace"]
        job_name = status.get("jobName")
        job = None
        pods: list[Obj] = []
        warnings: list[str] = []
        now = self.clock()
        if status.get("phase") == "Running" and job_name and not fresh:
            job = self.cache.job(namespace, job_name)
            pods = self.cache.pods(namespace, job_name) if job is not None else []
        elif status.get("phase") == "Running" and job_name:
            job = self.kube.get(api_path("batch/v1", namespace, "jobs", job_name))
            if job is not None:
                self.cache.stored("job", job, insert=True)
                pods = self.kube.list(
                    core_path(namespace, "pods"), labelSelector=f"{JOB_NAME_LABEL}={job_name}"
                )
                for pod in pods:
                    self.cache.stored("pod", pod, insert=True)
                if not pods and overdue(job, now, self.settings):
                    warnings = self._warnings(namespace, job_name)
                    # no pod: maybe the worker's ServiceAccount is gone; check it next time
                    self._rbac_ensured.pop(namespace, None)
        return plan(body, job, pods, now, self.settings, warnings)

    def _warnings(self, namespace: str, job: str) -> list[str]:
        """Messages of the Job's Warning Events, oldest first (FailedCreate says why it has no
        pod: a missing ServiceAccount, a quota, an admission refusal)."""
        events = self.kube.list(
            core_path(namespace, "events"),
            fieldSelector=f"involvedObject.kind=Job,involvedObject.name={job},type=Warning",
        )
        events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        return [e.get("message") or e.get("reason") or "" for e in events]

    def _apply(self, body: Obj, todo: Plan) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if todo.create_job:
            try:
                self._create_job(body, todo.create_job)
            except KubeError as e:
                self._record_create_failure(body, todo.create_job, e)
        if todo.delete_job:
            self.kube.delete(api_path("batch/v1", namespace, "jobs", todo.delete_job))
        if todo.delete_results:
            delete_previous_runs(self.kube, namespace, name)
        self._write(body, todo)

    def _write(self, body: Obj, todo: Plan) -> Obj:
        meta = body["metadata"]
        olog = logs.for_object(log, meta["namespace"], meta["name"])
        if todo.status.model_fields_set:
            body = self.kube.patch(
                resource_path(meta["namespace"], meta["name"], "status"),
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": todo.patch},
            )
            self.cache.stored("resource", body)
            if "phase" in todo.status.model_fields_set:
                olog.info("phase %s: %s", todo.status.phase, todo.status.message or "")
        stamp = lifecycle.timestamp(self.clock())
        for event in todo.events:
            if event.type == "Warning":
                olog.warning("%s: %s", event.reason, event.message)
            self.events.record(body, event.type, event.reason, event.message, stamp)
        self.metrics.observe(body)
        return body

    def _create_job(self, body: Obj, job: Obj) -> None:
        """Create the Job, after ensuring its ServiceAccount and rights. An existing Job of the
        same name is adopted only when it is this very run's (owner uid and attempt match). The
        Job goes into the cache at once: the status write's watch event may come before the
        Job's, and a plan that saw the run Running without its Job would call it deleted."""
        namespace = body["metadata"]["namespace"]
        self._ensure_worker_rbac(namespace)
        created = self.kube.create(api_path("batch/v1", namespace, "jobs"), job)
        if created is not None:
            self.cache.stored("job", created, insert=True)
            logs.for_object(log, namespace, body["metadata"]["name"]).info(
                "created Job %s", job["metadata"]["name"]
            )
            return
        name = job["metadata"]["name"]
        found = self.kube.get(api_path("batch/v1", namespace, "jobs", name)) or {}
        if found:
            self.cache.stored("job", found, insert=True)
        owners = {o.get("uid") for o in found.get("metadata", {}).get("ownerReferences") or []}
        attempt = (found.get("metadata", {}).get("annotations") or {}).get(names.ATTEMPT_ANNOTATION)
        if body["metadata"]["uid"] in owners and attempt == str(
            job["metadata"]["annotations"][names.ATTEMPT_ANNOTATION]
        ):
            return  # created by an earlier reconcile that crashed before recording it
        raise KubeError(409, "AlreadyExists", f"a Job named {name} exists and is not this run's")

    def _record_create_failure(self, body: Obj, job: Obj, error: KubeError) -> None:
        key = (body["metadata"]["namespace"], body["metadata"]["name"])
        # An admission policy's denial is also a 422, but policies and their parameters change
        # (a ValidatingAdmissionPolicy whose params informer has not seen the resource yet denies
        # its first Job): retried like a quota. The Job as built being invalid is not.
        admission = any(m in error.message for m in _ADMISSION_DENIALS)
        permanent = (error.status in _PERMANENT and not admission) or error.status == 409
        todo = plan_create_failure(
            body,
            job,
            error.message,
            permanent=permanent,
            now=self.clock(),
            retry_in=self.backoff.peek(key),
        )
        logs.for_object(log, *key).warning("Job %s not created: %s", job["metadata"]["name"], error)
        self._rbac_ensured.pop(key[0], None)  # whatever refused it, check the rights again too
        self._write(body, todo)
        if not permanent:
            raise _CreateFailed(error.message) from error

    def _ensure_worker_rbac(self, namespace: str) -> None:
        """The worker's ServiceAccount and RoleBinding of the chart's worker ClusterRole, created
        when missing. Existing objects are never changed: the operator holds no right to, and
        the rights themselves live in the ClusterRole, which upgrades update.

        Once per namespace, then remembered for ``RBAC_TTL_SECONDS`` (three requests per run
        otherwise: GET the ClusterRole, two creates). Checked again sooner when a Job of the
        namespace could not be created or had no pod past the start timeout (a deleted
        ServiceAccount shows as exactly that). The trade-off: a ServiceAccount deleted within
        the TTL costs the next run of its namespace (it fails with PodNotStarted and the Job's
        FailedCreate message); the run after it finds the ServiceAccount back."""
        with self._rbac_locks_lock:
            lock = self._rbac_locks.setdefault(namespace, threading.Lock())
        with lock:
            now = self.clock()
            ensured = self._rbac_ensured.get(namespace)
            if ensured is None or (now - ensured).total_seconds() >= RBAC_TTL_SECONDS:
                self._bind_worker(namespace)
                self._rbac_ensured[namespace] = now

    def _bind_worker(self, namespace: str) -> None:
        role = self.settings.worker_cluster_role
        cluster_role = self.kube.get(f"/apis/rbac.authorization.k8s.io/v1/clusterroles/{role}")
        if cluster_role is None:
            raise KubeError(
                404,
                "NotFound",
                f"the worker ClusterRole {role} is missing: reinstall the chart "
                "(or set EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE)",
            )
        for obj in build_worker_rbac(namespace, self.settings, cluster_role):
            api_version, plural = _RBAC_PATHS[obj["kind"]]
            self.kube.create(api_path(api_version, namespace, plural), obj)
