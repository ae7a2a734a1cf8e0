"""Operator-wide settings, read once from the environment (the Helm chart sets them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Final

from embedding_operator import __version__

WORKER_PASSTHROUGH: Final = (
    # the Voyage layer (voyage/settings.py)
    "VOYAGE_BASE_URL",
    "VOYAGE_TIMEOUT_SECONDS",
    "VOYAGE_MAX_ATTEMPTS",
    "VOYAGE_MAX_RETRY_SECONDS",
    "EMBEDDING_OPERATOR_RPM",
    "EMBEDDING_OPERATOR_TPM",
    "EMBEDDING_OPERATOR_CONCURRENCY",
    # the result stores (storage/settings.py)
    "EMBEDDING_OPERATOR_INLINE_MAX_BYTES",
    "EMBEDDING_OPERATOR_CHUNK_BYTES",
    "EMBEDDING_OPERATOR_MAX_RESULT_BYTES",
    # the log format (logs.py)
    "EMBEDDING_OPERATOR_LOG_FORMAT",
)
"""Operator environment handed on to every worker pod (never the API key: that comes only from
the resource's Secret)."""


WORKER_EXTRA_ENV: Final = "EMBEDDING_OPERATOR_WORKER_EXTRA_ENV"
"""A JSON object of further worker environment (the chart's ``worker.extraEnv``: HTTPS_PROXY,
say)."""
WORKER_POD_SPEC: Final = "EMBEDDING_OPERATOR_WORKER_POD_SPEC"
"""A JSON object of pod-spec fields for every worker Job (the chart's worker scheduling)."""
WORKER_POD_FIELDS: Final = (
    "nodeSelector",
    "tolerations",
    "affinity",
    "priorityClassName",
    "imagePullSecrets",
)


def _json_object(env: dict[str, str], name: str, valid: Any, what: str) -> dict[str, Any]:
    """The JSON object in ``env[name]`` ({} when unset); a clear error naming the variable when
    it is not ``what``."""
    text = env.get(name, "").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{name}: not JSON ({e}); expected {what}") from None
    if not isinstance(value, dict) or not valid(value):
        raise ValueError(f"{name}: expected {what}")
    return value


def _extra_env(env: dict[str, str]) -> dict[str, str]:
    return _json_object(
        env,
        WORKER_EXTRA_ENV,
        lambda d: all(isinstance(v, str) for v in d.values()),
        "a JSON object of strings",
    )


def _pod_spec(env: dict[str, str]) -> dict[str, Any]:
    return _json_object(
        env,
        WORKER_POD_SPEC,
        lambda d: set(d) <= set(WORKER_POD_FIELDS),
        f"a JSON object of {', '.join(WORKER_POD_FIELDS)}",
    )


@dataclass(frozen=True)
class Settings:
    """Operator-wide settings, from the environment the chart sets (:meth:`from_env`)."""

    image: str = f"embedding-operator:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    worker_service_account: str = "embedding-operator-worker"
    worker_cluster_role: str = "embedding-operator-worker"
    """The chart's ClusterRole of worker rights; the operator binds it per namespace and may bind
    nothing else (``clusterroles: bind`` on this one name)."""
    resync_seconds: float = 30.0
    """How often every unfinished resource is reconciled even without an event."""
    pod_start_timeout_seconds: float = 120.0
    """A worker pod that has not started by then (bad Secret, image, scheduling) fails the run."""
    worker_env: dict[str, str] = field(default_factory=dict)
    worker_pod_spec: dict[str, Any] = field(default_factory=dict)
    """Scheduling and pull secrets of the worker pods (``WORKER_POD_FIELDS``)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        defaults = cls()
        return cls(
            image=env.get("EMBEDDING_OPERATOR_IMAGE", defaults.image),
            image_pull_policy=env.get("EMBEDDING_OPERATOR_IMAGE_PULL_POLICY", "IfNotPresent"),
            worker_service_account=env.get(
                "EMBEDDING_OPERATOR_WORKER_SERVICE_ACCOUNT", defaults.worker_service_account
            ),
            worker_cluster_role=env.get(
                "EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE", defaults.worker_cluster_role
            ),
            resync_seconds=float(env.get("EMBEDDING_OPERATOR_RESYNC_SECONDS", "30")),
            pod_start_timeout_seconds=float(
                env.get("EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS", "120")
            ),
            worker_env={
                **{k: env[k] for k in WORKER_PASSTHROUGH if env.get(k)},
                **_extra_env(env),
            },
            worker_pod_spec=_pod_spec(env),
        )
