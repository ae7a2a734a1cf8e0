"""The Helm chart, rendered by the real helm binary: lint, schema, generated manifests in step
with crds/, RBAC that covers what the operator grants its workers and nothing wide."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from embedding_operator import __version__
from embedding_operator.api.admission import build_admission_policy
from embedding_operator.api.crd import build_crd
from embedding_operator.controller.objects import worker_rules
from embedding_operator.controller.settings import WORKER_PASSTHROUGH
from tests.api_cases import CRD_PATH, POLICY_PATH, ROOT
from tests.tools.fetch import ensure_tools

CHART = ROOT / "charts" / "embedding-operator"


@pytest.fixture(scope="module")
def helm() -> Path:
    return ensure_tools()["helm"]


def render(helm: Path, *sets: str) -> list[dict[str, Any]]:
    args = [str(helm), "template", "demo", str(CHART), "--namespace", "emb"]
    for s in sets:
        args += ["--set", s]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind]
    return doc


def test_chart_files_are_the_generated_crds() -> None:
    for path in (CRD_PATH, POLICY_PATH):
        copy = CHART / "files" / path.name
        assert copy.read_text() == path.read_text(), f"{copy} drifted: run `make crds`"


def test_chart_requires_the_apis_minimum_kubernetes() -> None:
    from embedding_operator.api.crd import MINIMUM_KUBERNETES

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={MINIMUM_KUBERNETES}.0-0"


def test_chart_lints(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_rendered_chart_is_valid_kubernetes(helm: Path, tmp_path: Path) -> None:
    import sys

    rendered = tmp_path / "chart.yaml"
    rendered.write_text(yaml.safe_dump_all(render(helm)))
    out = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_crd_and_policy_are_the_generated_ones_kept_on_uninstall(helm: Path) -> None:
    docs = render(helm)
    crd = by_kind(docs, "CustomResourceDefinition")
    assert crd["spec"] == build_crd()["spec"]
    assert crd["metadata"]["annotations"] == {
        "helm.sh/resource-policy": "keep",
        "argocd.argoproj.io/sync-options": "Prune=false",
    }
    dropped = by_kind(render(helm, "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in dropped["metadata"]
    policy = by_kind(docs, "ValidatingAdmissionPolicy")
    assert policy["spec"] == build_admission_policy()[0]["spec"]
    assert "annotations" not in policy["metadata"]


def test_crds_and_policy_can_be_left_out(helm: Path) -> None:
    kinds = {d["kind"] for d in render(helm, "crds.install=false", "admissionPolicy.install=false")}
    assert "CustomResourceDefinition" not in kinds
    assert "ValidatingAdmissionPolicy" not in kinds
    assert {"Deployment", "ClusterRole", "ServiceAccount"} <= kinds


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_operator_holds_every_right_it_grants_workers_and_nothing_wide(helm: Path) -> None:
    role = by_kind(render(helm), "ClusterRole")
    held = _granted(role["rules"])
    missing = _granted(worker_rules()) - held
    assert not missing, f"the operator cannot grant what it lacks: {sorted(missing)}"
    assert not any("*" in entry for entry in held)
    assert not any(resource == "secrets" for _, resource, _ in held)
    assert not any(
        verb in ("update", "patch") and resource == "deploymentembeddings"
        for _, resource, verb in held
    )


def test_deployment_is_restricted_and_wired_to_the_operator_settings(helm: Path) -> None:
    docs = render(helm, "voyage.baseURL=https://proxy.example/v1", "storage.chunkBytes=65536")
    deployment = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == f"ghcr.io/embedding-operator/embedding-operator:{__version__}"
    assert container["args"][0] == "run"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["VOYAGE_BASE_URL"] == "https://proxy.example/v1"
    assert env["EMBEDDING_OPERATOR_CHUNK_BYTES"] == "65536"
    assert env["EMBEDDING_OPERATOR_IMAGE"] == container["image"]
    handed_on = {k for k in env if k in WORKER_PASSTHROUGH}
    assert handed_on == {"VOYAGE_BASE_URL", "EMBEDDING_OPERATOR_CHUNK_BYTES"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert pod["serviceAccountName"] == by_kind(docs, "ServiceAccount")["metadata"]["name"]


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("image.pullPolicy=Sometimes", "pullPolicy"),
        ("voyage.concurrency=500", "concurrency"),
        ("storage.chunkBytes=2000000", "chunkBytes"),
        ("voyage.baseURL=ftp://nowhere", "baseURL"),
        ("unknownValue=1", "unknownValue"),
    ],
)
def test_values_schema_refuses_bad_values(helm: Path, setting: str, field: str) -> None:
    out = subprocess.run(
        [str(helm), "template", "demo", str(CHART), "--set", setting],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert field in out.stderr, out.stderr


def test_the_chart_ships_the_packages_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__  # the version lives in embedding_operator/__init__
