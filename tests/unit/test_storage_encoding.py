"""Encodings, the inline store (base64) and its size, sink contract checks."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from embedding_operator.api.types import Result
from embedding_operator.storage import (
    ENCODINGS,
    ArraySink,
    DigestMismatchError,
    InlineSink,
    NullSink,
    ResultLayout,
    StorageSettings,
    inline_fits,
    inline_size,
    result_array,
    select_sink,
    to_lists,
)
from embedding_operator.voyage.client import WIRE_DTYPES
from tests.voyage_standin import expected_matrix


@pytest.mark.parametrize("dtype", list(ENCODINGS))
def test_storage_and_wire_dtypes_agree(dtype: str) -> None:
    layout = ResultLayout("voyage-3.5", 1, 1024, dtype)  # type: ignore[arg-type]
    assert layout.numpy_dtype == np.dtype(WIRE_DTYPES[dtype])  # type: ignore[index]
    assert layout.numpy_dtype.str in ("<f4", "|i1", "|u1")  # little-endian or single bytes


@pytest.mark.parametrize(
    ("dtype", "row_length", "row_bytes"),
    [
        ("float", 1024, 4096),
        ("int8", 1024, 1024),
        ("uint8", 1024, 1024),
        ("binary", 128, 128),
        ("ubinary", 128, 128),
    ],
)
def test_layout_sizes(dtype: str, row_length: int, row_bytes: int) -> None:
    layout = ResultLayout("voyage-3.5", 10, 1024, dtype)  # type: ignore[arg-type]
    assert (layout.row_length, layout.row_bytes, layout.total_bytes) == (
        row_length,
        row_bytes,
        10 * row_bytes,
    )


def test_float32_lists_are_short_and_round_trip_exactly() -> None:
    array = expected_matrix([f"t{i}" for i in range(20)], "voyage-3.5", 256)
    lists = to_lists(array)
    assert np.array_equal(np.asarray(lists, dtype=np.float32), array)
    text = json.dumps(lists)
    assert len(text) < len(json.dumps(array.astype(np.float64).tolist())) * 0.8
    assert all(isinstance(x, float) for x in lists[0])


def test_integer_lists_stay_integers() -> None:
    array = expected_matrix(["a", "b"], "voyage-3.5", 256, "int8")
    assert to_lists(array) == array.astype(int).tolist()


@pytest.mark.parametrize("dtype", list(ENCODINGS))
def test_inline_sink_round_trips_every_dtype_exactly(dtype: str) -> None:
    """The status holds base64 of the bytes Voyage sent (float32 for floats, so nothing is
    rounded); ``inline_size`` is its exact length, known before the run."""
    texts = [f"text {i}" for i in range(30)]
    array = expected_matrix(texts, "voyage-3.5", 512, dtype)
    layout = ResultLayout("voyage-3.5", 30, 512, dtype)  # type: ignore[arg-type]
    sink = InlineSink(layout)
    sink.write(0, array[:7])
    sink.write(7, array[7:])
    result = sink.finish(total_tokens=42)
    assert result.inline is not None and result.embeddings is None and result.storage is None
    assert len(result.inline.data) == inline_size(layout)
    assert base64.b64decode(result.inline.data) == array.tobytes()
    decoded = result_array(Result.model_validate(result.to_dict()))
    assert decoded.dtype == array.dtype and np.array_equal(decoded, array)


def test_inline_sink_produces_the_status_result_shape() -> None:
    array = expected_matrix(["alpha", "beta", "gamma"], "voyage-3.5", 256)
    sink = InlineSink(ResultLayout("voyage-3.5", 3, 256))
    sink.write(0, array)
    wire = sink.finish(total_tokens=42).to_dict()
    assert set(wire) == {"model", "totalTokens", "count", "dimensions", "dtype", "inline"}
    assert wire["totalTokens"] == 42 and wire["count"] == 3 and wire["dtype"] == "float"
    assert wire["inline"]["encoding"] == "float32-le"
    # what a kubectl user decodes by hand: base64 of little-endian float32, row-major
    raw = base64.b64decode(wire["inline"]["data"])
    assert np.array_equal(np.frombuffer(raw, "<f4").reshape(3, 256), array)


def test_results_written_by_0_1_as_json_numbers_still_read() -> None:
    array = expected_matrix(["a", "b"], "voyage-3.5", 256)
    legacy = {"model": "voyage-3.5", "totalTokens": 3, "count": 2, "dimensions": 256}
    wire = {**legacy, "dtype": "float", "embeddings": to_lists(array)}
    assert np.array_equal(result_array(Result.model_validate(wire)), array)
    ints = expected_matrix(["a", "b"], "voyage-3.5", 256, "int8")
    wire = {**legacy, "dtype": "int8", "embeddings": ints.tolist()}
    assert np.array_equal(result_array(Result.model_validate(wire)), ints)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"\0" * 1020).decode(), "1020 bytes, not 1 rows of 256 float32"),
    ],
)
def test_a_damaged_inline_result_is_refused(data: str, message: str) -> None:
    wire = {"model": "voyage-3.5", "totalTokens": 3, "count": 1, "dimensions": 256}
    inline = {"encoding": "float32-le", "data": data}
    with pytest.raises(DigestMismatchError, match=message):
        result_array(Result.model_validate({**wire, "dtype": "float", "inline": inline}))


def test_select_sink_by_size() -> None:
    settings = StorageSettings(inline_max_bytes=256 * 1024)
    small = ResultLayout("voyage-3.5", 10, 1024)
    large = ResultLayout("voyage-3.5", 1000, 1024)
    assert inline_fits(small, settings) and not inline_fits(large, settings)
    assert isinstance(select_sink(small, settings, lambda: "chunked"), InlineSink)
    assert select_sink(large, settings, lambda: "chunked") == "chunked"


def test_sinks_check_order_shape_and_count() -> None:
    sink = ArraySink(ResultLayout("voyage-3.5", 4, 8, "ubinary"))  # rows of 1 byte
    with pytest.raises(ValueError, match="out of order"):
        sink.write(2, np.zeros((2, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        sink.write(0, np.zeros((2, 8), dtype=np.uint8))
    sink.write(0, np.ones((3, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="more than 4"):
        sink.write(3, np.zeros((2, 1), dtype=np.uint8))
    with pytest.raises(ValueError, match="3 rows written"):
        sink.finish(0)
    null = NullSink(ResultLayout("voyage-3.5", 1, 256))
    null.write(0, np.zeros((1, 256), dtype=np.float32))
    assert null.finish(5).inline is None


def test_storage_settings_from_env() -> None:
    settings = StorageSettings.from_env({"EMBEDDING_OPERATOR_INLINE_MAX_BYTES": "1000"})
    assert settings.inline_max_bytes == 1000 and settings.chunk_bytes == 768 * 1024
    with pytest.raises(ValueError, match="1 MiB"):
        StorageSettings(chunk_bytes=1024 * 1024)
    with pytest.raises(ValueError, match="EMBEDDING_OPERATOR_CHUNK_BYTES must be a whole number"):
        StorageSettings.from_env({"EMBEDDING_OPERATOR_CHUNK_BYTES": "lots"})
