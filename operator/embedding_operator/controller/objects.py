"""Kubernetes objects the operator owns, built by pure functions (no I/O, tested without a
cluster): the worker Job and the worker's ServiceAccount and RoleBinding."""

from __future__ import annotations

from typing import Any, Final

from embedding_operator.api import names
from embedding_operator.api.names import job_name
from embedding_operator.api.status import ExitCode
from embedding_operator.api.types import DeploymentEmbeddingSpec, JobOptions
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import owner_reference

Obj = dict[str, Any]

WORKER_CONTAINER: Final = "worker"
DEFAULT_RESOURCES: Final = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}


def labels(name: str, component: str) -> dict[str, str]:
    return {
        names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
        names.OWNER_LABEL: name,
        "app.kubernetes.io/name": "embedding-operator",
        "app.kubernetes.io/component": component,
    }


def build_job(body: Obj, run_request: str, attempt: int, settings: Settings) -> Obj:
    """The batch/v1 Job that runs ``embedding-operator worker`` for run ``attempt`` of the
    resource, requested by ``run_request``."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    spec = DeploymentEmbeddingSpec.model_validate(body["spec"])
    options = spec.job or JobOptions()
    job = job_name(name, meta["uid"], run_request, attempt)
    secret = spec.secret_ref
    env: list[Obj] = [
        {
            "name": "VOYAGE_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": secret.name, "key": secret.key}},
        },
        *({"name": k, "value": v} for k, v in sorted(settings.worker_env.items())),
    ]
    resources = options.resources.to_dict() if options.resources else DEFAULT_RESOURCES
    pod_labels = labels(name, "worker")
    container = {
        "name": WORKER_CONTAINER,
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["embedding-operator"],
        "args": ["worker", "--namespace", namespace, "--name", name, "--job", job],
        "env": env,
        "resources": resources,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 (an emptyDir)
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job,
            "namespace": namespace,
            "labels": pod_labels,
            "annotations": {
                names.RUN_ANNOTATION: run_request,
                names.ATTEMPT_ANNOTATION: str(attempt),
            },
            "ownerReferences": [owner_reference(body, block_owner_deletion=True)],
        },
        "spec": {
            "backoffLimit": options.backoff_limit,
            "activeDeadlineSeconds": options.active_deadline_seconds,
            "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": WORKER_CONTAINER,
                            "operator": "In",
                            "values": [int(ExitCode.PERMANENT)],  # fail at once, no backoff
                        },
                    },
                    # An evicted or preempted pod is retried without counting against backoff.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": settings.worker_service_account,
                    "restartPolicy": "Never",
                    "enableServiceLinks": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    **settings.worker_pod_spec,  # scheduling, pull secrets (the chart's worker.*)
                },
            },
        },
    }


def worker_rules() -> list[Obj]:
    """What a worker may do in its namespace: read resources, write their status and their result
    ConfigMaps, post Events. Nothing else (no Secrets: the key arrives through the env). The chart
    ships these rules as the worker ClusterRole (a test keeps the two equal); the operator only
    binds it."""
    return [
        {"apiGroups": [names.GROUP], "resources": [names.PLURAL], "verbs": ["get"]},
        {
            "apiGroups": [names.GROUP],
            "resources": [f"{names.PLURAL}/status"],
            "verbs": ["get", "patch"],
        },
        {
            "apiGroups": [""],
            "resources": ["configmaps"],
            # update: a retried pod replaces the chunks its predecessor wrote;
            # deletecollection: a finished run sweeps the chunks of earlier runs
            "verbs": ["create", "get", "update", "delete", "deletecollection"],
        },
        {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create"]},
    ]


def build_worker_rbac(namespace: str, settings: Settings, cluster_role: Obj) -> list[Obj]:
    """The worker's ServiceAccount and a RoleBinding of the chart's worker ClusterRole, both owned
    by that ClusterRole: uninstalling the chart deletes it, and the garbage collector then removes
    these from every namespace."""
    name = settings.worker_service_account
    meta = {
        "name": name,
        "namespace": namespace,
        "labels": {
            names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE,
            "app.kubernetes.io/component": "worker",
        },
        "ownerReferences": [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "name": cluster_role["metadata"]["name"],
                "uid": cluster_role["metadata"]["uid"],
            }
        ],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": settings.worker_cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    ]
