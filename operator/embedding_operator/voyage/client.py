"""A thin wrapper over Voyage's official client: one call = one HTTP request, rows as numpy.

Why ``voyageai.Embedding.acreate`` (the resource layer that ``AsyncClient.embed`` itself calls)
with ``encoding_format="base64"`` rather than ``AsyncClient.embed``:

* ``AsyncClient.embed`` decodes Voyage's base64 and then converts every vector to Python lists
  (~32 bytes per number instead of 4) and wraps the call in its own retry loop. Asking for base64
  explicitly makes the client return the strings untouched; each batch is decoded straight into
  one compact numpy array here.
* The request, authentication header, timeouts and the mapping of HTTP errors to exception
  classes (with ``http_status``, ``headers`` and Voyage's ``detail``) are still the client's.
* Retries are entirely ours (:mod:`embedding_operator.voyage.retry`), so the two never multiply.

The async transport is used (not ``Client`` in threads) because one event loop holds dozens of
requests in flight cheaply, the limiter and the AIMD gate are plain coroutines without locks,
cancelling a failed run is immediate, and one shared ``aiohttp`` session keeps connections alive
(``voyageai.aiosession``; without it the client opens a session per request).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
from voyageai.api_resources.embedding import Embedding

from embedding_operator.api.catalog import OutputDtype
from embedding_operator.voyage.errors import MalformedResponseError

WIRE_DTYPES: Final[dict[OutputDtype, str]] = {
    "float": "<f4",
    "int8": "i1",
    "uint8": "u1",
    "binary": "i1",
    "ubinary": "u1",
}
"""How Voyage's base64 is laid out per output dtype (little-endian float32, int8 or uint8)."""


_acreate = cast(Callable[..., Awaitable[Any]], Embedding.acreate)
"""The client's request call (untyped in voyageai 0.5.0)."""


def row_length(dtype: OutputDtype, dimension: int) -> int:
    """Numbers per vector on the wire: binary dtypes pack 8 dimensions into one byte."""
    return dimension // 8 if dtype in ("binary", "ubinary") else dimension


@dataclass(frozen=True)
class EmbedCall:
    """The options shared by every request of a run."""

    model: str
    input_type: str | None
    truncation: bool
    output_dtype: OutputDtype
    output_dimension: int | None
    dimension: int

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return np.dtype(WIRE_DTYPES[self.output_dtype])

    @property
    def row_length(self) -> int:
        return row_length(self.output_dtype, self.dimension)


async def embed_batch(
    texts: Sequence[str],
    call: EmbedCall,
    *,
    api_key: str,
    base_url: str | None,
    timeout: float,
) -> tuple[npt.NDArray[Any], int]:
    """One request: the batch's vectors as a ``(len(texts), row_length)`` array, and its tokens."""
    response = await _acreate(
        input=list(texts),
        model=call.model,
        input_type=call.input_type,
        truncation=call.truncation,
        output_dtype=call.output_dtype,
        output_dimension=call.output_dimension,
        encoding_format="base64",
        api_key=api_key,
        base_url=base_url,
        request_timeout=timeout,
    )
    return decode_response(response, len(texts), call)


def decode_response(response: Any, count: int, call: EmbedCall) -> tuple[npt.NDArray[Any], int]:
    """Decode ``data[*].embedding`` (base64) into rows ordered by ``data[*].index``."""
    try:
        data = response["data"]
        tokens = int(response["usage"]["total_tokens"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedResponseError(f"response without data or usage: {exc}") from None
    if len(data) != count:
        raise MalformedResponseError(f"{len(data)} embeddings returned for {count} inputs")
    rows = np.empty((count, call.row_length), dtype=call.numpy_dtype)
    seen = np.zeros(count, dtype=bool)
    for item in data:
        index = int(item["index"])
        if not 0 <= index < count or seen[index]:
            raise MalformedResponseError(f"unexpected embedding index {index}")
        seen[index] = True
        rows[index] = _vector(item["embedding"], call)
    return rows, tokens


def _vector(value: Any, call: EmbedCall) -> npt.NDArray[Any]:
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedResponseError(f"bad base64 embedding: {exc}") from None
        vector = np.frombuffer(raw, dtype=call.numpy_dtype)
    else:  # a server that ignores encoding_format and sends numbers
        vector = np.asarray(value, dtype=call.numpy_dtype)
    if vector.shape != (call.row_length,):
        raise MalformedResponseError(
            f"embedding of length {vector.size}, expected {call.row_length}"
        )
    return vector
