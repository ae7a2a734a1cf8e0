"""A de-duplicating work queue, as controller-runtime's (client-go's workqueue), on asyncio.

Events only *add* a resource's key; a bounded set of workers reconcile keys. A key is queued at
most once however many events arrive (a burst of Job, pod and resource events for one run is one
reconcile), never reconciled by two workers at once (an event during a reconcile marks it dirty:
one more reconcile follows), and a failed reconcile comes back after its backoff (``add_after``;
a new event brings it back sooner). The reconcile itself is blocking (the Kubernetes boundary is
synchronous), so it runs on a thread pool of its own, sized here rather than borrowing asyncio's
default executor (min(32, CPUs + 4) threads: 6 on a 2-core machine). State is bounded by the keys
in flight: nothing is kept for a key once it is reconciled and not waiting out a backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

Key = tuple[str, str]


class WorkQueue:
    def __init__(self, reconcile: Callable[[Key], float | None], workers: int) -> None:
        """``reconcile(key)`` converges one resource and returns the seconds after which to
        retry it when it failed, else None."""
        self._reconcile = reconcile
        self._workers = workers
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="reconcile")
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._dirty: set[Key] = set()
        self._processing: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def add(self, key: Key) -> None:
        """Reconcile ``key`` soon (once, however often it is added before a worker takes it)."""
        timer = self._timers.pop(key, None)
        if timer:
            timer.cancel()  # sooner than its backoff: this supersedes it
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:  # else it is queued again when that reconcile ends
            self._queue.put_nowait(key)

    def add_after(self, key: Key, delay: float) -> None:
        if key in self._dirty or key in self._timers:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)

        self._timers[key] = loop.call_later(delay, fire)

    def waiting(self, key: Key) -> bool:
        """Whether ``key`` is waiting out a backoff (its timer will bring it back)."""
        return key in self._timers

    def __len__(self) -> int:
        """Keys in flight: queued, being reconciled or waiting out a backoff."""
        return len(self._dirty | self._processing | set(self._timers))

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            key = await self._queue.get()
            self._dirty.discard(key)
            self._processing.add(key)
            delay: float | None = None
            try:
                delay = await loop.run_in_executor(self._executor, self._reconcile, key)
            except Exception:  # reconcile returns its failures; this is a bug, keep serving
                log.exception("reconcile of %s/%s raised", *key)
            finally:
                self._processing.discard(key)
                if key in self._dirty:
                    self._queue.put_nowait(key)
            if delay is not None:
                self.add_after(key, delay)
