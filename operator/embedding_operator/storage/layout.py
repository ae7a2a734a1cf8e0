"""The byte layout of a stored result: what every store writes and :func:`reassemble` reads.

A result is ``count`` rows, row-major, little-endian, one fixed-size row per input:

============  ====================  ===========================================
dtype         encoding              row
============  ====================  ===========================================
float         ``float32-le``        ``dimensions`` float32
int8          ``int8``              ``dimensions`` int8
uint8         ``uint8``             ``dimensions`` uint8
binary        ``int8-bitpacked``    ``dimensions / 8`` int8 (offset binary, as Voyage sends it)
ubinary       ``uint8-bitpacked``   ``dimensions / 8`` uint8 (packed bits, as Voyage sends it)
============  ====================  ===========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from embedding_operator.api.catalog import OutputDtype
from embedding_operator.api.types import DeploymentEmbeddingSpec

ENCODINGS: Final[dict[OutputDtype, tuple[str, str]]] = {
    "float": ("float32-le", "<f4"),
    "int8": ("int8", "i1"),
    "uint8": ("uint8", "u1"),
    "binary": ("int8-bitpacked", "i1"),
    "ubinary": ("uint8-bitpacked", "u1"),
}
"""Output dtype -> (encoding name in the status, numpy dtype of one number)."""


@dataclass(frozen=True)
class ResultLayout:
    """The shape of one run's result, known before the first request."""

    model: str
    count: int
    dimensions: int
    dtype: OutputDtype = "float"

    @classmethod
    def for_spec(cls, spec: DeploymentEmbeddingSpec) -> ResultLayout:
        return cls(spec.model, len(spec.inputs), spec.dimension, spec.dtype)

    @property
    def encoding(self) -> str:
        return ENCODINGS[self.dtype][0]

    @property
    def numpy_dtype(self) -> np.dtype[Any]:
        return np.dtype(ENCODINGS[self.dtype][1])

    @property
    def packed(self) -> bool:
        return self.dtype in ("binary", "ubinary")

    @property
    def row_length(self) -> int:
        """Numbers per row: ``dimensions``, or ``dimensions / 8`` for the bit-packed dtypes."""
        return self.dimensions // 8 if self.packed else self.dimensions

    @property
    def row_bytes(self) -> int:
        return self.row_length * self.numpy_dtype.itemsize

    @property
    def total_bytes(self) -> int:
        return self.count * self.row_bytes


def dtype_for_encoding(encoding: str) -> np.dtype[Any]:
    """The numpy dtype of an encoding name found in a status."""
    for name, numpy_dtype in ENCODINGS.values():
        if name == encoding:
            return np.dtype(numpy_dtype)
    raise ValueError(f"unknown result encoding {encoding!r}")
