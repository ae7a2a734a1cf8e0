"""Fixtures of the unit tests: the Voyage stand-in on 127.0.0.1 (one per module, reset per
test) and fast engine settings (tiny backoff) for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from embedding_operator.voyage import ClientSettings, RetryPolicy
from tests.voyage_standin import StandIn, StandInConfig

API_KEY = "pa-test-SECRET-key-0123456789"


@pytest.fixture(scope="module")
def _standin_server() -> Iterator[StandIn]:
    with StandIn(StandInConfig(api_key=API_KEY)) as server:
        yield server


@pytest.fixture
def standin(_standin_server: StandIn) -> StandIn:
    """A running stand-in with default behaviour and zeroed counters; tests may edit .config."""
    _standin_server.config = StandInConfig(api_key=API_KEY)
    _standin_server.reset()
    return _standin_server


@pytest.fixture
def client(standin: StandIn) -> ClientSettings:
    """Engine settings for the stand-in: near-zero backoff; a timeout long enough that a loaded
    machine never turns a normal answer into a retry (tests of timeouts set their own)."""
    return ClientSettings(
        api_key=API_KEY,
        base_url=standin.base_url,
        timeout=30.0,
        retry=RetryPolicy(max_attempts=8, max_elapsed=60, initial_backoff=0.01, max_backoff=0.05),
    )
