"""The settings registry: its parser, and the chart, the docs and the worker held to it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedding_operator import settings as registry
from embedding_operator.api.catalog import get_model
from embedding_operator.api.status import ExitCode, Reason
from embedding_operator.controller.settings import Settings
from embedding_operator.storage import StorageSettings
from embedding_operator.voyage import ClientSettings, Limits
from embedding_operator.worker.main import run_worker
from tests.api_cases import ROOT
from tests.unit.conftest import API_KEY
from tests.unit.test_chart import CHART, helm, operator_container  # noqa: F401 (a fixture)
from tests.unit.test_glue import condition, running_api, status
from tests.voyage_standin import StandIn

TPM = registry.REGISTRY["EMBEDDING_OPERATOR_TPM"]
CHUNK = registry.REGISTRY["EMBEDDING_OPERATOR_CHUNK_BYTES"]


@pytest.mark.parametrize(
    ("text", "value"),
    [("16000000", 16_000_000), ("1.6e+07", 16_000_000), (" 2e3 ", 2000), ("", None)],
)
def test_integers_accept_whole_valued_floats(text: str, value: int | None) -> None:
    # Helm renders whole numbers >= 1,000,000 from a values file as 1.6e+07.
    assert registry.parse(TPM, text) == value


@pytest.mark.parametrize(
    ("setting", "text", "message"),
    [
        (TPM, "1.5", "EMBEDDING_OPERATOR_TPM must be a whole number, not '1.5'"),
        (TPM, "lots", "EMBEDDING_OPERATOR_TPM must be a whole number, not 'lots'"),
        (TPM, "inf", "EMBEDDING_OPERATOR_TPM must be a whole number, not 'inf'"),
        (TPM, "0", "EMBEDDING_OPERATOR_TPM must be at least 1, not '0'"),
        (CHUNK, "2e6", "EMBEDDING_OPERATOR_CHUNK_BYTES must be at least 1 and at most 983040"),
        (
            registry.REGISTRY["EMBEDDING_OPERATOR_IMAGE_PULL_POLICY"],
            "Sometimes",
            "must be one of Always, IfNotPresent, Never, not 'Sometimes'",
        ),
        (
            registry.REGISTRY["EMBEDDING_OPERATOR_RESYNC_SECONDS"],
            "soon",
            "EMBEDDING_OPERATOR_RESYNC_SECONDS must be a number, not 'soon'",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting(
    setting: registry.Setting, text: str, message: str
) -> None:
    with pytest.raises(registry.SettingError, match=re.escape(message)):
        registry.parse(setting, text)


def test_the_three_parsers_read_the_registry() -> None:
    env = {
        "EMBEDDING_OPERATOR_TPM": "1.6e+07",
        "EMBEDDING_OPERATOR_MAX_RESULT_BYTES": "1.00663296e+08",
        "VOYAGE_MAX_ATTEMPTS": "3",
        "EMBEDDING_OPERATOR_RESYNC_SECONDS": "45",
        "VOYAGE_API_KEY": "k",
    }
    assert Limits.resolve(get_model("voyage-3.5"), env=env).tokens_per_minute == 16_000_000
    assert StorageSettings.from_env(env).max_result_bytes == 96 * 1024 * 1024
    assert ClientSettings.from_env(env).retry.max_attempts == 3
    operator = Settings.from_env(env)
    assert operator.resync_seconds == 45.0
    assert set(operator.worker_env) == {
        "EMBEDDING_OPERATOR_TPM",
        "EMBEDDING_OPERATOR_MAX_RESULT_BYTES",
        "VOYAGE_MAX_ATTEMPTS",
    }
    # Defaults come from the registry too.
    pod_start = registry.REGISTRY["EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS"]
    assert Settings().pod_start_timeout_seconds == pod_start.default
    assert StorageSettings().chunk_bytes == CHUNK.default


def test_the_operator_refuses_a_bad_worker_setting_at_start() -> None:
    with pytest.raises(registry.SettingError, match="EMBEDDING_OPERATOR_CHUNK_BYTES"):
        Settings.from_env({"EMBEDDING_OPERATOR_CHUNK_BYTES": "big"})


def worker_with(monkeypatch: pytest.MonkeyPatch, standin: StandIn, **env: str) -> tuple[Any, int]:
    """A worker run of one input with ``env`` set; the API and the exit code."""
    monkeypatch.setenv("VOYAGE_API_KEY", API_KEY)
    monkeypatch.setenv("VOYAGE_BASE_URL", standin.base_url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    api, job = running_api(["alpha"])
    return api, run_worker("ns", "demo", job, kube=api.kube())


def test_a_bad_setting_fails_the_worker_at_once_and_for_good(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, code = worker_with(monkeypatch, standin, EMBEDDING_OPERATOR_INLINE_MAX_BYTES="256 KiB")
    assert code == ExitCode.PERMANENT
    assert status(api)["phase"] == "Failed"
    assert condition(api, "Succeeded")["reason"] == Reason.INVALID_SETTING
    assert "EMBEDDING_OPERATOR_INLINE_MAX_BYTES must be a whole number" in status(api)["message"]
    assert standin.stats.requests == 0  # nothing paid for


def test_whole_numbers_helm_writes_as_floats_run(
    standin: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, code = worker_with(
        monkeypatch,
        standin,
        EMBEDDING_OPERATOR_TPM="1.6e+07",
        EMBEDDING_OPERATOR_MAX_RESULT_BYTES="1.00663296e+08",
    )
    assert code == ExitCode.OK
    assert status(api)["phase"] == "Completed"


# -- the chart and the docs agree with the registry ---------------------------------------------

SAMPLES: dict[str, Any] = {
    "EMBEDDING_OPERATOR_LOG_FORMAT": "json",
    "EMBEDDING_OPERATOR_IMAGE_PULL_POLICY": "Always",
    "EMBEDDING_OPERATOR_WORKER_SERVICE_ACCOUNT": "workers",
    "EMBEDDING_OPERATOR_RESYNC_SECONDS": 45,
    "EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS": 300,
    "EMBEDDING_OPERATOR_LEASE_DURATION_SECONDS": 30,
    "EMBEDDING_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS": 20,
    "EMBEDDING_OPERATOR_LEASE_RETRY_PERIOD_SECONDS": 0.5,
    "VOYAGE_BASE_URL": "https://proxy.example/v1",
    "VOYAGE_TIMEOUT_SECONDS": 90,
    "VOYAGE_MAX_ATTEMPTS": 5,
    "EMBEDDING_OPERATOR_RPM": 4000,
    "EMBEDDING_OPERATOR_TPM": 16_000_000,  # rendered as 1.6e+07
    "EMBEDDING_OPERATOR_CONCURRENCY": 16,
    "EMBEDDING_OPERATOR_INLINE_MAX_BYTES": 100_000,
    "EMBEDDING_OPERATOR_CHUNK_BYTES": 500_000,
    "EMBEDDING_OPERATOR_MAX_RESULT_BYTES": 200_000_000,  # rendered as 2e+08
}
"""A value for every setting the chart sets from one value of its own."""
COMPOSED = {
    "EMBEDDING_OPERATOR_IMAGE": None,
    "EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE": None,
    "EMBEDDING_OPERATOR_LEASE_NAMESPACE": None,
    "EMBEDDING_OPERATOR_LEASE_NAME": None,
    "EMBEDDING_OPERATOR_WORKER_EXTRA_ENV": {"HTTPS_PROXY": "http://proxy:3128"},
    "EMBEDDING_OPERATOR_WORKER_POD_SPEC": {"nodeSelector": {"disk": "ssd"}},
}
"""Settings the chart composes (from several values, or as JSON), with the JSON expected."""


def test_the_charts_env_is_the_registry(helm: Path, tmp_path: Path) -> None:  # noqa: F811
    values: dict[str, Any] = {
        "worker": {
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "nodeSelector": {"disk": "ssd"},
        }
    }
    for name, sample in SAMPLES.items():
        path = registry.REGISTRY[name].chart
        assert path, f"{name} has no chart value"
        *parents, leaf = path.split(".")
        node = values
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = sample
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump(values))
    out = subprocess.run(
        [str(helm), "template", "demo", str(CHART), "-f", str(file)],
        capture_output=True,
        text=True,
        check=True,
    )
    container = operator_container([d for d in yaml.safe_load_all(out.stdout) if d])
    env = {e["name"]: e.get("value") for e in container["env"] if "value" in e}
    settings = {n: v for n, v in env.items() if n.startswith(("EMBEDDING_OPERATOR_", "VOYAGE_"))}
    exposed = {s.name for s in registry.REGISTRY.values() if s.chart}
    assert set(settings) == exposed, "the chart's env and the registry disagree"
    assert set(SAMPLES) | set(COMPOSED) == exposed
    for name, sample in SAMPLES.items():
        assert registry.read(name, settings) == sample, (name, settings[name])
    for name, expected in COMPOSED.items():
        if expected is not None:
            assert json.loads(settings[name]) == expected, name


def test_the_docs_list_the_registry() -> None:
    text = (ROOT / "docs" / "operator.md").read_text()
    section = text[text.index("## Settings") :]
    section = section[: section.index("\n## ", 1)]
    rows = dict(re.findall(r"^\| `([A-Z_]+)` \|([^|]*)\|", section, re.M))
    assert set(rows) == set(registry.REGISTRY), "docs/operator.md's settings table"
    for name, setting in registry.REGISTRY.items():
        if isinstance(setting.default, int | float) and not isinstance(setting.default, bool):
            shown = rows[name].strip().replace(",", "")
            assert registry.parse(setting, shown) == setting.default, (name, rows[name])
