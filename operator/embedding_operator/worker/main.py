"""``embedding-operator worker``: one run, inside a Job's pod.

It reads its resource from the API (inputs never travel in arguments or the environment), embeds
through the Voyage layer, streams the vectors to the inline or chunked store, and writes the
outcome to the status. Its exit code tells the Job what to do next (``api.status.ExitCode``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from embedding_operator import settings as registry
from embedding_operator.api import lifecycle
from embedding_operator.api.lifecycle import Clock
from embedding_operator.api.status import ExitCode, Phase, Reason
from embedding_operator.api.types import DeploymentEmbeddingSpec, JobOptions
from embedding_operator.api.types import RunStats as RecordedStats
from embedding_operator.kube import Kube
from embedding_operator.storage import (
    ResultLayout,
    ResultTooLargeError,
    StorageSettings,
    select_sink,
)
from embedding_operator.voyage import (
    ClientSettings,
    EmbeddingError,
    Progress,
    RunStats,
    VoyageUnavailableError,
    embed_spec,
    scrub,
)
from embedding_operator.worker.status import StatusWriter, Superseded

if TYPE_CHECKING:
    from embedding_operator.storage.configmaps import ConfigMapSink

log = logging.getLogger("embedding_operator.worker")

FIELD_MANAGER = "embedding-operator-worker"
PROGRESS_INTERVAL = 5.0
"""Seconds between progress messages in the status (each is an API write)."""
RECORD_TIMEOUT = 300.0
"""How long a pod waits for the operator to record its run (see StatusWriter.await_current)."""


FINAL_WRITE_MARGIN = 15.0
"""Seconds before the Job's deadline at which a final status write stops retrying."""


def run_worker(
    namespace: str,
    name: str,
    job: str,
    kube: Kube | None = None,
    clock: Clock = lifecycle.utc_now,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """One run; the exit code for the Job. ``kube``, ``clock`` and ``sleep`` are injected by
    tests."""
    kube = kube or Kube.from_environment(FIELD_MANAGER)
    writer = StatusWriter(kube, namespace, name, job, clock=clock, sleep=sleep)
    try:
        body = writer.await_current(RECORD_TIMEOUT)
        return _run(kube, writer, job, body)
    except Superseded as e:
        log.info("nothing to do: %s", e)
        return ExitCode.OK
    except Exception as e:  # the API stayed away, or the write kept conflicting
        log.error("%s", e)
        print(e, file=sys.stderr)
        return ExitCode.TRANSIENT


def _patience(body: dict[str, Any], clock: Clock) -> float:
    """How long a final status write may keep retrying: until shortly before the Job's deadline
    (``startTime`` is when the operator created the Job)."""
    spec = DeploymentEmbeddingSpec.model_validate(body["spec"])
    deadline = (spec.job or JobOptions()).active_deadline_seconds
    started = lifecycle.parse(body.get("status")).start_time or clock()
    left = deadline - (clock() - started).total_seconds() - FINAL_WRITE_MARGIN
    return max(left, 30.0)


def _run(kube: Kube, writer: StatusWriter, job: str, body: dict[str, Any]) -> int:
    spec = DeploymentEmbeddingSpec.model_validate(body["spec"])
    try:
        registry.check_all(registry.WORKER_SETTINGS)
    except registry.SettingError as e:
        # The operator's environment, not this run, is wrong: retrying the pod cannot help.
        return _fail(
            writer, body, Reason.INVALID_SETTING, f"{e} (an operator setting: see its chart values)"
        )
    try:
        client = ClientSettings.from_env()
    except ValueError as e:
        ref = spec.secret_ref
        return _fail(
            writer, body, Reason.VOYAGE_ERROR, f"{e} (from Secret {ref.name}, key {ref.key})"
        )
    count = len(spec.inputs)
    started = f"embedding {count} inputs with {spec.model}"
    writer.write(started, phase=Phase.RUNNING, reason=Reason.EMBEDDING)
    log.info("%s (job %s)", started, job)

    layout = ResultLayout.for_spec(spec)
    settings = StorageSettings.from_env()
    try:
        sink = select_sink(layout, settings, lambda: _chunked(kube, body, job, layout, settings))
        stats = asyncio.run(
            embed_spec(spec, sink, client=client, on_progress=_progress_reporter(writer, count))
        )
    except ResultTooLargeError as e:
        return _fail(writer, body, Reason.RESULT_TOO_LARGE, str(e))
    except VoyageUnavailableError as e:
        message = scrub(str(e), [client.api_key])
        writer.write(f"attempt failed, the Job may retry: {message}")
        print(message, file=sys.stderr)  # the pod's termination message
        return ExitCode.TRANSIENT
    except EmbeddingError as e:
        return _fail(writer, body, Reason.VOYAGE_ERROR, scrub(str(e), [client.api_key]))
    code = _complete(writer, body, stats)
    _sweep_earlier_chunks(kube, body, job)
    return code


def _chunked(
    kube: Kube, body: dict[str, Any], job: str, layout: ResultLayout, settings: StorageSettings
) -> ConfigMapSink:
    from embedding_operator.storage.configmaps import ConfigMapSink

    meta = body["metadata"]
    return ConfigMapSink(
        kube,
        namespace=meta["namespace"],
        resource_name=meta["name"],
        run_id=job,
        owner=body,
        layout=layout,
        settings=settings,
    )


def _progress_reporter(writer: StatusWriter, count: int) -> Any:
    last = time.monotonic()

    def report(progress: Progress) -> None:
        nonlocal last
        if time.monotonic() - last < PROGRESS_INTERVAL or progress.done >= count:
            return
        last = time.monotonic()
        try:
            writer.write(f"embedded {progress.done} of {count} inputs")
        except Superseded:
            raise
        except Exception as e:  # progress is a courtesy; the run goes on
            log.warning("progress not written: %s", e)

    return report


def _complete(writer: StatusWriter, body: dict[str, Any], stats: RunStats) -> int:
    assert stats.result is not None
    message = (
        f"embedded {stats.result.count} inputs: {stats.total_tokens} tokens in "
        f"{stats.requests} requests ({stats.elapsed:.1f}s)"
    )
    writer.write(
        message,
        phase=Phase.COMPLETED,
        reason=Reason.COMPLETED,
        patience=_patience(body, writer.clock),
        result=stats.result,
        stats=RecordedStats(
            requests=stats.requests, retries=stats.retries, rate_limited=stats.throttled
        ),
    )
    writer.event("Normal", Reason.COMPLETED, message)
    log.info("%s", message)
    return ExitCode.OK


def _sweep_earlier_chunks(kube: Kube, body: dict[str, Any], job: str) -> None:
    """Result chunks of earlier runs (a crashed pod's, a failed run's) are no longer referenced
    once this run's result is recorded; the current run's are kept."""
    from embedding_operator.storage.configmaps import delete_previous_runs

    meta = body["metadata"]
    try:
        delete_previous_runs(kube, meta["namespace"], meta["name"], keep_run_id=job)
    except Exception as e:  # tidying up; the run itself is done
        log.warning("earlier result chunks not removed: %s", e)


def _fail(writer: StatusWriter, body: dict[str, Any], reason: Reason, message: str) -> int:
    writer.write(message, phase=Phase.FAILED, reason=reason, patience=_patience(body, writer.clock))
    writer.event("Warning", reason, message)
    log.error("%s: %s", reason, message)
    print(message, file=sys.stderr)
    return ExitCode.PERMANENT
