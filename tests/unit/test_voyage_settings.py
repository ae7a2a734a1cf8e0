"""Limit precedence (resource > operator environment > catalog) and client settings."""

from __future__ import annotations

import pytest

from embedding_operator.api.catalog import get_model
from embedding_operator.api.types import RateLimits
from embedding_operator.voyage import ClientSettings, Limits


def test_catalog_defaults() -> None:
    limits = Limits.resolve(get_model("voyage-3.5-lite"), None, env={})
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (2000, 16_000_000)
    assert limits.max_concurrency == 8


def test_operator_environment_overrides_the_catalog() -> None:
    env = {"EMBEDDING_OPERATOR_TPM": "24000000", "EMBEDDING_OPERATOR_CONCURRENCY": "16"}
    limits = Limits.resolve(get_model("voyage-3.5"), None, env=env)
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (2000, 24_000_000)
    assert limits.max_concurrency == 16


def test_the_resource_overrides_everything() -> None:
    env = {"EMBEDDING_OPERATOR_RPM": "4000", "EMBEDDING_OPERATOR_TPM": "24000000"}
    spec = RateLimits(requests_per_minute=100, max_concurrency=2)
    limits = Limits.resolve(get_model("voyage-3.5"), spec, env=env)
    assert (limits.requests_per_minute, limits.tokens_per_minute) == (100, 24_000_000)
    assert limits.max_concurrency == 2


def test_bad_environment_values_are_named() -> None:
    with pytest.raises(ValueError, match="EMBEDDING_OPERATOR_RPM"):
        Limits.resolve(get_model("voyage-3.5"), None, env={"EMBEDDING_OPERATOR_RPM": "fast"})
    with pytest.raises(ValueError, match="VOYAGE_TIMEOUT_SECONDS"):
        ClientSettings.from_env({"VOYAGE_API_KEY": "k", "VOYAGE_TIMEOUT_SECONDS": "-1"})


def test_client_settings_from_env_and_the_key_stays_out_of_repr() -> None:
    settings = ClientSettings.from_env(
        {
            "VOYAGE_API_KEY": " pa-secret \n",
            "VOYAGE_BASE_URL": "http://proxy:8080/v1/",
            "VOYAGE_TIMEOUT_SECONDS": "30",
            "VOYAGE_MAX_ATTEMPTS": "3",
        }
    )
    assert settings.api_key == "pa-secret" and settings.base_url == "http://proxy:8080/v1"
    assert settings.timeout == 30 and settings.retry.max_attempts == 3
    assert "pa-secret" not in repr(settings)
    assert ClientSettings.from_env({"VOYAGE_API_KEY": "k"}).base_url is None
    with pytest.raises(ValueError, match="VOYAGE_API_KEY"):
        ClientSettings.from_env({})
