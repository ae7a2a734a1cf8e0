"""Freed heap memory goes back to the system: the real C library, the process's own RSS."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from embedding_operator import memory

# In a fresh interpreter, so nothing else in the test process shares its heap: 2,000 blocks of
# 32 KiB (malloc'ed by CPython, under glibc's mmap threshold: they live in the heap), nine in ten
# freed. The kept ones pin the heap's top, so glibc keeps the free pages between them until
# malloc_trim returns them.
PROGRAM = textwrap.dedent(
    """
    import os
    from embedding_operator import memory

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    blocks = [bytearray(32 * 1024) for _ in range(2000)]
    kept = blocks[::10]
    del blocks
    before = rss()
    assert memory.trim()
    print(before, rss(), len(kept))
    """
)


def test_trim_gives_freed_heap_pages_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    before, after, _ = map(int, out.split())
    # ~56 MiB were freed; without the trim glibc keeps nearly all of it
    assert before - after > 40 * 1024 * 1024, (before, after)


def test_the_trimming_thread_trims_again_and_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = threading.Semaphore(0)
    monkeypatch.setattr(memory, "trim", calls.release)
    stop = threading.Event()
    thread = memory.give_back(interval=0.001, stop=stop)
    assert thread is not None and thread.daemon
    assert all(calls.acquire(timeout=60) for _ in range(3))
    stop.set()
    thread.join(60)
    assert not thread.is_alive()
