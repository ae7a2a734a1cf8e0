"""Memory a burst used goes back to the system when the burst is over.

CPython hands every object over 512 bytes (response bodies, the base64 of a result, a list of
items) to the C library's ``malloc``, and glibc keeps what is freed for reuse instead of returning
it: measured with 1,000 finished resources, the operator's RSS rose with every burst of watch
events and stayed at its peak (docs/performance.md, "Memory after a burst"). ``malloc_trim(0)``
returns every whole free page of every arena; a daemon thread calls it every ``TRIM_SECONDS``
(a few milliseconds of CPU each time, so idle cost stays negligible). And glibc gives each thread
that meets contention an arena of its own (up to 8 per core), each keeping its own free memory:
with the reconcile pool's 16 threads, ``M_ARENA_MAX`` = 2 (as ``MALLOC_ARENA_MAX=2`` would, but
however the process is started) lowered the peak and what stayed after a burst. On a C library
without these (musl, macOS) nothing happens.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)

TRIM_SECONDS = 30.0
ARENAS = 2
_M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def trim() -> bool:
    """Give the free heap pages back to the system; False where the C library cannot."""
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True


def give_back(
    interval: float = TRIM_SECONDS, stop: threading.Event | None = None
) -> threading.Thread | None:
    """At most ``ARENAS`` malloc arenas from now on, and a daemon thread that calls :func:`trim`
    every ``interval`` seconds until ``stop`` is set (None: the C library cannot)."""
    if _LIBC is None:
        log.info("malloc_trim is not available; freed memory stays with the process")
        return None
    _LIBC.mallopt(_M_ARENA_MAX, ARENAS)
    stopped = stop or threading.Event()

    def loop() -> None:
        while not stopped.wait(interval):
            trim()

    thread = threading.Thread(target=loop, name="malloc-trim", daemon=True)
    thread.start()
    return thread
