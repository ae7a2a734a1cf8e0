"""Retry classification, Retry-After, backoff bounds, key scrubbing."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
import voyageai.error as verr

from embedding_operator.voyage import RetryPolicy, scrub
from embedding_operator.voyage.errors import (
    MalformedResponseError,
    Outcome,
    classify,
    retry_after_seconds,
)


def _error(cls: type[verr.VoyageError], status: int, detail: str = "boom", **headers: str):  # type: ignore[no-untyped-def]
    return cls(detail, f'{{"detail": "{detail}"}}', status, {"detail": detail}, headers)


@pytest.mark.parametrize(
    ("exc", "outcome"),
    [
        (_error(verr.RateLimitError, 429), Outcome.THROTTLED),
        (_error(verr.ServerError, 500), Outcome.RETRY),
        (_error(verr.ServiceUnavailableError, 502), Outcome.RETRY),
        (_error(verr.ServiceUnavailableError, 503), Outcome.RETRY),
        (_error(verr.ServiceUnavailableError, 504), Outcome.RETRY),
        (verr.Timeout("Request timed out"), Outcome.RETRY),
        (verr.APIConnectionError("Error communicating with Voyage"), Outcome.RETRY),
        (aiohttp.ServerDisconnectedError(), Outcome.RETRY),
        (aiohttp.ClientPayloadError("cut short"), Outcome.RETRY),
        (TimeoutError(), Outcome.RETRY),
        (MalformedResponseError("3 embeddings for 4 inputs"), Outcome.RETRY),
        (_error(verr.InvalidRequestError, 400), Outcome.FATAL),
        (_error(verr.AuthenticationError, 401), Outcome.FATAL),
        (_error(verr.APIError, 403), Outcome.FATAL),
        (_error(verr.MalformedRequestError, 422), Outcome.FATAL),
        (ValueError("a bug"), Outcome.FATAL),
    ],
)
def test_classification(exc: BaseException, outcome: Outcome) -> None:
    assert classify(exc).outcome is outcome


def test_fatal_errors_carry_voyages_detail() -> None:
    failure = classify(_error(verr.InvalidRequestError, 400, "The batch size limit is 1000."))
    assert failure.status == 400 and failure.message == "The batch size limit is 1000."
    # 403 becomes a generic APIError whose message dumps the body; the detail is still used.
    forbidden = verr.APIError("long dump", "{}", 403, {"detail": "IP not allowed"}, {})
    assert classify(forbidden).message == "IP not allowed"


def test_retry_after_is_read_from_the_error_headers() -> None:
    failure = classify(_error(verr.RateLimitError, 429, **{"Retry-After": "7"}))
    assert failure.retry_after == 7.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_is_exponential_jittered_bounded_and_honours_retry_after() -> None:
    policy = RetryPolicy(initial_backoff=1.0, max_backoff=8.0)
    rng = random.Random(1)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        waits = [policy.backoff(attempt, None, rng) for _ in range(50)]
        assert all(step / 2 <= w <= step for w in waits)
        assert len(set(waits)) > 1  # jittered
    assert policy.backoff(1, 20.0, rng) == 20.0


def _run(policy: RetryPolicy, errors: list[BaseException]) -> tuple[int, BaseException | None]:
    calls = 0

    async def scenario() -> None:
        nonlocal calls
        async for attempt in policy.retrying():
            with attempt:
                calls += 1
                if errors:
                    raise errors.pop(0)

    try:
        asyncio.run(scenario())
    except Exception as exc:
        return calls, exc
    return calls, None


FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.002)


def test_retryable_errors_are_retried_until_success() -> None:
    errors: list[BaseException] = [
        _error(verr.ServerError, 500),
        _error(verr.RateLimitError, 429),
        verr.Timeout("t"),
    ]
    assert _run(FAST, errors) == (4, None)


def test_attempts_are_bounded() -> None:
    errors: list[BaseException] = [_error(verr.ServerError, 500) for _ in range(10)]
    calls, exc = _run(FAST, errors)
    assert calls == 4 and isinstance(exc, verr.ServerError)


def test_elapsed_time_is_bounded() -> None:
    policy = RetryPolicy(max_attempts=100, max_elapsed=0.05, initial_backoff=0.02, max_backoff=0.02)
    errors: list[BaseException] = [_error(verr.ServerError, 500) for _ in range(100)]
    calls, exc = _run(policy, errors)
    assert isinstance(exc, verr.ServerError) and calls < 100


@pytest.mark.parametrize("status", [400, 401, 403, 422])
def test_client_errors_fail_at_once(status: int) -> None:
    cls = {
        400: verr.InvalidRequestError,
        401: verr.AuthenticationError,
        422: verr.MalformedRequestError,
    }
    errors: list[BaseException] = [_error(cls.get(status, verr.APIError), status)]
    calls, exc = _run(FAST, errors)
    assert calls == 1 and exc is not None


def test_scrub_removes_the_key_and_bearer_tokens() -> None:
    key = "pa-abcdef123456"
    text = f"failed with key {key}; headers {{'Authorization': 'Bearer {key}'}} Bearer other"
    cleaned = scrub(text, [key, None, ""])
    assert key not in cleaned and "other" not in cleaned
    assert "[REDACTED]" in cleaned
