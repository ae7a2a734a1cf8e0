"""Split the inputs into requests Voyage accepts.

Voyage caps a request at 1,000 inputs and at a per-model number of tokens. Its tokenizer is only
available by downloading it from the Hugging Face hub, which a worker pod must not depend on, so
token counts are *estimated* from the UTF-8 length: :data:`BYTES_PER_TOKEN` = 3, i.e. at most 3
ASCII characters per token. Voyage's rule of thumb is about 5 characters per token for English, so
the estimate overshoots ordinary text by ~40% and stays safe for code, digits and non-Latin
scripts (a CJK character is 3 bytes in UTF-8 and usually one token). Overshooting only makes
batches smaller; the rate limiter is corrected with the real ``total_tokens`` of each response.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embedding_operator.api.catalog import MAX_INPUTS_PER_REQUEST
from embedding_operator.voyage.errors import InputTooLargeError

BYTES_PER_TOKEN = 3
"""Conservative estimate of UTF-8 bytes per token (see the module docstring)."""


def estimate_tokens(text: str) -> int:
    """An upper estimate of the tokens Voyage counts for ``text`` (at least 1)."""
    return max(1, -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN))


@dataclass(frozen=True)
class Batch:
    """Inputs ``start`` to ``end`` (exclusive) sent in one request."""

    index: int
    start: int
    end: int
    estimated_tokens: int

    @property
    def size(self) -> int:
        return self.end - self.start


def plan_batches(
    texts: Sequence[str],
    *,
    max_tokens: int,
    max_inputs: int = MAX_INPUTS_PER_REQUEST,
    target_batches: int = 1,
    hard_max_tokens: int | None = None,
) -> list[Batch]:
    """Greedy, order-preserving batches of at most ``max_inputs`` inputs and ``max_tokens`` tokens.

    ``target_batches`` (usually the concurrency) lowers the inputs per batch for small runs, so a
    run of 2,000 inputs uses several requests in parallel rather than two large ones. An input
    over ``max_tokens`` but within ``hard_max_tokens`` (default: the same) travels alone. Raises
    :class:`InputTooLargeError` naming the first input that cannot fit in any request.
    """
    if max_inputs < 1 or max_tokens < 1:
        raise ValueError("max_inputs and max_tokens must be positive")
    hard_max = max(max_tokens, hard_max_tokens or max_tokens)
    per_batch = min(max_inputs, max(1, -(-len(texts) // max(1, target_batches))))
    batches: list[Batch] = []
    start, tokens = 0, 0
    for i, text in enumerate(texts):
        cost = estimate_tokens(text)
        if cost > hard_max:
            raise InputTooLargeError(i, cost, hard_max)
        if i > start and (i - start >= per_batch or tokens + cost > max_tokens):
            batches.append(Batch(len(batches), start, i, tokens))
            start, tokens = i, 0
        tokens += cost
    if len(texts) > start:
        batches.append(Batch(len(batches), start, len(texts), tokens))
    return batches
