"""A Voyage-compatible HTTP stand-in for the tests, demos and benchmarks (see server.py).

In-process: ``with StandIn(StandInConfig(api_key="k")) as s: ... s.base_url ... s.stats``.
Command line: ``python -m tests.voyage_standin --port 8089 --rpm 600 --tpm 1000000``.
"""

from tests.voyage_standin.server import FAULTS, StandIn, StandInConfig, StandInStats
from tests.voyage_standin.vectors import (
    count_tokens,
    expected_embedding,
    expected_matrix,
    float_embedding,
    quantize,
)

__all__ = [
    "FAULTS",
    "StandIn",
    "StandInConfig",
    "StandInStats",
    "count_tokens",
    "expected_embedding",
    "expected_matrix",
    "float_embedding",
    "quantize",
]
