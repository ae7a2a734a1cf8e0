"""Errors of the Voyage layer, their classification, and scrubbing of the API key.

Voyage's client raises one class per HTTP outcome; the engine needs only three answers: retry,
retry after slowing down (429), or fail now with Voyage's own message. Keeping that decision in
one pure function makes it unit-testable without a server.

Every message that leaves this layer goes through :func:`scrub`: the key is a bearer credential,
and error texts end up in pod logs, Events and the resource's status.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

import aiohttp
import voyageai.error as verr

REDACTED = "[REDACTED]"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",}]+")


def scrub(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` without any of ``secrets`` and without anything that follows ``Bearer``.

    Defensive: Voyage's client does not put the key in its messages today, but a proxy error page,
    a future client version or a debug dump might.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _BEARER.sub(rf"\g<1>{REDACTED}", text)


class EmbeddingError(Exception):
    """A run cannot complete; the message is safe to show (scrubbed) and names what to fix."""


class VoyageRequestError(EmbeddingError):
    """Voyage refused a request (400, 401, 403, 422): retrying the same request cannot help."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


class VoyageUnavailableError(EmbeddingError):
    """Retryable failures outlasted the retry budget (attempts or time)."""


class InputTooLargeError(EmbeddingError):
    """One input alone exceeds what a single request may carry."""

    def __init__(self, index: int, estimated_tokens: int, cap: int) -> None:
        super().__init__(
            f"input {index} is too long: about {estimated_tokens} tokens (estimated), more than "
            f"the {cap} tokens a single request may carry; shorten or split it"
        )
        self.index = index


class MalformedResponseError(Exception):
    """Voyage (or a proxy in front of it) answered 200 with a body that is not the embeddings
    shape; retried, as a truncated or garbled body usually is transient."""


class Outcome(Enum):
    """What to do about a failed attempt."""

    RETRY = "retry"
    THROTTLED = "throttled"  # 429: retry, and slow everyone down
    FATAL = "fatal"


@dataclass(frozen=True)
class Failure:
    """A classified failed attempt."""

    outcome: Outcome
    status: int | None
    message: str
    retry_after: float | None = None


_RETRYABLE_STATUS = frozenset({500, 502, 503, 504})
_FATAL_STATUS = frozenset({400, 401, 403, 404, 422})


def classify(exc: BaseException) -> Failure:
    """Map an exception from one Voyage call to retry / throttled / fatal.

    Status codes come from the error object (the client keeps ``http_status`` and the response
    ``headers`` on it), so ``Retry-After`` is read from there rather than re-requesting.
    """
    if isinstance(exc, verr.VoyageError):
        status = exc.http_status if isinstance(exc.http_status, int) else None
        message = _detail(exc)
        if status == 429 or isinstance(exc, verr.RateLimitError):
            return Failure(Outcome.THROTTLED, 429, message, retry_after_seconds(exc.headers))
        if status in _RETRYABLE_STATUS or isinstance(
            exc, verr.ServerError | verr.ServiceUnavailableError | verr.Timeout
        ):
            return Failure(Outcome.RETRY, status, message)
        if isinstance(exc, verr.APIConnectionError | verr.TryAgain):
            return Failure(Outcome.RETRY, None, message)
        if status is not None and status in _FATAL_STATUS:
            return Failure(Outcome.FATAL, status, message)
        if isinstance(exc, verr.AuthenticationError):
            return Failure(Outcome.FATAL, status or 401, message)
        if isinstance(exc, verr.InvalidRequestError | verr.MalformedRequestError):
            return Failure(Outcome.FATAL, status, message)
        if status is not None and status >= 500:
            return Failure(Outcome.RETRY, status, message)
        return Failure(Outcome.FATAL, status, message)
    if isinstance(exc, MalformedResponseError):
        return Failure(Outcome.RETRY, None, f"malformed response: {exc}")
    # Transport errors that escape the client's own mapping (e.g. a body cut short mid-read).
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | ConnectionError):
        return Failure(Outcome.RETRY, None, f"{type(exc).__name__}: {exc}".rstrip(": "))
    return Failure(Outcome.FATAL, None, f"{type(exc).__name__}: {exc}")


def _detail(exc: Any) -> str:
    """Voyage's own ``detail`` message when the body had one, else the client's message."""
    body = getattr(exc, "json_body", None)
    if isinstance(body, Mapping) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    message = getattr(exc, "user_message", None)
    if isinstance(message, str) and message:
        return message
    return type(exc).__name__


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float | None:
    """``Retry-After`` in seconds (the delta-seconds form; an HTTP date is ignored)."""
    if not headers:
        return None
    value = headers.get("Retry-After") or headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None
