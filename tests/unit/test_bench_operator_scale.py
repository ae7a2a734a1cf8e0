"""The measuring parts of benchmarks/operator_scale.py: its request counts come from
kube-apiserver's audit log, read while the apiserver appends to it."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from benchmarks.operator_scale import Audit, Request, percentile


def _event(at: float, verb: str, uri: str) -> str:
    stamp = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return json.dumps(
        {
            "kind": "Event",
            "stage": "RequestReceived",
            "verb": verb,
            "requestURI": uri,
            "requestReceivedTimestamp": stamp,
        }
    )


def test_audit_reads_whole_lines_as_the_log_grows(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    audit = Audit(log)
    assert audit.refresh() == []  # no log yet
    first, second = _event(100.25, "get", "/api/v1/x"), _event(101.5, "list", "/api/v1/y")
    log.write_text(first + "\n" + second[:20])  # the apiserver is halfway through a line
    assert [(r.at, r.verb) for r in audit.refresh()] == [(100.25, "get")]
    with log.open("a") as f:
        f.write(second[20:] + "\n")
    assert [(r.at, r.verb) for r in audit.refresh()] == [(100.25, "get"), (101.5, "list")]
    assert [r.verb for r in audit.between(101.0)] == ["list"]
    assert [r.verb for r in audit.between(100.0, 101.5)] == ["get"]


def test_wait_quiet_returns_the_last_request(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    now = time.time()
    log.write_text(_event(now - 10, "get", "/a") + "\n" + _event(now - 5, "get", "/b") + "\n")
    assert Audit(log).wait_quiet(now - 20, timeout=5) == pytest.approx(now - 5, abs=1e-3)
    assert Audit(log).wait_quiet(now - 1, timeout=5) == now - 1  # none since


@pytest.mark.parametrize(
    ("verb", "uri", "kind"),
    [
        (
            "get",
            "/apis/embedding-operator.dev/v1alpha1/namespaces/n/deploymentembeddings/r",
            "get deploymentembeddings",
        ),
        (
            "patch",
            "/apis/embedding-operator.dev/v1alpha1/namespaces/n/deploymentembeddings/r/status?a=b",
            "patch deploymentembeddings/status",
        ),
        ("list", "/api/v1/namespaces/n/pods?labelSelector=a%3Db", "list pods"),
        ("watch", "/apis/batch/v1/namespaces/n/jobs?watch=true", "watch jobs"),
        ("get", "/apis/rbac.authorization.k8s.io/v1/clusterroles/worker", "get clusterroles"),
        ("list", "/api/v1/namespaces", "list namespaces"),
        ("get", "/apis", "get discovery"),
    ],
)
def test_request_kind(verb: str, uri: str, kind: str) -> None:
    assert Request(0.0, verb, uri).kind == kind


def test_percentile_is_a_sample() -> None:
    assert percentile([5.0, 1.0, 3.0], 0.5) == 3.0
    assert percentile([float(i) for i in range(1, 51)], 0.99) == 50.0  # of 50: the max


@pytest.fixture
def naive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """benchmarks.naive_operator with the in-memory API (it builds its client on import)."""
    import importlib
    import sys

    from tests.fake_kube import FakeApi

    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {}}]\n"
    )
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.delitem(sys.modules, "benchmarks.naive_operator", raising=False)
    module = importlib.import_module("benchmarks.naive_operator")
    api = FakeApi()
    monkeypatch.setattr(module, "kube", api.kube())
    return module, api


@pytest.mark.parametrize("full", [False, True])
def test_the_status_baseline_writes_this_operators_status_and_the_same_job(
    naive: Any, monkeypatch: pytest.MonkeyPatch, full: bool
) -> None:
    """``--status-baseline``'s control differs from the baseline in the status only."""
    import kopf

    from embedding_operator.api import names
    from embedding_operator.controller.objects import build_job
    from embedding_operator.controller.reconcile import plan
    from embedding_operator.controller.settings import Settings
    from embedding_operator.kube import resource_path

    module, api = naive
    monkeypatch.setattr(module, "FULL_STATUS", full)
    meta = {"name": "r", "namespace": "ns", "uid": "u-1", "generation": 1, "resourceVersion": "1"}
    created = {"apiVersion": names.API_VERSION, "kind": names.KIND, "metadata": meta}
    created["spec"] = {"inputs": ["a"], "model": "voyage-3.5"}
    api.kube().create(resource_path("ns"), created)
    pending = plan(created, None, [], datetime.now(UTC), Settings()).patch
    meta = {**meta, "annotations": {names.RUN_ANNOTATION: "x"}}
    body = kopf.Body({**created, "metadata": meta, "status": pending})
    module.run_requested(body=body, meta=body.meta, status=body.status)
    [job] = api.all("batch/v1", "jobs", "ns")
    plain = build_job({"metadata": meta, "spec": created["spec"]}, "x", 1, Settings())
    assert job["metadata"]["name"] == plain["metadata"]["name"]
    [patch] = [r.body for r in api.requests if r.method == "PATCH"]
    conditions = {c["type"] for c in patch["status"].get("conditions", [])}
    assert patch["status"]["jobName"] == job["metadata"]["name"]
    assert conditions == (
        {"Succeeded", "Ready", "Reconciling", "Stalled", "RunRequest"} if full else set()
    )
