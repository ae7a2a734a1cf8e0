"""The engine against the Voyage stand-in: order, exact vectors, faults, limits, errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest

from embedding_operator.api.types import DeploymentEmbeddingSpec
from embedding_operator.storage import ArraySink, InlineSink, ResultLayout, result_array
from embedding_operator.voyage import (
    ClientSettings,
    EmbeddingError,
    Limits,
    Progress,
    RunStats,
    VoyageRequestError,
    embed_spec,
    embed_texts,
)
from tests.unit.conftest import API_KEY
from tests.voyage_standin import StandIn, expected_matrix
from tests.voyage_standin.vectors import count_tokens

MODEL = "voyage-3.5"


def texts(n: int, prefix: str = "document") -> list[str]:
    return [f"{prefix} {i}: " + "lorem ipsum " * (i % 13) for i in range(n)]


def run(
    inputs: list[str],
    client: ClientSettings,
    *,
    limits: Limits | None = None,
    dtype: Any = "float",
    dimension: int | None = None,
    truncation: bool = True,
    progress: list[Progress] | None = None,
) -> tuple[np.ndarray, RunStats]:
    info_dim = dimension or 1024
    sink = ArraySink(ResultLayout(MODEL, len(inputs), info_dim, dtype))
    stats = asyncio.run(
        embed_texts(
            inputs,
            model=MODEL,
            sink=sink,
            client=client,
            limits=limits or Limits(10_000, 10**9, 8),
            output_dtype=dtype,
            output_dimension=dimension,
            truncation=truncation,
            on_progress=progress.append if progress is not None else None,
        )
    )
    return sink.array, stats


def test_5000_inputs_come_back_in_order_with_the_expected_vectors(
    standin: StandIn, client: ClientSettings
) -> None:
    inputs = texts(5000)
    progress: list[Progress] = []
    array, stats = run(inputs, client, progress=progress)
    assert np.array_equal(array, expected_matrix(inputs, MODEL, 1024))
    assert stats.count == 5000 and stats.requests == stats.batches == standin.stats.requests
    assert stats.total_tokens == standin.stats.tokens
    assert stats.result is not None and stats.result.total_tokens == stats.total_tokens
    assert standin.stats.max_batch <= 1000
    assert [p.done for p in progress] == sorted(p.done for p in progress)
    assert progress[-1].done == 5000
    # The key went only where it belongs.
    assert set(standin.stats.authorizations) == {f"Bearer {API_KEY}"}


@pytest.mark.parametrize(
    ("dtype", "dimension", "row"),
    [
        ("float", 256, 256),
        ("int8", 512, 512),
        ("uint8", 2048, 2048),
        ("binary", 1024, 128),
        ("ubinary", 256, 32),
    ],
)
def test_dtype_and_dimension_are_honoured(
    standin: StandIn, client: ClientSettings, dtype: str, dimension: int, row: int
) -> None:
    inputs = texts(40)
    array, _ = run(inputs, client, dtype=dtype, dimension=dimension)
    assert array.shape == (40, row)
    assert np.array_equal(array, expected_matrix(inputs, MODEL, dimension, dtype))


def test_20_percent_faults_still_give_the_exact_result_with_bounded_requests(
    standin: StandIn, client: ClientSettings
) -> None:
    standin.config.fault_rate = 0.2
    standin.config.seed = 1  # a fault schedule that hits early requests
    standin.reset()
    standin.config.hang_seconds = 4.0
    fast_timeout = ClientSettings(
        api_key=client.api_key, base_url=client.base_url, timeout=3.0, retry=client.retry
    )
    inputs = texts(5000)
    array, stats = run(inputs, fast_timeout, limits=Limits(10_000, 10**9, 16))
    assert np.array_equal(array, expected_matrix(inputs, MODEL, 1024))
    assert sum(standin.stats.faults.values()) >= 1
    assert stats.batches == 16
    # Each fault costs one extra request (a slow success timed out costs one more); 20% faults
    # need ~1.25 requests per batch. Twice the batches is a generous, fixed bound.
    assert stats.requests == standin.stats.requests <= 2 * stats.batches
    assert stats.retries == stats.requests - stats.batches


def test_a_wrong_key_fails_after_one_attempt_with_voyages_message_and_no_key(
    standin: StandIn,
    client: ClientSettings,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong = "pa-WRONG-0123456789-secret"
    bad = ClientSettings(api_key=wrong, base_url=client.base_url, timeout=2.0, retry=client.retry)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(VoyageRequestError) as info:
        run(texts(10), bad)
    assert standin.stats.requests == 1
    assert info.value.status == 401
    assert "Provided API key is invalid." in str(info.value)
    captured = capsys.readouterr()
    for text in (str(info.value), repr(info.value), caplog.text, captured.out, captured.err):
        assert wrong not in text
    # The client's own exception is not chained as a cause and does not hold the key either.
    assert info.value.__cause__ is None
    assert wrong not in repr(info.value.__context__)


def test_an_over_long_input_with_truncation_off_fails_clearly(
    standin: StandIn, client: ClientSettings
) -> None:
    too_long = "word " * 30_000  # 150,000 bytes: 37,500 stand-in tokens > 32K context
    inputs = [*texts(3), too_long]
    with pytest.raises(VoyageRequestError, match="exceeds the context length") as info:
        run(inputs, client, truncation=False, limits=Limits(10_000, 10**9, 1))
    assert info.value.status == 400 and "inputs 0..3" in str(info.value)
    # With truncation on (Voyage's default) the same inputs succeed.
    standin.reset()
    array, _ = run(inputs, client, truncation=True, limits=Limits(10_000, 10**9, 1))
    assert array.shape == (4, 1024)


def test_429s_slow_the_run_down_and_it_still_completes(
    standin: StandIn, client: ClientSettings
) -> None:
    standin.config.rpm = 4
    standin.config.window = 1.0
    inputs = texts(400)
    # The engine believes the limit is far higher than the stand-in's.
    array, stats = run(inputs, client, limits=Limits(10_000, 10**9, 10, window_seconds=1.0))
    assert np.array_equal(array, expected_matrix(inputs, MODEL, 1024))
    assert stats.throttled >= 1 and standin.stats.statuses[429] == stats.throttled


def test_an_undisclosed_token_limit_is_learned_and_coarse_batches_are_split(
    standin: StandIn, client: ClientSettings
) -> None:
    inputs = texts(2000)
    standin.config.tpm = sum(count_tokens(t) for t in inputs) // 3  # three windows' worth
    standin.config.window = 1.0
    # The engine is told a far higher TPM, so it plans 8 batches of 250 inputs (an eighth of
    # the tokens: ~3 requests per window) and bursts them: Voyage refuses some.
    array, stats = run(inputs, client, limits=Limits(10_000, 10**9, 8, window_seconds=1.0))
    assert np.array_equal(array, expected_matrix(inputs, MODEL, 1024))
    assert stats.throttled >= 1 and standin.stats.statuses[429] == stats.throttled
    # What was accepted before a refusal: not above the true limit (plus the charge margin).
    # How far below depends on the machine's load (the windows are 1 s); the exact figure is
    # tested on a fake clock in test_voyage_limiter.py.
    assert stats.learned_tokens_per_minute is not None
    assert 0 < stats.learned_tokens_per_minute <= standin.config.tpm * 1.1
    # Refused batches went out again in parts of a twentieth of the learned limit.
    assert stats.requests > stats.batches + stats.throttled


def test_the_limiter_keeps_the_run_under_the_providers_limits(
    standin: StandIn, client: ClientSettings
) -> None:
    standin.config.rpm = 6
    standin.config.window = 2.0
    inputs = texts(120)
    array, stats = run(inputs, client, limits=Limits(6, 10**9, 12, window_seconds=2.0))
    assert np.array_equal(array, expected_matrix(inputs, MODEL, 1024))
    assert stats.batches == 12
    assert stats.throttled <= 1  # network jitter may cost one; pacing avoids the rest


def test_requests_in_flight_stay_within_the_concurrency(
    standin: StandIn, client: ClientSettings
) -> None:
    standin.config.latency = 0.05
    run(texts(3000), client, limits=Limits(10_000, 10**9, 3))
    assert 1 <= standin.stats.max_in_flight <= 3


def test_embed_spec_with_the_inline_store(standin: StandIn, client: ClientSettings) -> None:
    spec = DeploymentEmbeddingSpec.model_validate(
        {"model": "voyage-3.5-lite", "inputs": ["a", "b", "c"], "outputDimension": 256}
    )
    sink = InlineSink(ResultLayout.for_spec(spec))
    stats = asyncio.run(embed_spec(spec, sink, client=client))
    result = stats.result
    assert result is not None and result.inline is not None
    assert (result.model, result.count, result.dimensions, result.dtype) == (
        "voyage-3.5-lite",
        3,
        256,
        "float",
    )
    assert result.total_tokens == standin.stats.tokens
    expected = expected_matrix(["a", "b", "c"], "voyage-3.5-lite", 256)
    assert np.array_equal(result_array(result), expected)


def test_unsupported_options_fail_before_any_request(
    standin: StandIn, client: ClientSettings
) -> None:
    with pytest.raises(EmbeddingError, match="outputDimension"):
        asyncio.run(
            embed_texts(
                ["a"],
                model="voyage-law-2",
                sink=ArraySink(ResultLayout("voyage-law-2", 1, 512)),
                client=client,
                output_dimension=512,
            )
        )
    assert standin.stats.requests == 0


def test_batches_respect_the_models_token_cap(standin: StandIn, client: ClientSettings) -> None:
    # ~500 stand-in tokens each: 1M tokens in all; voyage-3-large takes 120K per request, and the
    # stand-in refuses any request over it with a 400.
    inputs = [f"{i} " + "abcd " * 400 for i in range(2000)]
    sink = ArraySink(ResultLayout("voyage-3-large", len(inputs), 1024))
    stats = asyncio.run(
        embed_texts(
            inputs,
            model="voyage-3-large",
            sink=sink,
            client=client,
            limits=Limits(10_000, 10**9, 4),
        )
    )
    assert standin.stats.statuses[400] == 0
    assert stats.batches >= 1_000_000 // 120_000
    assert np.array_equal(sink.array, expected_matrix(inputs, "voyage-3-large", 1024))
