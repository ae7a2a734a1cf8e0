"""Operator-wide settings, read once from the environment (the Helm chart sets them)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Final

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
)
"""Operator environment handed on to every worker pod (never the API key: that comes only from
the resource's Secret)."""


@dataclass(frozen=True)
class Settings:
    """Operator-wide settings, from the environment the chart sets (:meth:`from_env`)."""

    image: str = f"embedding-operator:{__version__}"
    image_pull_policy: str = "IfNotPresent"
    worker_service_account: str = "embedding-operator-worker"
    resync_seconds: float = 30.0
    """How often every unfinished resource is reconciled even without an event."""
    pod_start_timeout_seconds: float = 120.0
    """A worker pod that has not started by then (bad Secret, image, scheduling) fails the run."""
    worker_env: dict[str, str] = field(default_factory=dict)

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
            resync_seconds=float(env.get("EMBEDDING_OPERATOR_RESYNC_SECONDS", "30")),
            pod_start_timeout_seconds=float(
                env.get("EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS", "120")
            ),
            worker_env={k: env[k] for k in WORKER_PASSTHROUGH if env.get(k)},
        )
