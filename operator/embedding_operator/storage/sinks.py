"""Result sinks that need no Kubernetes: the ordered-append contract, memory and inline stores.

Every sink receives the rows of a run in input order (the engine reorders), checks that each
write continues exactly where the last one ended with the expected dtype and row length, and
turns the whole into a :class:`~embedding_operator.api.types.Result` in ``finish``.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from embedding_operator.api.types import InlineVectors, Result
from embedding_operator.storage.layout import ResultLayout
from embedding_operator.storage.settings import StorageSettings


class ResultTooLargeError(Exception):
    """The result does not fit the store chosen for it (never truncated instead)."""


class OrderedSink:
    """Base of every sink: validates in-order writes against the layout.

    Subclasses implement :meth:`_append`, :meth:`_finish` and optionally :meth:`_abort`. Calls
    are serialized by a lock: a cancelled run may call ``abort`` while the thread of its last
    ``write`` is still running.
    """

    def __init__(self, layout: ResultLayout) -> None:
        self.layout = layout
        self.written = 0
        self._lock = threading.Lock()

    def write(self, offset: int, rows: npt.NDArray[Any]) -> None:
        with self._lock:
            self._write(offset, rows)

    def finish(self, total_tokens: int) -> Result:
        with self._lock:
            if self.written != self.layout.count:
                raise ValueError(f"{self.written} rows written, {self.layout.count} expected")
            return self._finish(total_tokens)

    def abort(self) -> None:
        """Release what a failed run left behind."""
        with self._lock:
            self._abort()

    def _write(self, offset: int, rows: npt.NDArray[Any]) -> None:
        if offset != self.written:
            raise ValueError(f"rows written out of order: offset {offset}, expected {self.written}")
        if rows.ndim != 2 or rows.shape[1] != self.layout.row_length:
            raise ValueError(f"rows of shape {rows.shape}, expected (n, {self.layout.row_length})")
        if offset + rows.shape[0] > self.layout.count:
            raise ValueError(f"more than {self.layout.count} rows written")
        self._append(np.ascontiguousarray(rows, dtype=self.layout.numpy_dtype))
        self.written += rows.shape[0]

    def _abort(self) -> None:
        return

    def _append(self, rows: npt.NDArray[Any]) -> None:
        raise NotImplementedError

    def _finish(self, total_tokens: int) -> Result:
        raise NotImplementedError

    def _result(self, total_tokens: int, **where: Any) -> Result:
        return Result(
            model=self.layout.model,
            total_tokens=total_tokens,
            count=self.layout.count,
            dimensions=self.layout.dimensions,
            dtype=self.layout.dtype,
            **where,
        )


class ArraySink(OrderedSink):
    """Keeps the result in one preallocated array (``.array``): exactly the raw size in memory."""

    def __init__(self, layout: ResultLayout) -> None:
        super().__init__(layout)
        self.array: npt.NDArray[Any] = np.empty(
            (layout.count, layout.row_length), dtype=layout.numpy_dtype
        )

    def _append(self, rows: npt.NDArray[Any]) -> None:
        self.array[self.written : self.written + rows.shape[0]] = rows

    def _finish(self, total_tokens: int) -> Result:
        return self._result(total_tokens)


class NullSink(OrderedSink):
    """Checks and counts the rows, keeps nothing (``embed`` without ``-o``, benchmarks)."""

    def _append(self, rows: npt.NDArray[Any]) -> None:
        return

    def _finish(self, total_tokens: int) -> Result:
        return self._result(total_tokens)


def to_lists(array: npt.NDArray[Any]) -> list[list[float]]:
    """Rows as JSON-ready lists (REST records, ``.json`` files). float32 values take their
    shortest round-tripping decimal (``0.1``, not ``0.10000000149011612``): ~40% less JSON."""
    if array.dtype.kind == "f":
        return [[float(str(x)) for x in row] for row in array.astype(np.float32)]
    rows: list[list[float]] = array.astype(np.int64).tolist()
    return rows


def inline_size(layout: ResultLayout) -> int:
    """Characters of the result's base64 in the status: exact, known before the run."""
    return 4 * -(-layout.total_bytes // 3)


def inline_fits(layout: ResultLayout, settings: StorageSettings) -> bool:
    return inline_size(layout) <= settings.inline_max_bytes


class InlineSink(ArraySink):
    """The status ``result`` with the vectors inline (``inline.data``, base64), for small runs."""

    def _finish(self, total_tokens: int) -> Result:
        data = base64.b64encode(self.array.tobytes()).decode("ascii")
        inline = InlineVectors(encoding=self.layout.encoding, data=data)
        return self._result(total_tokens, inline=inline)


S = TypeVar("S")


def select_sink(
    layout: ResultLayout, settings: StorageSettings, chunked: Callable[[], S]
) -> InlineSink | S:
    """The inline store when the result is small enough for the status, else ``chunked()``."""
    if inline_fits(layout, settings):
        return InlineSink(layout)
    return chunked()
