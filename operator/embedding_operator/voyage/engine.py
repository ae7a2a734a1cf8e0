"""The embedding engine: inputs in, ordered compact arrays out to a result sink.

One run = plan batches (:mod:`.batching`), dispatch them in input order through the AIMD gate and
the RPM/TPM limiter (:mod:`.limiter`), retry per the project's policy (:mod:`.retry`), put
finished batches back in order (:mod:`.ordering`) and hand them to the sink one at a time, from a
worker thread (a sink may block on Kubernetes calls), as soon as all earlier batches are written.

Memory stays bounded: the engine dispatches a batch only when it is fewer than
``reorder_window`` batches ahead of the last one written, so at most that many decoded batches
(plus the requests in flight) exist at once, whatever the run's size. Vectors are never held as
Python lists.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import numpy as np
import numpy.typing as npt
import voyageai

from embedding_operator.api.catalog import OutputDtype, get_model
from embedding_operator.api.types import (
    DeploymentEmbeddingSpec,
    Result,
    dimension_error,
    dtype_error,
)
from embedding_operator.voyage.batching import Batch, plan_batches
from embedding_operator.voyage.client import EmbedCall, embed_batch
from embedding_operator.voyage.errors import (
    EmbeddingError,
    Failure,
    Outcome,
    VoyageRequestError,
    VoyageUnavailableError,
    classify,
    scrub,
)
from embedding_operator.voyage.limiter import AdaptiveConcurrency, RateLimiter, Reservation
from embedding_operator.voyage.ordering import ReorderBuffer
from embedding_operator.voyage.settings import ClientSettings, Limits

log = logging.getLogger(__name__)

TPM_SHARE_PER_REQUEST = 20
"""A batch carries at most 1/20 of the tokens per minute (and at most the model's cap): the
limiter paces requests smoothly only if each is small against the minute's budget."""


class ResultSink(Protocol):
    """Where a run's vectors go (implemented in :mod:`embedding_operator.storage`).

    The engine calls ``write`` in input order (``offset`` = rows written so far), one call at a
    time, from a worker thread; then ``finish`` once, or ``abort`` once if the run failed.
    """

    def write(self, offset: int, rows: npt.NDArray[Any]) -> None: ...

    def finish(self, total_tokens: int) -> Result: ...

    def abort(self) -> None: ...


@dataclass(frozen=True)
class Progress:
    """A snapshot passed to ``on_progress`` after each batch is written."""

    done: int
    total: int
    tokens: int
    requests: int
    elapsed: float


@dataclass
class RunStats:
    """What a finished run did."""

    count: int
    total_tokens: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    learned_tokens_per_minute: int | None = None
    """The tokens per window (a minute, unless shortened) the limiter learned from 429s: the
    account's limit was below the configured one."""
    elapsed: float = 0.0
    result: Result | None = field(default=None, repr=False)


ProgressCallback = Callable[[Progress], None]


async def embed_spec(
    spec: DeploymentEmbeddingSpec,
    sink: ResultSink,
    *,
    client: ClientSettings,
    limits: Limits | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunStats:
    """Run ``spec`` (limits resolved from spec.rateLimits, the environment and the catalog)."""
    return await embed_texts(
        spec.inputs,
        model=spec.model,
        input_type=spec.input_type,
        truncation=True if spec.truncation is None else spec.truncation,
        output_dtype=spec.dtype,
        output_dimension=spec.output_dimension,
        sink=sink,
        client=client,
        limits=limits or Limits.resolve(get_model(spec.model), spec.rate_limits),
        on_progress=on_progress,
    )


async def embed_texts(
    texts: Sequence[str],
    *,
    model: str,
    sink: ResultSink,
    client: ClientSettings,
    limits: Limits | None = None,
    input_type: str | None = None,
    truncation: bool = True,
    output_dtype: OutputDtype = "float",
    output_dimension: int | None = None,
    on_progress: ProgressCallback | None = None,
) -> RunStats:
    """Embed ``texts`` with Voyage and stream the vectors, in order, into ``sink``.

    Returns the run's statistics with ``result`` set to what ``sink.finish`` returned. Raises
    :class:`EmbeddingError` (message scrubbed of the key) when Voyage refuses a request or stays
    unavailable past the retry budget; the sink is aborted then. Errors raised by the sink itself
    propagate unchanged.
    """
    info = get_model(model)
    if output_dimension is not None and output_dimension not in info.dimensions:
        raise EmbeddingError(dimension_error(model, output_dimension))
    if output_dtype not in info.dtypes:
        raise EmbeddingError(dtype_error(model, output_dtype))
    if not texts:
        raise EmbeddingError("no inputs to embed")
    limits = limits or Limits.resolve(info)
    call = EmbedCall(
        model=model,
        input_type=input_type,
        truncation=truncation,
        output_dtype=output_dtype,
        output_dimension=output_dimension,
        dimension=info.dimension_for(output_dimension),
    )
    run = _Run(texts, call, sink, client, limits, on_progress)
    try:
        await run.execute()
        run.stats.result = await asyncio.to_thread(sink.finish, run.stats.total_tokens)
    except BaseException:
        await asyncio.to_thread(_abort_quietly, sink)
        raise
    run.stats.elapsed = time.monotonic() - run.started
    return run.stats


def _abort_quietly(sink: ResultSink) -> None:
    try:
        sink.abort()
    except Exception:
        log.exception("cleaning up the result sink after a failed run failed")


class _Run:
    """The state of one run (see the module docstring)."""

    def __init__(
        self,
        texts: Sequence[str],
        call: EmbedCall,
        sink: ResultSink,
        client: ClientSettings,
        limits: Limits,
        on_progress: ProgressCallback | None,
    ) -> None:
        self.texts, self.call, self.sink, self.client = texts, call, sink, client
        self.on_progress = on_progress
        info = get_model(call.model)
        self.limiter = RateLimiter(
            limits.requests_per_minute,
            limits.tokens_per_minute,
            window=limits.window_seconds,
            learn=limits.learn_from_throttling,
        )
        self.gate = AdaptiveConcurrency(limits.max_concurrency)
        hard_cap = min(info.max_tokens_per_request, limits.tokens_per_minute)
        self.batches = plan_batches(
            texts,
            max_tokens=min(hard_cap, max(1, limits.tokens_per_minute // TPM_SHARE_PER_REQUEST)),
            hard_max_tokens=hard_cap,
            target_batches=limits.max_concurrency,
        )
        self.reorder_window = max(2 * limits.max_concurrency, 4)
        self.reorder: ReorderBuffer[tuple[Batch, npt.NDArray[Any]]] = ReorderBuffer()
        self.ready: asyncio.Queue[tuple[Batch, npt.NDArray[Any]]] = asyncio.Queue()
        self.written = 0  # batches handed to the sink
        self.rows_written = 0
        self.progressed = asyncio.Condition()
        self.stats = RunStats(count=len(texts), batches=len(self.batches))
        self.aborted = False
        self.started = time.monotonic()

    async def execute(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.gate.maximum)
        async with aiohttp.ClientSession(connector=connector) as session:
            token = voyageai.aiosession.set(session)
            try:
                async with asyncio.TaskGroup() as group:
                    group.create_task(self._write_all())
                    for batch in self.batches:
                        await self._wait_for_room(batch.index)
                        group.create_task(self._embed(batch))
            except BaseExceptionGroup as group_error:
                raise _first_error(group_error) from None
            finally:
                voyageai.aiosession.reset(token)

    async def _wait_for_room(self, index: int) -> None:
        """Block dispatch while batch ``index`` is a full window ahead of the sink."""

        def room() -> bool:
            return index < self.written + self.reorder_window

        async with self.progressed:
            await self.progressed.wait_for(room)

    async def _write_all(self) -> None:
        while self.written < len(self.batches):
            batch, rows = await self.ready.get()
            await asyncio.to_thread(self.sink.write, self.rows_written, rows)
            self.rows_written += batch.size
            async with self.progressed:
                self.written += 1
                self.progressed.notify_all()
            if self.on_progress is not None:
                self.on_progress(
                    Progress(
                        done=self.rows_written,
                        total=len(self.texts),
                        tokens=self.stats.total_tokens,
                        requests=self.stats.requests,
                        elapsed=time.monotonic() - self.started,
                    )
                )

    async def _embed(self, batch: Batch) -> None:
        rows, tokens = await self._fetch(batch)
        self.stats.total_tokens += tokens
        for item in self.reorder.push(batch.index, (batch, rows)):
            self.ready.put_nowait(item)

    async def _fetch(self, batch: Batch) -> tuple[npt.NDArray[Any], int]:
        """The rows of ``batch``, retried per the policy; split into smaller requests when a
        limit learned from a 429 makes it too coarse to pace (see :meth:`_too_coarse`)."""
        attempts = 0
        first = time.monotonic()
        split = False
        try:
            async for attempt in self.client.retry.retrying():
                with attempt:
                    if attempts and self._too_coarse(batch):
                        split = True  # after the retry's wait: the parts go out paced
                    else:
                        attempts += 1
                        rows, tokens = await self._attempt(batch, attempts)
        except Exception as exc:
            raise self._give_up(batch, classify(exc), attempts, time.monotonic() - first) from None
        if not split:
            return rows, tokens
        parts = await asyncio.gather(*(self._fetch(part) for part in self._split(batch)))
        return np.concatenate([rows for rows, _ in parts]), sum(tokens for _, tokens in parts)

    def _too_coarse(self, batch: Batch) -> bool:
        """Batches are planned for the configured TPM; against a lower limit learned from 429s a
        batch may be half a window's budget, and whole requests fit the window only coarsely."""
        learned = self.limiter.learned_tpm
        share = (learned or 0) // TPM_SHARE_PER_REQUEST
        return (
            bool(learned) and batch.size > 1 and self.limiter.charge(batch.estimated_tokens) > share
        )

    def _split(self, batch: Batch) -> list[Batch]:
        share = max(1, self.limiter.tpm // TPM_SHARE_PER_REQUEST)
        parts = plan_batches(
            self.texts[batch.start : batch.end],
            max_tokens=share,
            hard_max_tokens=batch.estimated_tokens,
        )
        return [
            Batch(batch.index, batch.start + p.start, batch.start + p.end, p.estimated_tokens)
            for p in parts
        ]

    async def _attempt(self, batch: Batch, attempt: int) -> tuple[npt.NDArray[Any], int]:
        async with self.gate:
            if self.aborted:  # another batch failed for good: send nothing more
                raise asyncio.CancelledError
            reservation = await self.limiter.acquire(batch.estimated_tokens)
            self.stats.requests += 1
            if attempt > 1:
                self.stats.retries += 1
            try:
                rows, tokens = await embed_batch(
                    self.texts[batch.start : batch.end],
                    self.call,
                    api_key=self.client.api_key,
                    base_url=self.client.base_url,
                    timeout=self.client.timeout,
                )
            except Exception as exc:
                self._note_failure(batch, classify(exc), attempt, reservation)
                raise
            self.limiter.settle(reservation, tokens, batch.estimated_tokens)
            self.gate.on_success()
            return rows, tokens

    def _note_failure(
        self, batch: Batch, failure: Failure, attempt: int, reservation: Reservation
    ) -> None:
        if failure.outcome is Outcome.FATAL:
            self.aborted = True
        if failure.outcome is Outcome.THROTTLED:
            self.stats.throttled += 1
            pause = failure.retry_after or self.client.retry.initial_backoff
            self.limiter.pause_until(time.monotonic() + pause)
            learned = self.limiter.throttled(reservation)
            if learned is None:
                self.gate.on_throttle()  # no limit to learn: fewer requests in flight
            elif learned != self.stats.learned_tokens_per_minute:
                # The limiter paces at the learned limit; halving the gate too would only add
                # each request's latency to the pace.
                self.stats.learned_tokens_per_minute = learned
                log.info(
                    "Voyage throttled at about %d tokens per window of %gs: pacing just under "
                    "it (spec.rateLimits.tokensPerMinute states the account's limit)",
                    learned,
                    self.limiter.provider_window,
                )
        if failure.outcome is not Outcome.FATAL:
            log.warning(
                "%s (attempt %d of at most %d)",
                self._describe(batch, failure),
                attempt,
                self.client.retry.max_attempts,
            )

    def _describe(self, batch: Batch, failure: Failure) -> str:
        status = f"HTTP {failure.status}" if failure.status else "no response"
        return scrub(
            f"inputs {batch.start}..{batch.end - 1}: {status}: {failure.message}",
            [self.client.api_key],
        )

    def _give_up(
        self, batch: Batch, failure: Failure, attempts: int, elapsed: float
    ) -> EmbeddingError:
        if failure.outcome is Outcome.FATAL and failure.status is None:
            # Not an answer from Voyage (e.g. a bug or a local error): say so, plainly.
            return EmbeddingError(f"embedding failed for {self._describe(batch, failure)}")
        if failure.outcome is Outcome.FATAL:
            note = (
                f" (indexes in Voyage's message count from input {batch.start})"
                if batch.start and "index" in failure.message
                else ""
            )
            return VoyageRequestError(
                f"Voyage rejected the request for {self._describe(batch, failure)}{note}",
                failure.status,
            )
        return VoyageUnavailableError(
            f"Voyage still failing after {attempts} attempts over {elapsed:.0f} s; "
            f"last error for {self._describe(batch, failure)}"
        )


def _first_error(group: BaseExceptionGroup[Any]) -> BaseException:
    """The first real error of a TaskGroup failure (not the cancellations it caused)."""
    exceptions: tuple[BaseException, ...] = group.exceptions
    for exc in exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group
