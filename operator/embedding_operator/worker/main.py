"""``embedding-operator worker``: one run, inside a Job's pod.

It reads its resource from the API (inputs never travel in arguments or the environment), embeds
through the Voyage layer, streams the vectors to the inline or chunked store, and writes the
outcome to the status. Exit codes tell the Job what to do next:

- 0: done (Completed written, or the run is no longer current: nothing to do);
- 1: a transient failure outlasted the worker's retries: the Job may retry the pod;
- 3: retrying cannot help (bad key, invalid input, result too large): Failed is written and the
  Job's podFailurePolicy fails the Job at once.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from embedding_operator.api import status as st
from embedding_operator.api.types import DeploymentEmbeddingSpec
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

PERMANENT = 3
TRANSIENT = 1
PROGRESS_INTERVAL = 5.0
"""Seconds between progress messages in the status (each is an API write)."""
RECORD_TIMEOUT = 300.0
"""How long a pod waits for the operator to record its run (see StatusWriter.await_current)."""


def run_worker(namespace: str, name: str, job: str) -> int:
    kube = Kube.from_environment()
    writer = StatusWriter(kube, namespace, name, job)
    try:
        body = writer.await_current(RECORD_TIMEOUT)
        return _run(kube, writer, job, body)
    except Superseded as e:
        log.info("nothing to do: %s", e)
        return 0
    except TimeoutError as e:
        log.error("%s", e)
        print(e, file=sys.stderr)
        return TRANSIENT


def _run(kube: Kube, writer: StatusWriter, job: str, body: dict[str, Any]) -> int:
    spec = DeploymentEmbeddingSpec.model_validate(body["spec"])
    try:
        client = ClientSettings.from_env()
    except ValueError as e:
        ref = spec.secret_ref
        return _fail(writer, st.VOYAGE_ERROR, f"{e} (from Secret {ref.name}, key {ref.key})")
    count = len(spec.inputs)
    started = f"embedding {count} inputs with {spec.model}"
    writer.write({"message": started}, phase="Running", reason=st.EMBEDDING)
    log.info("%s (job %s)", started, job)

    layout = ResultLayout.for_spec(spec)
    settings = StorageSettings.from_env()
    try:
        sink = select_sink(layout, settings, lambda: _chunked(kube, body, job, layout, settings))
        stats = asyncio.run(
            embed_spec(spec, sink, client=client, on_progress=_progress_reporter(writer, count))
        )
    except ResultTooLargeError as e:
        return _fail(writer, st.RESULT_TOO_LARGE, str(e))
    except VoyageUnavailableError as e:
        message = scrub(str(e), [client.api_key])
        writer.write({"message": f"attempt failed, the Job may retry: {message}"})
        print(message, file=sys.stderr)  # the pod's termination message
        return TRANSIENT
    except EmbeddingError as e:
        return _fail(writer, st.VOYAGE_ERROR, scrub(str(e), [client.api_key]))
    code = _complete(writer, stats)
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
            writer.write({"message": f"embedded {progress.done} of {count} inputs"})
        except Superseded:
            raise
        except Exception as e:  # progress is a courtesy; the run goes on
            log.warning("progress not written: %s", e)

    return report


def _complete(writer: StatusWriter, stats: RunStats) -> int:
    assert stats.result is not None
    message = (
        f"embedded {stats.result.count} inputs: {stats.total_tokens} tokens in "
        f"{stats.requests} requests ({stats.elapsed:.1f}s)"
    )
    writer.write(
        {
            "message": message,
            "completionTime": st.now(),
            "result": stats.result.to_dict(),
            "stats": {
                "requests": stats.requests,
                "retries": stats.retries,
                "rateLimited": stats.throttled,
            },
        },
        phase="Completed",
        reason=st.COMPLETED,
    )
    writer.event("Normal", st.COMPLETED, message)
    log.info("%s", message)
    return 0


def _sweep_earlier_chunks(kube: Kube, body: dict[str, Any], job: str) -> None:
    """Result chunks of earlier runs (a crashed pod's, a failed run's) are no longer referenced
    once this run's result is recorded; the current run's are kept."""
    from embedding_operator.storage.configmaps import delete_previous_runs

    meta = body["metadata"]
    try:
        delete_previous_runs(kube, meta["namespace"], meta["name"], keep_run_id=job)
    except Exception as e:  # tidying up; the run itself is done
        log.warning("earlier result chunks not removed: %s", e)


def _fail(writer: StatusWriter, reason: str, message: str) -> int:
    writer.write({"message": message, "completionTime": st.now()}, phase="Failed", reason=reason)
    writer.event("Warning", reason, message)
    log.error("%s: %s", reason, message)
    print(message, file=sys.stderr)
    return PERMANENT
