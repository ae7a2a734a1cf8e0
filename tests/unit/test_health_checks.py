"""The GitOps health checks on objects no cluster is needed for, and the chart's copy of the
Argo CD check (the live verdicts are tests/e2e/test_health.py)."""

from __future__ import annotations

from embedding_operator.api import names
from tests.health import CHART, LUA, argocd


def manifest() -> dict[str, object]:
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": {"name": "new", "generation": 1},
        "spec": {"inputs": ["x"], "model": "voyage-3.5"},
    }


def test_argocd_check_is_progressing_before_the_operator_writes_a_status() -> None:
    assert argocd(manifest()) == "Progressing"


def test_the_chart_readme_ships_the_argocd_check_verbatim() -> None:
    readme = (CHART / "README.md").read_text()
    assert LUA.read_text().strip() in readme
