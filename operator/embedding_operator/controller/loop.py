"""One reconcile: read what is, ask ``reconcile.plan`` what to do, do it.

All Kubernetes I/O of the controller lives here; the decisions live in ``reconcile``. A
reconcile never raises: it returns when to look again (an explicit requeue, with capped
exponential backoff per resource while it keeps failing, as controller-runtime does), so a
resource whose reconcile failed is retried without waiting for an unrelated event.
"""

from __future__ import annotations

import logging
import random

from embedding_operator import logs
from embedding_operator.api import lifecycle, names
from embedding_operator.api.lifecycle import Clock
from embedding_operator.controller.metrics import RunMetrics
from embedding_operator.controller.objects import build_worker_rbac
from embedding_operator.controller.reconcile import (
    Obj,
    Plan,
    has_work,
    overdue,
    plan,
    plan_create_failure,
)
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import (
    Kube,
    KubeError,
    core_path,
    group_path,
    post_event,
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


def _path(api_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    if api_version == "v1":
        return core_path(namespace, plural, name)
    return group_path(api_version, namespace, plural, name)


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
        namespaces: tuple[str, ...] = (),
    ) -> None:
        self.kube = kube
        self.settings = settings
        self.namespaces = namespaces
        """The watched namespaces; empty: all (a namespaced install has no cluster-wide list)."""
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.metrics = RunMetrics(clock())

    def reconcile(self, namespace: str, name: str) -> float | None:
        """Converge one resource; the seconds after which to reconcile it again when this attempt
        failed, else None. A conflict (someone wrote it meanwhile) means: look again at once."""
        key = (namespace, name)
        try:
            for _ in range(5):
                body = self.kube.get(resource_path(namespace, name))
                if body is None:
                    break
                try:
                    self._apply(body, self._plan(body))
                except KubeError as e:
                    if e.status == 409 and e.reason == "Conflict":
                        continue
                    raise
                break
            else:
                raise RuntimeError("the resource kept changing under reconcile")
        except _CreateFailed:
            return self.backoff.failed(key)
        except Exception as e:
            delay = self.backoff.failed(key)
            logs.for_object(log, *key).warning(
                "reconcile failed, retrying in %.0fs: %r", delay, e, exc_info=True
            )
            return delay
        self.backoff.succeeded(key)
        return None

    def with_work(self) -> list[tuple[str, str]]:
        """Resources that may need the operator without an event announcing it (``has_work``),
        for the periodic resync: runs in progress, and requests, cancels or spec changes an
        earlier, failed reconcile left unhandled."""
        paths = [resource_path(ns) for ns in self.namespaces] or [
            f"/apis/{names.GROUP}/{names.VERSION}/{names.PLURAL}"
        ]
        return [
            (o["metadata"]["namespace"], o["metadata"]["name"])
            for path in paths
            for o in self.kube.list(path)
            if has_work(o)
        ]

    def _plan(self, body: Obj) -> Plan:
        status = body.get("status") or {}
        namespace = body["metadata"]["namespace"]
        job = None
        pods: list[Obj] = []
        warnings: list[str] = []
        now = self.clock()
        if status.get("phase") == "Running" and status.get("jobName"):
            job = self.kube.get(_path("batch/v1", namespace, "jobs", status["jobName"]))
            if job is not None:
                pods = self.kube.list(
                    core_path(namespace, "pods"),
                    labelSelector=f"batch.kubernetes.io/job-name={status['jobName']}",
                )
                if not pods and overdue(job, now, self.settings):
                    warnings = self._warnings(namespace, status["jobName"])
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
            self.kube.delete(_path("batch/v1", namespace, "jobs", todo.delete_job))
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
            if "phase" in todo.status.model_fields_set:
                olog.info("phase %s: %s", todo.status.phase, todo.status.message or "")
        stamp = lifecycle.timestamp(self.clock())
        for event in todo.events:
            if event.type == "Warning":
                olog.warning("%s: %s", event.reason, event.message)
            try:
                post_event(self.kube, body, event.type, event.reason, event.message, stamp)
            except KubeError as e:  # the status says it too; an Event is a courtesy
                olog.warning("event %s not posted: %s", event.reason, e)
        self.metrics.observe(body)
        return body

    def _create_job(self, body: Obj, job: Obj) -> None:
        """Create the Job, after ensuring its ServiceAccount and rights (every time: someone may
        have deleted them, and applying unchanged objects is cheap). An existing Job of the same
        name is adopted only when it is this very run's (owner uid and attempt match)."""
        namespace = body["metadata"]["namespace"]
        self._ensure_worker_rbac(namespace)
        if self.kube.create(_path("batch/v1", namespace, "jobs"), job) is not None:
            logs.for_object(log, namespace, body["metadata"]["name"]).info(
                "created Job %s", job["metadata"]["name"]
            )
            return
        name = job["metadata"]["name"]
        found = self.kube.get(_path("batch/v1", namespace, "jobs", name)) or {}
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
        self._write(body, todo)
        if not permanent:
            raise _CreateFailed(error.message) from error

    def _ensure_worker_rbac(self, namespace: str) -> None:
        """The worker's ServiceAccount and RoleBinding of the chart's worker ClusterRole, created
        when missing (every time: someone may have deleted them; creating an existing object is
        a cheap 409). Existing objects are never changed: the operator holds no right to, and
        the rights themselves live in the ClusterRole, which upgrades update."""
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
            self.kube.create(_path(api_version, namespace, plural), obj)
