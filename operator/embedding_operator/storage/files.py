"""Local file sinks for ``embedding-operator embed -o``: ``.npy`` and ``.json``, both streamed.

The ``.npy`` header is written first (the shape is known before the run), then the rows as they
arrive, so a 50,000-vector run never holds its result in memory. The ``.json`` file is the REST
record's ``result`` shape (``embeddings`` as numbers first, then ``model``, ``totalTokens``...).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from embedding_operator.api.types import Result
from embedding_operator.storage.layout import ResultLayout
from embedding_operator.storage.sinks import OrderedSink, to_lists


class _FileSink(OrderedSink):
    def __init__(self, layout: ResultLayout, path: Path) -> None:
        super().__init__(layout)
        self.path = path
        self._partial = path.with_name(path.name + ".partial")
        self._file: IO[bytes] = self._partial.open("wb")

    def _finish(self, total_tokens: int) -> Result:
        self._close(total_tokens)
        self._file.close()
        os.replace(self._partial, self.path)
        return self._result(total_tokens)

    def _close(self, total_tokens: int) -> None:
        return

    def _abort(self) -> None:
        self._file.close()
        self._partial.unlink(missing_ok=True)


class NpyFileSink(_FileSink):
    """A ``.npy`` file (``numpy.load`` reads it), written row by row."""

    def __init__(self, layout: ResultLayout, path: Path) -> None:
        super().__init__(layout, path)
        header = {
            "descr": np.lib.format.dtype_to_descr(layout.numpy_dtype),
            "fortran_order": False,
            "shape": (layout.count, layout.row_length),
        }
        np.lib.format.write_array_header_1_0(self._file, header)

    def _append(self, rows: npt.NDArray[Any]) -> None:
        self._file.write(rows.tobytes())


class JsonFileSink(_FileSink):
    """The REST record's ``result`` shape as a JSON file, rows streamed as they arrive."""

    def __init__(self, layout: ResultLayout, path: Path) -> None:
        super().__init__(layout, path)
        self._file.write(b'{"embeddings": [')

    def _append(self, rows: npt.NDArray[Any]) -> None:
        for i, row in enumerate(to_lists(rows)):
            sep = "," if self.written + i else ""
            self._file.write(f"{sep}\n  {json.dumps(row)}".encode())

    def _close(self, total_tokens: int) -> None:
        fields: dict[str, Any] = self._result(total_tokens).to_dict()
        rest = json.dumps(fields)[1:]  # '"model": ..., ...}'
        self._file.write(f"\n], {rest}\n".encode())


def open_file_sink(path: str | Path, layout: ResultLayout) -> NpyFileSink | JsonFileSink:
    """The sink for ``path`` by its suffix (``.npy`` or ``.json``)."""
    target = Path(path)
    if target.suffix == ".npy":
        return NpyFileSink(layout, target)
    if target.suffix == ".json":
        return JsonFileSink(layout, target)
    raise ValueError(f"{path}: the output file must end in .npy or .json")
