"""Operator-wide settings of the Voyage layer, read from the environment, and limit resolution.

Precedence for rate limits and concurrency (first set wins):
``spec.rateLimits`` of the resource > operator-wide environment > the model catalog's tier-1
defaults. The environment lets an operator installed for a higher Voyage tier raise the defaults
for every resource at once.

The variables (``VOYAGE_BASE_URL``, ``VOYAGE_TIMEOUT_SECONDS``, ``VOYAGE_MAX_ATTEMPTS``,
``VOYAGE_MAX_RETRY_SECONDS``, ``EMBEDDING_OPERATOR_RPM``, ``EMBEDDING_OPERATOR_TPM``,
``EMBEDDING_OPERATOR_CONCURRENCY``), their defaults and bounds are in the registry,
:mod:`embedding_operator.settings`; ``VOYAGE_API_KEY`` is the key (the worker gets it from the
resource's Secret).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from embedding_operator import settings as registry
from embedding_operator.api.catalog import ModelInfo
from embedding_operator.api.types import RateLimits
from embedding_operator.voyage.retry import RetryPolicy

DEFAULT_CONCURRENCY = int(registry.default("EMBEDDING_OPERATOR_CONCURRENCY"))
DEFAULT_TIMEOUT = float(registry.default("VOYAGE_TIMEOUT_SECONDS"))


@dataclass(frozen=True)
class Limits:
    """The pace of one run."""

    requests_per_minute: int
    tokens_per_minute: int
    max_concurrency: int = DEFAULT_CONCURRENCY
    window_seconds: float = 60.0
    """The providers' accounting window; tests shorten it to exercise limits quickly."""
    learn_from_throttling: bool = True
    """Lower the TPM to what Voyage accepted before a 429 (see :mod:`.limiter`); off only to
    measure the behaviour without it (benchmarks/throughput.py)."""

    @classmethod
    def resolve(
        cls,
        model: ModelInfo,
        overrides: RateLimits | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Limits:
        """Limits for ``model``: resource overrides, then the environment, then the catalog."""
        env = os.environ if env is None else env
        spec = overrides or RateLimits()
        return cls(
            requests_per_minute=spec.requests_per_minute
            or registry.integer("EMBEDDING_OPERATOR_RPM", env)
            or model.requests_per_minute,
            tokens_per_minute=spec.tokens_per_minute
            or registry.integer("EMBEDDING_OPERATOR_TPM", env)
            or model.tokens_per_minute,
            max_concurrency=spec.max_concurrency
            or registry.integer("EMBEDDING_OPERATOR_CONCURRENCY", env)
            or DEFAULT_CONCURRENCY,
        )


@dataclass(frozen=True)
class ClientSettings:
    """How to reach Voyage. ``api_key`` is excluded from ``repr`` so it never lands in a log."""

    api_key: str = field(repr=False)
    base_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, api_key: str | None = None
    ) -> ClientSettings:
        """Settings from the environment (see the module docstring); ``api_key`` wins if given."""
        env = os.environ if env is None else env
        key = api_key if api_key is not None else env.get("VOYAGE_API_KEY", "")
        if not key.strip():
            raise ValueError("no Voyage API key: set VOYAGE_API_KEY")
        return cls(
            api_key=key.strip(),
            base_url=(registry.string("VOYAGE_BASE_URL", env) or "").rstrip("/") or None,
            timeout=registry.number("VOYAGE_TIMEOUT_SECONDS", env) or DEFAULT_TIMEOUT,
            retry=RetryPolicy(
                max_attempts=registry.integer("VOYAGE_MAX_ATTEMPTS", env) or 1,
                max_elapsed=registry.number("VOYAGE_MAX_RETRY_SECONDS", env) or 0.0,
            ),
        )
