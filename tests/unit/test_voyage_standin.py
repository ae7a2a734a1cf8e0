"""The stand-in itself answers like Voyage: validation, shapes, errors, limits."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import numpy as np
import pytest

from tests.unit.conftest import API_KEY
from tests.voyage_standin import StandIn, expected_embedding


def post(standin: StandIn, body: Any, key: str = API_KEY) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(
        standin.base_url + "/embeddings",
        data=json.dumps(body).encode() if not isinstance(body, bytes) else body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


def test_list_and_base64_responses(standin: StandIn) -> None:
    status, _, body = post(standin, {"input": ["a", "bb"], "model": "voyage-3.5"})
    assert status == 200 and body["object"] == "list" and body["model"] == "voyage-3.5"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert np.allclose(body["data"][1]["embedding"], expected_embedding("bb", "voyage-3.5", 1024))
    assert body["usage"] == {"total_tokens": 2}
    for dtype, numpy_dtype, length in [
        ("float", "<f4", 256),
        ("int8", "i1", 256),
        ("uint8", "u1", 256),
        ("binary", "i1", 32),
        ("ubinary", "u1", 32),
    ]:
        status, _, body = post(
            standin,
            {
                "input": "x",
                "model": "voyage-3.5",
                "output_dimension": 256,
                "output_dtype": dtype,
                "encoding_format": "base64",
            },
        )
        vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), numpy_dtype)
        assert vector.shape == (length,)
        assert np.array_equal(vector, expected_embedding("x", "voyage-3.5", 256, dtype))


def test_binary_is_offset_ubinary() -> None:
    ubinary = expected_embedding("t", "voyage-3.5", 1024, "ubinary").astype(int)
    binary = expected_embedding("t", "voyage-3.5", 1024, "binary").astype(int)
    assert np.array_equal(binary, ubinary - 128)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"input": ["a"] * 1001, "model": "voyage-3.5"}, 400, "batch size limit is 1000"),
        ({"input": ["a"], "model": "voyage-9"}, 400, "not supported"),
        ({"input": [], "model": "voyage-3.5"}, 400, "must not be empty"),
        ({"input": [1], "model": "voyage-3.5"}, 422, "list of strings"),
        (
            {"input": ["a"], "model": "voyage-law-2", "output_dimension": 256},
            400,
            "output_dimension",
        ),
        ({"input": ["a"], "model": "voyage-law-2", "output_dtype": "int8"}, 400, "output_dtype"),
        ({"input": ["a"], "model": "voyage-3.5", "encoding_format": "hex"}, 400, "encoding_format"),
        (
            {"input": ["w " * 70_000], "model": "voyage-3.5", "truncation": False},
            400,
            "exceeds the context length",
        ),
        ({"input": ["w " * 50_000] * 5, "model": "voyage-3-large"}, 400, "max allowed tokens"),
        (b"{not json", 422, "not valid JSON"),
    ],
)
def test_validation_errors_carry_a_detail(
    standin: StandIn, body: Any, status: int, detail: str
) -> None:
    got, _, payload = post(standin, body)
    assert got == status and detail in payload["detail"]


def test_truncation_on_caps_the_tokens(standin: StandIn) -> None:
    status, _, body = post(standin, {"input": ["w " * 70_000], "model": "voyage-3.5"})
    assert status == 200 and body["usage"]["total_tokens"] == 32_000


def test_wrong_key_is_401(standin: StandIn) -> None:
    status, _, body = post(standin, {"input": "a", "model": "voyage-3.5"}, key="nope")
    assert status == 401 and body == {"detail": "Provided API key is invalid."}


def test_limits_answer_429_with_retry_after(standin: StandIn) -> None:
    standin.config.rpm = 2
    assert post(standin, {"input": "a", "model": "voyage-3.5"})[0] == 200
    assert post(standin, {"input": "a", "model": "voyage-3.5"})[0] == 200
    status, headers, body = post(standin, {"input": "a", "model": "voyage-3.5"})
    assert status == 429 and "requests per minute" in body["detail"]
    assert 1 <= int(headers["Retry-After"]) <= 60
    standin.config.rpm = None
    standin.config.tpm = 10
    status, _, body = post(standin, {"input": "a" * 100, "model": "voyage-3.5"})
    assert status == 429 and "tokens per minute" in body["detail"]
    assert standin.stats.statuses == {200: 2, 429: 2} and standin.stats.requests == 4


def test_injected_faults(standin: StandIn) -> None:
    standin.config.fault_rate = 1.0
    standin.config.faults = ("500",)
    assert post(standin, {"input": "a", "model": "voyage-3.5"})[0] == 500
    standin.config.faults = ("503",)
    assert post(standin, {"input": "a", "model": "voyage-3.5"})[0] == 503
    standin.config.faults = ("drop",)
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post(standin, {"input": "a", "model": "voyage-3.5"})
    assert standin.stats.faults == {"500": 1, "503": 1, "drop": 1}
