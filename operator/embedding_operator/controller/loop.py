"""One reconcile: read what is, ask ``reconcile.plan`` what to do, do it.

All Kubernetes I/O of the controller lives here; the decisions live in ``reconcile``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from embedding_operator.api import names
from embedding_operator.controller.metrics import RunMetrics
from embedding_operator.controller.objects import build_worker_rbac
from embedding_operator.controller.reconcile import Obj, Plan, plan
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

COMPONENT = "embedding-operator"
_RBAC_PATHS = {
    "ServiceAccount": ("v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
}


def _path(api_version: str, namespace: str, plural: str, name: str | None = None) -> str:
    if api_version == "v1":
        return core_path(namespace, plural, name)
    return group_path(api_version, namespace, plural, name)


class Controller:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        self.metrics = RunMetrics(datetime.now(UTC))
        self._rbac_ready: set[str] = set()

    def reconcile(self, namespace: str, name: str) -> None:
        """Converge one resource. A conflict (someone wrote it meanwhile) means: look again.

        It reads the resource afresh rather than trusting the event's body: a queued event may be
        stale, and a Job is created before the guarded status write, so a stale plan could start
        a run that was already cancelled.
        """
        for _ in range(5):
            body = self.kube.get(resource_path(namespace, name))
            if body is None:
                return
            try:
                self._apply(body, self._plan(body))
            except KubeError as e:
                if e.status == 409 and e.reason == "Conflict":
                    continue
                raise
            return
        log.warning("%s/%s kept changing under reconcile; the next event retries", namespace, name)

    def unfinished(self) -> list[tuple[str, str]]:
        """Resources whose run is in progress, for the periodic resync (status.phase is a
        selectable field, so the apiserver filters)."""
        path = f"/apis/{names.GROUP}/{names.VERSION}/{names.PLURAL}"
        running = self.kube.list(path, fieldSelector="status.phase=Running")
        return [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in running]

    def _plan(self, body: Obj) -> Plan:
        status = body.get("status") or {}
        namespace = body["metadata"]["namespace"]
        job = pods = None
        if status.get("phase") == "Running" and status.get("jobName"):
            job = self.kube.get(_path("batch/v1", namespace, "jobs", status["jobName"]))
            if job is not None:
                pods = self.kube.list(
                    core_path(namespace, "pods"),
                    labelSelector=f"batch.kubernetes.io/job-name={status['jobName']}",
                )
        return plan(body, job, pods or [], datetime.now(UTC), self.settings)

    def _apply(self, body: Obj, todo: Plan) -> None:
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if todo.create_job:
            self._ensure_worker_rbac(namespace)
            self.kube.create(_path("batch/v1", namespace, "jobs"), todo.create_job)
        if todo.delete_job:
            self.kube.delete(_path("batch/v1", namespace, "jobs", todo.delete_job))
        if todo.delete_results:
            delete_previous_runs(self.kube, namespace, name)
        if todo.status:
            body = self.kube.patch(
                resource_path(namespace, name, "status"),
                {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": todo.status},
            )
        for event in todo.events:
            post_event(self.kube, body, event.type, event.reason, event.message, COMPONENT)
        self.metrics.observe(body)

    def _ensure_worker_rbac(self, namespace: str) -> None:
        """The worker's ServiceAccount, Role and RoleBinding, created once per namespace and
        updated so an upgraded operator's narrower or wider rules take effect."""
        if namespace in self._rbac_ready:
            return
        for obj in build_worker_rbac(namespace, self.settings):
            api_version, plural = _RBAC_PATHS[obj["kind"]]
            created = self.kube.create(_path(api_version, namespace, plural), obj)
            if created is None and obj["kind"] == "Role":
                path = _path(api_version, namespace, plural, obj["metadata"]["name"])
                self.kube.patch(path, {"rules": obj["rules"]})
        self._rbac_ready.add(namespace)
