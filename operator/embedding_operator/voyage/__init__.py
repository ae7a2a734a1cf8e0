"""The Voyage layer: batching, pacing, retries and the engine that streams vectors to a sink.

It depends on :mod:`embedding_operator.api` only (never on Kubernetes), so the worker, the
``embed`` command and the benchmarks share it. Entry points: :func:`embed_spec` for a
DeploymentEmbedding spec, :func:`embed_texts` for a plain list of texts.
"""

from embedding_operator.voyage.batching import BYTES_PER_TOKEN, Batch, estimate_tokens, plan_batches
from embedding_operator.voyage.engine import (
    Progress,
    ProgressCallback,
    ResultSink,
    RunStats,
    embed_spec,
    embed_texts,
)
from embedding_operator.voyage.errors import (
    EmbeddingError,
    InputTooLargeError,
    VoyageRequestError,
    VoyageUnavailableError,
    scrub,
)
from embedding_operator.voyage.retry import RetryPolicy
from embedding_operator.voyage.settings import ClientSettings, Limits

__all__ = [
    "BYTES_PER_TOKEN",
    "Batch",
    "ClientSettings",
    "EmbeddingError",
    "InputTooLargeError",
    "Limits",
    "Progress",
    "ProgressCallback",
    "ResultSink",
    "RetryPolicy",
    "RunStats",
    "VoyageRequestError",
    "VoyageUnavailableError",
    "embed_spec",
    "embed_texts",
    "estimate_tokens",
    "plan_batches",
    "scrub",
]
