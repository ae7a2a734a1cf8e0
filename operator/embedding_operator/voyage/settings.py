"""Operator-wide settings of the Voyage layer, read from the environment, and limit resolution.

Precedence for rate limits and concurrency (first set wins):
``spec.rateLimits`` of the resource > operator-wide environment > the model catalog's tier-1
defaults. The environment lets an operator installed for a higher Voyage tier raise the defaults
for every resource at once.

=================================  =========================================================
``VOYAGE_API_KEY``                 the key (the worker gets it from the resource's Secret)
``VOYAGE_BASE_URL``                API base URL including ``/v1`` (default: Voyage's)
``VOYAGE_TIMEOUT_SECONDS``         timeout of one request (default 120)
``VOYAGE_MAX_ATTEMPTS``            attempts per batch, first included (default 8)
``VOYAGE_MAX_RETRY_SECONDS``       no new attempt of a batch after this long (default 600)
``EMBEDDING_OPERATOR_RPM``         default requests per minute for all resources
``EMBEDDING_OPERATOR_TPM``         default tokens per minute for all resources
``EMBEDDING_OPERATOR_CONCURRENCY`` default requests in flight (default 8)
=================================  =========================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from embedding_operator.api.catalog import ModelInfo
from embedding_operator.api.types import RateLimits
from embedding_operator.voyage.retry import RetryPolicy

DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT = 120.0


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
            or _env_int(env, "EMBEDDING_OPERATOR_RPM")
            or model.requests_per_minute,
            tokens_per_minute=spec.tokens_per_minute
            or _env_int(env, "EMBEDDING_OPERATOR_TPM")
            or model.tokens_per_minute,
            max_concurrency=spec.max_concurrency
            or _env_int(env, "EMBEDDING_OPERATOR_CONCURRENCY")
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
        defaults = RetryPolicy()
        return cls(
            api_key=key.strip(),
            base_url=(env.get("VOYAGE_BASE_URL") or "").rstrip("/") or None,
            timeout=_env_float(env, "VOYAGE_TIMEOUT_SECONDS") or DEFAULT_TIMEOUT,
            retry=RetryPolicy(
                max_attempts=_env_int(env, "VOYAGE_MAX_ATTEMPTS") or defaults.max_attempts,
                max_elapsed=_env_float(env, "VOYAGE_MAX_RETRY_SECONDS") or defaults.max_elapsed,
            ),
        )


N = TypeVar("N", int, float)


def _env_number(env: Mapping[str, str], name: str, kind: type[N]) -> N | None:
    """A positive number from the environment; None when unset; a ValueError naming the
    variable when it is not one."""
    value = env.get(name, "").strip()
    if not value:
        return None
    what = "integer" if kind is int else "number"
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"{name} must be a positive {what}, not {value!r}") from None
    if number <= 0:
        raise ValueError(f"{name} must be a positive {what}, not {value!r}")
    return number


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    return _env_number(env, name, int)


def _env_float(env: Mapping[str, str], name: str) -> float | None:
    return _env_number(env, name, float)
