"""Prometheus metrics of the REST API: requests by route and code, and their latency.

Routes are the path templates (``/name/{name}``), never raw paths, so the label set stays small.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "embedding_operator_api_requests_total",
    "REST API requests by method, route and status code.",
    ["method", "route", "code"],
)
LATENCY = Histogram(
    "embedding_operator_api_request_duration_seconds",
    "REST API request latency by method and route.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
