"""The project's retry policy for Voyage calls, on tenacity.

Voyage's client retries only 429, 503 and timeouts, counts ``max_retries`` as attempts, skips 500s
and connection errors, and ignores ``Retry-After``; so the client is always built with retries
off and this policy decides instead (see :func:`embedding_operator.voyage.errors.classify`):

* retried: 429 (waiting at least ``Retry-After``), 500, 502, 503, 504, timeouts, connection errors;
* never retried: 400, 401, 403, 422 and anything unknown -- the run fails at once with Voyage's
  ``detail`` message;
* exponential backoff with full jitter, bounded by both ``max_attempts`` and ``max_elapsed``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
)

from embedding_operator import settings as registry
from embedding_operator.voyage.errors import Outcome, classify


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retries of one batch."""

    max_attempts: int = int(registry.default("VOYAGE_MAX_ATTEMPTS"))
    """Attempts in all (the first one included)."""
    max_elapsed: float = float(registry.default("VOYAGE_MAX_RETRY_SECONDS"))
    """Seconds after the first attempt past which no new attempt starts."""
    initial_backoff: float = 0.5
    max_backoff: float = 30.0

    def backoff(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        Full jitter (uniform between half and all of the exponential step) spreads the retries
        of many batches that failed together; ``Retry-After`` is a floor.
        """
        step = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        wait = rng.uniform(step / 2, step)
        return max(wait, retry_after or 0.0)

    def retrying(self, rng: random.Random | None = None) -> AsyncRetrying:
        """A tenacity controller: retry what :func:`classify` calls retryable, within the bounds."""
        chooser = rng or random.Random()  # noqa: S311 (jitter, not cryptography)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            retry_after = classify(exc).retry_after if exc is not None else None
            return self.backoff(state.attempt_number, retry_after, chooser)

        return AsyncRetrying(
            retry=retry_if_exception(lambda e: classify(e).outcome is not Outcome.FATAL),
            stop=stop_after_attempt(self.max_attempts) | stop_after_delay(self.max_elapsed),
            wait=wait,
            reraise=True,
        )
