"""Deterministic embeddings and token counts of the stand-in, shared with the tests.

A vector depends only on (text, model, dimension), so a test can compute the exact expected
result of a run and notice any input that came back in the wrong place.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

BYTES_PER_TOKEN = 4
"""The stand-in's tokenizer: one token per 4 UTF-8 bytes (the engine estimates 3, so it is
conservative against the stand-in, as it must be against Voyage)."""

WIRE_DTYPES = {"float": "<f4", "int8": "i1", "uint8": "u1", "binary": "i1", "ubinary": "u1"}


def count_tokens(text: str) -> int:
    return max(1, -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN))


def float_embedding(text: str, model: str, dimension: int) -> npt.NDArray[np.float32]:
    """A unit-length float32 vector seeded by sha256(model, dimension, text)."""
    digest = hashlib.sha256(f"{model}\x00{dimension}\x00{text}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:16], "little"))
    vector = rng.standard_normal(dimension).astype(np.float32)
    vector /= np.float32(np.linalg.norm(vector))
    return vector


def quantize(vector: npt.NDArray[np.float32], dtype: str) -> npt.NDArray[Any]:
    """Voyage's output dtypes: int8/uint8 scale to the full range; binary packs the signs."""
    if dtype == "float":
        return vector
    if dtype in ("int8", "uint8"):
        scale = 127.0 / max(float(np.abs(vector).max()), 1e-12)
        signed = np.clip(np.rint(vector * scale), -128, 127).astype(np.int16)
        return (signed if dtype == "int8" else signed + 128).astype(WIRE_DTYPES[dtype])
    if dtype in ("binary", "ubinary"):
        packed = np.packbits(vector > 0).astype(np.int16)  # ubinary: the packed bits
        return (packed - 128 if dtype == "binary" else packed).astype(WIRE_DTYPES[dtype])
    raise ValueError(f"unknown dtype {dtype!r}")


def expected_embedding(
    text: str, model: str, dimension: int, dtype: str = "float"
) -> npt.NDArray[Any]:
    """The vector the stand-in returns for ``text`` (packed for the binary dtypes)."""
    return quantize(float_embedding(text, model, dimension), dtype)


def expected_matrix(
    texts: list[str], model: str, dimension: int, dtype: str = "float"
) -> npt.NDArray[Any]:
    return np.stack([expected_embedding(t, model, dimension, dtype) for t in texts])
