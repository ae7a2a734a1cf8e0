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


def by_kind(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    return doc


OPERATOR = "demo-embedding-operator"


def operator_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = by_kind(docs, "Deployment", OPERATOR)["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


API_SERVER = "demo-embedding-operator-api-server"


def test_chart_files_are_the_generated_crds() -> None:
    for path in (CRD_PATH, POLICY_PATH):
        copy = CHART / "files" / path.name
        assert copy.read_text() == path.read_text(), f"{copy} drifted: run `make crds`"


def test_chart_requires_the_apis_minimum_kubernetes() -> None:
    from embedding_operator.api.crd import MINIMUM_KUBERNETES

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["kubeVersion"] == f">={MINIMUM_KUBERNETES}.0-0"


ALL_VALUES = CHART / "ci" / "all-values.yaml"
MONITORING = ("ServiceMonitor", "PodMonitor")
"""Prometheus Operator kinds: custom resources, which kubernetes-validate has no schema for."""


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["defaults", "all-values"])
def test_chart_lints(helm: Path, values: Path | None) -> None:
    args = ["-f", str(values)] if values else []
    out = subprocess.run(
        [str(helm), "lint", "--strict", str(CHART), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def render_file(helm: Path, values: Path, chart: Path = CHART) -> list[dict[str, Any]]:
    args = [str(helm), "template", "demo", str(chart), "--namespace", "emb", "-f", str(values)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.mark.parametrize("values", [None, ALL_VALUES], ids=["defaults", "all-values"])
def test_rendered_chart_is_valid_kubernetes(
    helm: Path, tmp_path: Path, values: Path | None
) -> None:
    import sys

    docs = render_file(helm, values) if values else render(helm)
    kinds = {d["kind"] for d in docs}
    if values:  # every optional object is rendered
        assert {*MONITORING, "NetworkPolicy", "Role", "RoleBinding"} <= kinds
    rendered = tmp_path / "chart.yaml"
    rendered.write_text(yaml.safe_dump_all([d for d in docs if d["kind"] not in MONITORING]))
    out = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(rendered)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_all_values_reach_the_operator_and_its_worker_jobs(helm: Path) -> None:
    from embedding_operator.controller.objects import build_job
    from embedding_operator.controller.settings import Settings

    docs = render_file(helm, ALL_VALUES)
    deployment = by_kind(docs, "Deployment", OPERATOR)
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"].startswith("ghcr.io/embedding-operator/embedding-operator@sha256:")
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
    assert deployment["spec"]["template"]["metadata"]["labels"]["team"] == "ml"
    assert "--verbose" in container["args"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    settings = Settings.from_env(env)
    job_pod = build_job(
        {
            "metadata": {"name": "r", "namespace": "team-a", "uid": "u"},
            "spec": {"inputs": ["x"], "model": "voyage-3.5"},
        },
        "go",
        1,
        settings,
    )["spec"]["template"]["spec"]
    assert job_pod["nodeSelector"] == {"pool": "batch"}
    assert job_pod["priorityClassName"] == "batch-low"
    assert job_pod["tolerations"][0]["tolerationSeconds"] == 16_000_000
    assert job_pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert job_pod["affinity"]["nodeAffinity"]
    worker_env = {e["name"]: e.get("value") for e in job_pod["containers"][0]["env"]}
    assert worker_env["HTTPS_PROXY"] == "http://proxy:3128"
    assert worker_env["EMBEDDING_OPERATOR_LOG_FORMAT"] == "json"


def test_the_guard_admits_exactly_the_workers_environment(helm: Path) -> None:
    import re

    docs = render_file(helm, ALL_VALUES)
    [guard] = [
        d
        for d in docs
        if d["metadata"]["name"] == "demo-embedding-operator-operator-guard"
        and d["kind"] == "ValidatingAdmissionPolicy"
    ]
    [env_rule] = [v for v in guard["spec"]["validations"] if "VOYAGE_API_KEY" in v["expression"]]
    listed = re.search(r"e\.name in (\[.*?\])", env_rule["expression"])
    assert listed is not None
    import json

    assert set(json.loads(listed.group(1))) == {
        *WORKER_PASSTHROUGH,
        "VOYAGE_API_KEY",
        "HTTPS_PROXY",
    }


NUMBERS = (
    "operator.resyncSeconds",
    "operator.podStartTimeoutSeconds",
    "voyage.timeoutSeconds",
    "voyage.maxAttempts",
    "voyage.requestsPerMinute",
    "voyage.tokensPerMinute",
    "storage.inlineMaxBytes",
    "storage.maxResultBytes",
)
"""Every numeric value whose schema admits 16,000,000 (ports, concurrency and chunkBytes have
smaller maxima, which the schema enforces)."""


def test_large_whole_numbers_render_as_digits_not_exponents(helm: Path) -> None:
    docs = render(helm, *(f"{key}=16000000" for key in NUMBERS))
    text = yaml.safe_dump_all(docs)
    assert "e+" not in text
    env = {e["name"]: e["value"] for e in operator_container(docs)["env"]}
    assert env["EMBEDDING_OPERATOR_TPM"] == "16000000"
    assert env["EMBEDDING_OPERATOR_RESYNC_SECONDS"] == "16000000"


def test_a_build_version_makes_valid_labels(helm: Path, tmp_path: Path) -> None:
    import re
    import shutil

    chart = tmp_path / "embedding-operator"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.0+build.7"
    meta["appVersion"] = "0.1.0+abc"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta))
    docs = render_file(helm, ALL_VALUES, chart)
    label = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
    for doc in docs:
        for value in (doc["metadata"].get("labels") or {}).values():
            assert len(value) <= 63 and label.match(value), (doc["kind"], value)
    assert by_kind(docs, "Deployment", OPERATOR)["metadata"]["labels"]["helm.sh/chart"] == (
        "embedding-operator-0.1.0_build.7"
    )


def test_global_is_allowed_for_use_as_a_subchart(helm: Path) -> None:
    assert render(helm, "global.imageRegistry=registry.example")


def test_helm_show_readme(helm: Path) -> None:
    out = subprocess.run(
        [str(helm), "show", "readme", str(CHART)], capture_output=True, text=True, check=True
    )
    assert "## Values" in out.stdout and "argocd" in out.stdout.lower()


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
    [policy] = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy" and "guard" not in d["metadata"]["name"]
    ]
    assert policy["spec"] == build_admission_policy()[0]["spec"]
    assert "annotations" not in policy["metadata"]


def test_crds_and_policy_can_be_left_out(helm: Path) -> None:
    kinds = {
        d["kind"]
        for d in render(
            helm,
            "crds.install=false",
            "admissionPolicy.install=false",
            "operatorGuard.install=false",
        )
    }
    assert "CustomResourceDefinition" not in kinds
    assert "ValidatingAdmissionPolicy" not in kinds
    assert {"Deployment", "ClusterRole", "ServiceAccount"} <= kinds


def test_the_api_key_check_alone_can_be_left_out(helm: Path) -> None:
    """``operatorGuard.pinApiKeySecrets=false`` drops the per-resource Secret check (its cost
    grows with the namespace) and keeps the rest of the guard."""

    def guards(*sets: str) -> set[str]:
        return {
            d["metadata"]["name"]
            for d in render(helm, *sets)
            if d["kind"].startswith("ValidatingAdmissionPolicy")
            and "guard" in d["metadata"]["name"]
        }

    secrets = "demo-embedding-operator-operator-guard-secrets"
    assert guards() == {"demo-embedding-operator-operator-guard", secrets}
    assert guards("operatorGuard.pinApiKeySecrets=false") == {
        "demo-embedding-operator-operator-guard"
    }


def _granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def _named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def test_worker_rights_live_in_a_cluster_role_the_operator_may_only_bind(helm: Path) -> None:
    docs = render(helm)
    worker = _named(docs, "ClusterRole", "demo-embedding-operator-worker")
    assert _granted(worker["rules"]) == _granted(worker_rules())
    operator = _named(docs, "ClusterRole", "demo-embedding-operator")
    held = _granted(operator["rules"])
    assert not any("*" in entry for entry in held)
    assert not any(resource in ("secrets", "roles") for _, resource, _ in held)
    assert {v for _, r, v in held if r == "configmaps"} == {"deletecollection"}
    assert {v for _, r, v in held if r == "rolebindings"} == {"create"}
    assert not any(
        verb in ("update", "patch") and resource == "deploymentembeddings"
        for _, resource, verb in held
    )
    [bind] = [r for r in operator["rules"] if "bind" in r["verbs"]]
    assert bind["resourceNames"] == ["demo-embedding-operator-worker"]
    assert bind["resources"] == ["clusterroles"] and bind["verbs"] == ["bind"]


def test_namespaced_install_has_no_cluster_wide_jobs(helm: Path) -> None:
    docs = render(helm, "watchNamespaces={team-a,team-b}")
    operator = _named(docs, "ClusterRole", "demo-embedding-operator")
    assert {r for _, r, _ in _granted(operator["rules"])} == {
        "customresourcedefinitions",
        "clusterroles",
    }
    operators = [d for d in docs if not d["metadata"]["name"].startswith(API_SERVER)]
    roles = [d for d in operators if d["kind"] == "Role" and d["metadata"]["name"] == OPERATOR]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert ("batch", "jobs", "create") in _granted(roles[0]["rules"])
    bindings = [
        d for d in operators if d["kind"] == "RoleBinding" and d["metadata"]["name"] == OPERATOR
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    args = operator_container(docs)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args


def test_deployment_is_restricted_and_wired_to_the_operator_settings(helm: Path) -> None:
    docs = render(helm, "voyage.baseURL=https://proxy.example/v1", "storage.chunkBytes=65536")
    deployment = by_kind(docs, "Deployment", OPERATOR)
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
    assert handed_on == {
        "VOYAGE_BASE_URL",
        "EMBEDDING_OPERATOR_CHUNK_BYTES",
        "EMBEDDING_OPERATOR_LOG_FORMAT",
    }
    # only the Lease holder acts, so the new pod may start beside the old one (as a standby)
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert deployment["spec"]["replicas"] == 1
    assert "affinity" not in pod
    assert not [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert pod["serviceAccountName"] == OPERATOR


LEADER_ELECTION = f"{OPERATOR}-leader-election"


def test_two_replicas_elect_a_leader_and_spread_under_a_disruption_budget(helm: Path) -> None:
    docs = render(helm, "replicaCount=2")
    deployment = by_kind(docs, "Deployment", OPERATOR)
    selector = deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e["value"] for e in operator_container(docs)["env"]}
    assert env["EMBEDDING_OPERATOR_LEASE_NAMESPACE"] == "emb"
    assert env["EMBEDDING_OPERATOR_LEASE_NAME"] == OPERATOR
    budget = by_kind(docs, "PodDisruptionBudget", OPERATOR)
    assert budget["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"] == {
        "topologyKey": "kubernetes.io/hostname",
        "labelSelector": {"matchLabels": selector},
    }
    hard = by_kind(render(helm, "replicaCount=2", "podAntiAffinity=hard"), "Deployment", OPERATOR)
    [required] = hard["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert required["labelSelector"] == {"matchLabels": selector}
    own = {"nodeAffinity": {"x": 1}}
    mine = by_kind(
        render(helm, "replicaCount=2", "affinity.nodeAffinity.x=1"), "Deployment", OPERATOR
    )
    assert mine["spec"]["template"]["spec"]["affinity"] == own  # the user's wins


def test_leader_election_holds_its_one_lease_and_creates_only_in_its_namespace(
    helm: Path,
) -> None:
    for docs in (render(helm), render(helm, "watchNamespaces={team-a}")):
        role = _named(docs, "Role", LEADER_ELECTION)
        assert role["metadata"]["namespace"] == "emb"
        named, unnamed = role["rules"]
        assert named == {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": [OPERATOR],
            "verbs": ["get", "update"],
        }
        assert "resourceNames" not in unnamed and unnamed["verbs"] == ["create"]
        binding = _named(docs, "RoleBinding", LEADER_ELECTION)
        assert binding["metadata"]["namespace"] == "emb"
        assert binding["roleRef"]["name"] == LEADER_ELECTION
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": OPERATOR, "namespace": "emb"}
        ]
        # no other role of the chart touches Leases
        leases = [
            d["metadata"]["name"]
            for d in docs
            if d["kind"] in ("Role", "ClusterRole")
            and any("leases" in r["resources"] for r in d["rules"])
        ]
        assert leases == [LEADER_ELECTION]


@pytest.mark.parametrize(
    ("setting", "field"),
    [
        ("replicaCount=0", "replicaCount"),
        ("podAntiAffinity=always", "podAntiAffinity"),
        ("leaderElection.leaseDurationSeconds=1", "leaseDurationSeconds"),
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


# -- the REST API ----------------------------------------------------------------------------


def test_the_api_server_holds_only_what_it_needs(helm: Path) -> None:
    docs = render(helm)
    held = _granted(by_kind(docs, "ClusterRole", API_SERVER)["rules"])
    assert held == {
        ("embedding-operator.dev", "deploymentembeddings", verb)
        for verb in ("get", "list", "watch", "create", "patch", "delete")
    } | {("", "configmaps", "get")}
    [secret_rule] = by_kind(docs, "Role", f"{API_SERVER}-tls")["rules"]
    assert secret_rule["resourceNames"] == [f"{API_SERVER}-tls"]
    assert secret_rule["verbs"] == ["get"]
    delegator = by_kind(docs, "ClusterRoleBinding", f"{API_SERVER}:auth-delegator")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    reader = by_kind(docs, "RoleBinding", f"{API_SERVER}:authentication-reader")
    assert reader["metadata"]["namespace"] == "kube-system"
    deployment = by_kind(docs, "Deployment", API_SERVER)
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == API_SERVER
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:3] == [
        "api-server",
        "--secure-port=8443",
        f"--tls-secret=emb/{API_SERVER}-tls",
    ]


def test_a_namespaced_install_gives_the_api_server_roles_only_where_it_serves(
    helm: Path,
) -> None:
    docs = render(helm, "watchNamespaces={team-a,team-b}")
    cluster_wide = {
        (d["kind"], d["metadata"]["name"]) for d in docs if d["kind"].startswith("Cluster")
    }
    assert ("ClusterRole", API_SERVER) not in cluster_wide
    assert ("ClusterRoleBinding", API_SERVER) not in cluster_wide
    # reviews of callers are cluster-wide by nature: TokenReview and SubjectAccessReview only
    assert ("ClusterRoleBinding", f"{API_SERVER}:auth-delegator") in cluster_wide
    for namespace in ("team-a", "team-b"):
        [role] = [
            d
            for d in docs
            if d["kind"] == "Role"
            and d["metadata"]["name"] == API_SERVER
            and d["metadata"]["namespace"] == namespace
        ]
        assert ("embedding-operator.dev", "deploymentembeddings", "watch") in _granted(
            role["rules"]
        )
        [binding] = [
            d
            for d in docs
            if d["kind"] == "RoleBinding"
            and d["metadata"]["name"] == API_SERVER
            and d["metadata"]["namespace"] == namespace
        ]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": API_SERVER,
        }
        assert binding["subjects"][0]["name"] == API_SERVER
    [container] = by_kind(docs, "Deployment", API_SERVER)["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["--namespace=team-a", "--namespace=team-b"]


def test_the_apiservice_trusts_the_ca_that_signed_the_serving_certificate(helm: Path) -> None:
    import base64

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    docs = render(helm)
    service = by_kind(docs, "APIService")
    assert service["spec"]["service"] == {"name": API_SERVER, "namespace": "emb", "port": 443}
    ca = x509.load_pem_x509_certificate(base64.b64decode(service["spec"]["caBundle"]))
    tls = by_kind(docs, "Secret", f"{API_SERVER}-tls")["data"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(tls["tls.crt"]))
    key = ca.public_key()
    assert cert.signature_hash_algorithm is not None
    if isinstance(key, rsa.RSAPublicKey):
        key.verify(
            cert.signature,
            cert.tbs_certificate_bytes,
            padding.PKCS1v15(),
            cert.signature_hash_algorithm,
        )
    else:
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(
            cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
        )
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{API_SERVER}.emb.svc" in names.get_values_for_type(x509.DNSName)


def test_cert_manager_issues_the_certificate_when_asked(helm: Path) -> None:
    docs = render(helm, "apiServer.certManager.enabled=true")
    service = by_kind(docs, "APIService")
    assert "caBundle" not in service["spec"]
    assert service["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"emb/{API_SERVER}"
    }
    assert by_kind(docs, "Certificate")["spec"]["secretName"] == f"{API_SERVER}-tls"
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_user_roles_aggregate_and_the_runner_may_only_run(helm: Path) -> None:
    docs = render(helm)
    view = by_kind(docs, "ClusterRole", f"{OPERATOR}-view")
    edit = by_kind(docs, "ClusterRole", f"{OPERATOR}-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    # kube-apiserver checks REST paths as RESOURCE/NAME/SUBRESOURCE (docs/restapi.md)
    # (RBAC cannot match `deployment-embeddings/*`: a subresource only by its exact name)
    assert ("api.embedding-operator.dev", "*", "get") in _granted(view["rules"])
    runner = by_kind(docs, "ClusterRole", f"{OPERATOR}-runner")
    assert _granted(runner["rules"]) == {
        ("embedding-operator.dev", "deploymentembeddings/run", "create"),
        ("api.embedding-operator.dev", "*", "create"),
    }
    assert runner["rules"][1]["resourceNames"] == ["run"]
    assert "labels" not in runner["metadata"] or not any(
        k.startswith("rbac.authorization.k8s.io/aggregate") for k in runner["metadata"]["labels"]
    )


def test_the_api_server_can_be_left_out(helm: Path) -> None:
    docs = render(helm, "apiServer.enabled=false")
    assert not [d for d in docs if "api-server" in d["metadata"]["name"]]
    assert not [d for d in docs if d["kind"] == "APIService"]
