"""Put out-of-order batch results back into input order, holding as little as possible.

Requests finish in any order. Each finished batch waits here only until every batch before it
has finished; then the contiguous run is released, in order, to the result sink. The engine
bounds how far ahead of the oldest unfinished batch it dispatches, which bounds this buffer.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class ReorderBuffer(Generic[T]):
    """Accepts ``(sequence number, item)`` in any order; releases items in sequence order."""

    def __init__(self) -> None:
        self._pending: dict[int, T] = {}
        self._next = 0

    @property
    def next_index(self) -> int:
        """The sequence number the buffer waits for (everything before it was released)."""
        return self._next

    @property
    def pending(self) -> int:
        return len(self._pending)

    def push(self, index: int, item: T) -> list[T]:
        """Store ``item``; return the items now releasable, in order (possibly none)."""
        if index < self._next or index in self._pending:
            raise ValueError(f"batch {index} delivered twice")
        self._pending[index] = item
        released: list[T] = []
        while self._next in self._pending:
            released.append(self._pending.pop(self._next))
            self._next += 1
        return released
