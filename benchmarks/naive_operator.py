"""The baseline of ``benchmarks/operator_scale.py``: the obvious kopf operator for the same job.

On the run annotation it creates the very Job the real operator would (``build_job``, first
attempt) and records the run in the status as the worker expects (phase Running, ``jobName``),
so the worker pods run to the end the same way: two API requests per run. Nothing else: no
status before a run, no Events, no pod or Job watch, no failure handling, no resync.

With ``NAIVE_STATUS=operator`` it writes this operator's whole status instead of the four fields
(``reconcile.plan``'s, conditions and all): the control of ``operator_scale --status-baseline``,
which tells what the status costs kube-apiserver from what the operator costs.

    kopf run --standalone --namespace NS -m benchmarks.naive_operator
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import kopf

from embedding_operator.api import names
from embedding_operator.controller.objects import build_job
from embedding_operator.controller.reconcile import plan
from embedding_operator.controller.settings import Settings
from embedding_operator.kube import Kube, RetryPolicy, group_path, resource_path

# kopf never retries an event handler: each call keeps retrying on its own while the API server
# is overloaded (a burst on a busy machine), or the run would be lost
kube = Kube.from_environment("naive-operator", RetryPolicy(timeout=30.0, budget=600.0))
settings = Settings.from_env()
handled: set[tuple[str, str]] = set()  # (uid, run request): kopf reports every later event too
FULL_STATUS = os.environ.get("NAIVE_STATUS") == "operator"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.posting.enabled = False


@kopf.on.event(names.GROUP, names.VERSION, names.PLURAL)
def run_requested(body: kopf.Body, meta: kopf.Meta, status: kopf.Status, **_: Any) -> None:
    run = meta.annotations.get(names.RUN_ANNOTATION)
    if not run or (meta.uid, run) in handled or status.get("lastHandledRunRequest") == run:
        return
    obj = {"metadata": dict(meta), "spec": dict(body.spec)}
    if FULL_STATUS:  # the same Job, and the status this operator writes with it
        todo = plan({**obj, "status": dict(status)}, None, [], datetime.now(UTC), settings)
        if todo.create_job is None:
            return
        job, written = todo.create_job, todo.patch
    else:
        job = build_job(obj, run, 1, settings)
        written = {
            "phase": "Running",
            "jobName": job["metadata"]["name"],
            "runCount": 1,
            "lastHandledRunRequest": run,
        }
    kube.create(group_path("batch/v1", meta.namespace or "", "jobs"), job)  # exists: None
    kube.patch(resource_path(meta.namespace or "", meta.name or "", "status"), {"status": written})
    handled.add((meta.uid or "", run))
