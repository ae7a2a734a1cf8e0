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


def _flux_expressions() -> dict[str, str]:
    import re

    import yaml

    text = (CHART.parents[1] / "docs" / "gitops.md").read_text()
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "healthCheckExprs" in b]
    [exprs] = yaml.safe_load(block)["spec"]["healthCheckExprs"]
    return {k: exprs[k] for k in ("inProgress", "failed", "current")}


def test_the_documented_flux_expressions_judge_each_phase() -> None:
    """docs/gitops.md's healthCheckExprs, in Flux's order (inProgress, failed, current)."""
    import celpy

    env = celpy.Environment()
    programs = {k: env.program(env.compile(v)) for k, v in _flux_expressions().items()}

    def verdict(ready: str, reconciling: str, stalled: str) -> str:
        conditions = [
            {"type": t, "status": s}
            for t, s in (("Ready", ready), ("Reconciling", reconciling), ("Stalled", stalled))
        ]
        activation = {"status": celpy.json_to_cel({"conditions": conditions})}
        for name, program in programs.items():
            if bool(program.evaluate(activation)):
                return name
        return "unknown"

    assert verdict("True", "False", "False") == "current"  # Pending or Completed
    assert verdict("Unknown", "True", "False") == "inProgress"  # Running
    assert verdict("False", "False", "True") == "failed"  # Failed
