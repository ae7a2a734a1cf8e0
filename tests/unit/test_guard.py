"""The chart's operator guard, evaluated with cel-python on the Jobs the operator builds: its own
Job passes every rule, each escalation fails the rule that names it. (The real apiserver's verdict
is tests/e2e/test_privilege.py; this is the fast check of the same expressions.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import celpy
import pytest
from celpy import celtypes

from embedding_operator.controller.objects import build_job
from embedding_operator.controller.settings import Settings
from tests.guard_cases import GUARD, escalations
from tests.tools.fetch import ensure_tools
from tests.unit.test_chart import by_kind, render

IMAGE = "ghcr.io/embedding-operator/embedding-operator:0.1.0"
OWNER = {"name": "docs", "namespace": "team-a", "uid": "u-1"}


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_tools()["helm"]


def _policy(helm: Path, suffix: str, *sets: str) -> dict[str, Any]:
    docs = render(helm, "voyage.baseURL=https://voyage.example/v1", *sets)
    [policy] = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy"
        and d["metadata"]["name"] == f"demo-embedding-operator-operator-guard{suffix}"
    ]
    return policy


def failures(policy: dict[str, Any], obj: dict[str, Any], **extra: Any) -> list[str]:
    """The messages of the validations ``obj`` fails (a Job creation in its namespace)."""
    env = celpy.Environment()
    activation: dict[str, Any] = {
        "object": celpy.json_to_cel(obj),
        "request": celpy.json_to_cel(
            {"namespace": obj["metadata"]["namespace"], "resource": {"resource": "jobs"}}
        ),
        **{k: celpy.json_to_cel(v) for k, v in extra.items()},
    }
    variables: dict[str, Any] = {}
    for var in policy["spec"].get("variables", []):
        program = env.program(env.compile(var["expression"]))
        variables[var["name"]] = program.evaluate(
            {**activation, "variables": celtypes.MapType(variables)}
        )
    out = []
    for rule in policy["spec"]["validations"]:
        program = env.program(env.compile(rule["expression"]))
        verdict = program.evaluate({**activation, "variables": celtypes.MapType(variables)})
        if not isinstance(verdict, celtypes.BoolType) or not verdict:
            out.append(rule.get("message") or rule["messageExpression"])
    return out


@pytest.fixture(scope="module")
def job() -> dict[str, Any]:
    settings = Settings.from_env(
        {"EMBEDDING_OPERATOR_IMAGE": IMAGE, "VOYAGE_BASE_URL": "https://voyage.example/v1"}
    )
    body = {"metadata": OWNER, "spec": {"inputs": ["x"], "model": "voyage-3.5"}}
    return build_job(body, "r1", 1, settings)


def test_the_operators_own_job_passes(helm: Path, job: dict[str, Any]) -> None:
    assert failures(_policy(helm, ""), job) == []
    params = {"metadata": {"name": "docs"}, "spec": {}}
    assert failures(_policy(helm, "-secrets"), job, params=params) == []


def test_every_escalation_fails_the_rule_that_names_it(helm: Path, job: dict[str, Any]) -> None:
    main, secrets = _policy(helm, ""), _policy(helm, "-secrets")
    params = {"metadata": {"name": "docs"}, "spec": {}}
    for attempt, (bad, message) in escalations(job).items():
        failed = failures(main, bad) + failures(secrets, bad, params=params)
        assert any(message in m for m in failed), (attempt, failed)


def test_a_job_in_an_excluded_namespace_fails(helm: Path, job: dict[str, Any]) -> None:
    system = {**job, "metadata": {**job["metadata"], "namespace": "kube-system"}}
    assert failures(_policy(helm, ""), system)[0].startswith(f"'{GUARD}")


def test_the_charts_worker_scheduling_passes_and_nothing_else(helm: Path) -> None:
    """A toleration and priority class set in the chart's worker values reach the Job (through
    the operator's env) and pass; the same Job with one more toleration does not."""
    sets = (
        "worker.priorityClassName=batch-low",
        "worker.tolerations[0].key=dedicated",
        "worker.tolerations[0].operator=Equal",
        "worker.tolerations[0].value=embeddings",
        "worker.tolerations[0].effect=NoSchedule",
    )
    deployment = by_kind(render(helm, *sets), "Deployment", "demo-embedding-operator")
    env = {
        e["name"]: e.get("value", "")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    settings = Settings.from_env({**env, "EMBEDDING_OPERATOR_IMAGE": IMAGE})
    body = {"metadata": OWNER, "spec": {"inputs": ["x"], "model": "voyage-3.5"}}
    job = build_job(body, "r1", 1, settings)
    pod = job["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "batch-low" and len(pod["tolerations"]) == 1
    policy = _policy(helm, "", *sets)
    assert failures(policy, job) == []
    pod["tolerations"].append(
        {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}
    )
    assert any("scheduled as the chart's worker values say" in m for m in failures(policy, job))
