"""Prometheus metrics of the operator, served on ``/metrics``.

Voyage request counts come from the workers through ``status.stats`` (a worker is a short-lived
pod with nothing to scrape), and are counted once per run, when the operator sees it finish.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

from prometheus_client import Counter, Histogram

from embedding_operator.api.lifecycle import parse_time
from embedding_operator.api.status import ConditionType, Phase

RUNS = Counter("embedding_operator_runs_total", "Finished runs by outcome.", ["outcome", "reason"])
RUN_DURATION = Histogram(
    "embedding_operator_run_duration_seconds",
    "Wall time from Job creation to the terminal status.",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200),
)
TOKENS = Counter("embedding_operator_tokens_total", "Voyage tokens embedded.", ["model"])
VOYAGE_REQUESTS = Counter(
    "embedding_operator_voyage_requests_total", "Requests sent to Voyage.", ["model"]
)
VOYAGE_RETRIES = Counter(
    "embedding_operator_voyage_retries_total", "Voyage requests retried.", ["model"]
)
VOYAGE_RATE_LIMITED = Counter(
    "embedding_operator_voyage_rate_limited_total", "Voyage answers that were 429.", ["model"]
)


class RunMetrics:
    """Counts each finished run once: only runs that finish after the operator started.

    Remembers the last ``memory`` counted Jobs (a bounded table, oldest forgotten first): a run
    is seen finishing by the few reconciles right after it ends, long before that many other
    runs end."""

    def __init__(self, started: datetime, memory: int = 4096) -> None:
        self._started = started
        self._memory = memory
        self._counted: OrderedDict[str, None] = OrderedDict()

    def observe(self, body: dict[str, Any]) -> None:
        status = body.get("status") or {}
        phase, job, finished = (
            status.get("phase"),
            status.get("jobName"),
            status.get("completionTime"),
        )
        if (
            phase not in (Phase.COMPLETED, Phase.FAILED)
            or not job
            or not finished
            or job in self._counted
        ):
            return
        if parse_time(finished) < self._started:
            return
        self._counted[job] = None
        while len(self._counted) > self._memory:
            self._counted.popitem(last=False)
        model = body["spec"]["model"]
        reason = next(
            (
                c["reason"]
                for c in status.get("conditions") or []
                if c["type"] == ConditionType.SUCCEEDED
            ),
            "",
        )
        RUNS.labels(outcome=phase, reason=reason).inc()
        if status.get("startTime"):
            RUN_DURATION.observe(
                (parse_time(finished) - parse_time(status["startTime"])).total_seconds()
            )
        TOKENS.labels(model=model).inc((status.get("result") or {}).get("totalTokens", 0))
        stats = status.get("stats") or {}
        VOYAGE_REQUESTS.labels(model=model).inc(stats.get("requests", 0))
        VOYAGE_RETRIES.labels(model=model).inc(stats.get("retries", 0))
        VOYAGE_RATE_LIMITED.labels(model=model).inc(stats.get("rateLimited", 0))
