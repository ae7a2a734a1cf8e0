"""Operator-wide settings, read once from the environment (the Helm chart sets them)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Final

from embedding_operator import settings as registry

WORKER_PASSTHROUGH: Final = registry.WORKER_SETTINGS
"""Operator environment handed on to every worker pod (never the API key: that comes only from
the resource's Secret); the registry's ``worker`` settings."""


WORKER_EXTRA_ENV: Final = registry.REGISTRY["EMBEDDING_OPERATOR_WORKER_EXTRA_ENV"].name
"""A JSON object of further worker environment (the chart's ``worker.extraEnv``: HTTPS_PROXY,
say)."""
WORKER_POD_SPEC: Final = registry.REGISTRY["EMBEDDING_OPERATOR_WORKER_POD_SPEC"].name
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

    image: str = str(registry.default("EMBEDDING_OPERATOR_IMAGE"))
    image_pull_policy: str = str(registry.default("EMBEDDING_OPERATOR_IMAGE_PULL_POLICY"))
    worker_service_account: str = str(registry.default("EMBEDDING_OPERATOR_WORKER_SERVICE_ACCOUNT"))
    worker_cluster_role: str = str(registry.default("EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE"))
    """The chart's ClusterRole of worker rights; the operator binds it per namespace and may bind
    nothing else (``clusterroles: bind`` on this one name)."""
    resync_seconds: float = float(registry.default("EMBEDDING_OPERATOR_RESYNC_SECONDS"))
    """How often every unfinished resource is reconciled even without an event."""
    pod_start_timeout_seconds: float = float(
        registry.default("EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS")
    )
    """A worker pod that has not started by then (bad Secret, image, scheduling) fails the run."""
    worker_env: dict[str, str] = field(default_factory=dict)
    worker_pod_spec: dict[str, Any] = field(default_factory=dict)
    """Scheduling and pull secrets of the worker pods (``WORKER_POD_FIELDS``)."""

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """From the environment; a bad value is a SettingError naming it (the operator stops)."""
        env = dict(os.environ if env is None else env)
        registry.check_all(WORKER_PASSTHROUGH, env)  # the workers' too: refuse them here first
        return cls(
            image=str(registry.string("EMBEDDING_OPERATOR_IMAGE", env)),
            image_pull_policy=str(registry.string("EMBEDDING_OPERATOR_IMAGE_PULL_POLICY", env)),
            worker_service_account=str(
                registry.string("EMBEDDING_OPERATOR_WORKER_SERVICE_ACCOUNT", env)
            ),
            worker_cluster_role=str(registry.string("EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE", env)),
            resync_seconds=float(registry.number("EMBEDDING_OPERATOR_RESYNC_SECONDS", env) or 0),
            pod_start_timeout_seconds=float(
                registry.number("EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS", env) or 0
            ),
            worker_env={
                **{k: env[k].strip() for k in WORKER_PASSTHROUGH if env.get(k, "").strip()},
                **_extra_env(env),
            },
            worker_pod_spec=_pod_spec(env),
        )
