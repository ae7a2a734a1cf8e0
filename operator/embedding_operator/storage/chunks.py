"""Pure pieces of the chunked store: splitting a byte stream, digests, names, reassembly.

Kept apart from the Kubernetes calls (:mod:`.configmaps`) so they are unit-tested directly and
the REST facade can reassemble without the writer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from embedding_operator.api.types import ChunkedStorage, InlineVectors, Result
from embedding_operator.storage.layout import ResultLayout, dtype_for_encoding

DIGEST_PREFIX = "sha256:"


class DigestMismatchError(Exception):
    """The stored bytes are not the ones the status describes (size or sha256)."""


class Chunker:
    """Cuts a stream of byte strings into chunks of exactly ``size`` bytes (the last: fewer),
    and digests the whole stream on the way."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("chunk size must be positive")
        self.size = size
        self._buffer = bytearray()
        self._sha = hashlib.sha256()
        self.total = 0

    def feed(self, data: bytes | memoryview) -> Iterator[bytes]:
        """Add ``data``; yield every chunk that is now complete."""
        self._sha.update(data)
        self.total += len(data)
        self._buffer += data
        while len(self._buffer) >= self.size:
            chunk = bytes(self._buffer[: self.size])
            del self._buffer[: self.size]
            yield chunk

    def close(self) -> Iterator[bytes]:
        """Yield the last, partial chunk (if any)."""
        if self._buffer:
            chunk = bytes(self._buffer)
            self._buffer.clear()
            yield chunk

    @property
    def digest(self) -> str:
        return DIGEST_PREFIX + self._sha.hexdigest()


def digest_of(data: bytes) -> str:
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def run_key(run_id: str) -> str:
    """A short, name-safe key of a run identifier (a Job name, an annotation value...)."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:10]


def chunk_name(resource_name: str, run_id: str, index: int) -> str:
    """``<resource>-result-<run key>-<index>``: deterministic, so a retried pod overwrites its own
    chunks; at most 63 + 25 characters (a ConfigMap name may have 253)."""
    return f"{resource_name}-result-{run_key(run_id)}-{index:03d}"


def reassemble(
    chunks: Iterable[bytes], storage: ChunkedStorage, count: int, row_length: int
) -> npt.NDArray[Any]:
    """The result array from its chunks, after checking size and digest against the status."""
    data = b"".join(chunks)
    if len(data) != storage.size:
        raise DigestMismatchError(
            f"stored result has {len(data)} bytes, the status says {storage.size}"
        )
    if digest_of(data) != storage.digest:
        raise DigestMismatchError("stored result does not match its sha256 digest")
    dtype = dtype_for_encoding(storage.encoding)
    if storage.size != count * row_length * dtype.itemsize:
        raise DigestMismatchError(
            f"{storage.size} bytes cannot hold {count} rows of {row_length} {dtype} values"
        )
    return np.frombuffer(data, dtype=dtype).reshape(count, row_length)


def inline_array(inline: InlineVectors, count: int, row_length: int) -> npt.NDArray[Any]:
    """The array of a result kept in the status (``inline.data``, base64), size checked."""
    try:
        data = base64.b64decode(inline.data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise DigestMismatchError(f"the inline result is not valid base64: {e}") from None
    dtype = dtype_for_encoding(inline.encoding)
    if len(data) != count * row_length * dtype.itemsize:
        raise DigestMismatchError(
            f"the inline result has {len(data)} bytes, not {count} rows of {row_length} {dtype}"
        )
    return np.frombuffer(data, dtype=dtype).reshape(count, row_length)


def result_array(result: Result, chunks: Iterable[bytes] | None = None) -> npt.NDArray[Any]:
    """A finished run's vectors as an array: from the status (base64, or the JSON numbers 0.1
    wrote) or from the chunks."""
    layout = ResultLayout(result.model, result.count, result.dimensions, result.dtype)
    if result.storage is not None:
        if chunks is None:
            raise ValueError("the result is stored in chunks; pass them")
        return reassemble(chunks, result.storage, result.count, layout.row_length)
    if result.inline is not None:
        return inline_array(result.inline, result.count, layout.row_length)
    if result.embeddings is None:
        raise ValueError("the result holds neither embeddings nor a storage reference")
    array = np.asarray(result.embeddings, dtype=layout.numpy_dtype)
    return array.reshape(result.count, layout.row_length)
