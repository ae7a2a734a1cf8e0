"""The reorder buffer releases batches in input order whatever order they finish in."""

from __future__ import annotations

import random

import pytest

from embedding_operator.voyage.ordering import ReorderBuffer


@pytest.mark.parametrize("seed", range(5))
def test_any_completion_order_is_released_in_order(seed: int) -> None:
    order = list(range(50))
    random.Random(seed).shuffle(order)
    buffer: ReorderBuffer[str] = ReorderBuffer()
    released: list[str] = []
    for i in order:
        released += buffer.push(i, f"batch-{i}")
        assert buffer.pending + len(released) == len(set(order[: order.index(i) + 1]))
    assert released == [f"batch-{i}" for i in range(50)]
    assert buffer.pending == 0 and buffer.next_index == 50


def test_holds_only_what_waits_for_an_earlier_batch() -> None:
    buffer: ReorderBuffer[int] = ReorderBuffer()
    assert buffer.push(2, 2) == [] and buffer.push(1, 1) == []
    assert buffer.pending == 2
    assert buffer.push(0, 0) == [0, 1, 2]
    with pytest.raises(ValueError, match="twice"):
        buffer.push(1, 1)
