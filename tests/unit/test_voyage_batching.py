"""Batching: request caps, order, the token estimate, inputs that cannot fit."""

from __future__ import annotations

import itertools

import pytest

from embedding_operator.voyage import InputTooLargeError, estimate_tokens, plan_batches
from tests.voyage_standin import count_tokens


def _covered(batches, n):  # type: ignore[no-untyped-def]
    assert [b.index for b in batches] == list(range(len(batches)))
    assert batches[0].start == 0 and batches[-1].end == n
    assert all(a.end == b.start for a, b in itertools.pairwise(batches))


def test_at_most_1000_inputs_per_request() -> None:
    batches = plan_batches(["a"] * 2500, max_tokens=10**6)
    assert [b.size for b in batches] == [1000, 1000, 500]
    _covered(batches, 2500)


def test_token_cap_splits_batches() -> None:
    texts = ["x" * 300] * 10  # 100 estimated tokens each
    batches = plan_batches(texts, max_tokens=350)
    assert [b.size for b in batches] == [3, 3, 3, 1]
    assert all(b.estimated_tokens <= 350 for b in batches)
    _covered(batches, 10)


def test_small_runs_spread_over_the_concurrency() -> None:
    batches = plan_batches(["a"] * 2000, max_tokens=10**6, target_batches=8)
    assert len(batches) == 8 and {b.size for b in batches} == {250}


def test_an_input_that_cannot_fit_names_its_index() -> None:
    texts = ["short", "y" * 3000, "z" * 30]
    with pytest.raises(InputTooLargeError, match="input 1 is too long") as info:
        plan_batches(texts, max_tokens=999)
    assert info.value.index == 1


def test_estimate_is_conservative_against_the_standin_tokenizer() -> None:
    for text in ["a", "hello world", "日本語のテキスト", "x" * 1001, "🙂" * 7, "0123456789" * 9]:
        assert estimate_tokens(text) >= count_tokens(text)
    assert estimate_tokens("abc") == 1 and estimate_tokens("abcd") == 2
    assert estimate_tokens("日") == 1  # 3 bytes


def test_empty_input_list_gives_no_batches() -> None:
    assert plan_batches([], max_tokens=10) == []


def test_an_input_over_the_soft_cap_travels_alone() -> None:
    texts = ["a" * 30, "b" * 300, "c" * 30]  # 10, 100, 10 estimated tokens
    batches = plan_batches(texts, max_tokens=50, hard_max_tokens=200)
    assert [(b.start, b.end) for b in batches] == [(0, 1), (1, 2), (2, 3)]
