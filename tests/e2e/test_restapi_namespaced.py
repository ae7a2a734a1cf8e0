"""The REST API of a namespaced install (the chart's ``watchNamespaces``) on the real
kube-apiserver: its ServiceAccount holds Roles in the served namespaces only, and a request for
any other namespace is a clear 404 Status, with nothing created there."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

import pytest
from kubernetes.client import ApiException

from tests.cluster.harness import free_port
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.rest import (
    RestClient,
    bind,
    ca_file,
    chart_values,
    helm_install,
    helm_uninstall,
    token_for,
    wait_available,
)
from tests.e2e.stack import apply_manifests
from tests.tools.fetch import ensure_tools

pytestmark = pytest.mark.cluster

RELEASE = "scoped"
SEED = {"name": "scoped-job", "inputs": ["Hello world"], "model": "voyage-3-large"}


def allowed(api: Any, user: str, verb: str, namespace: str) -> bool:
    """kube-apiserver's own answer: may ``user`` do ``verb`` on the custom resources there
    (``namespace`` "" asks for all namespaces)."""
    from kubernetes import client

    authorization: Any = client.AuthorizationV1Api(api)
    review = authorization.create_subject_access_review(
        {
            "spec": {
                "user": user,
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": "embedding-operator.dev",
                    "resource": "deploymentembeddings",
                },
            }
        }
    )
    return bool(review.status.allowed)


def test_a_namespaced_install_serves_and_holds_rights_only_in_its_namespaces(
    cluster: ClusterHandle, crd: dict[str, Any], api: Any, tmp_path: Any
) -> None:
    helm = ensure_tools()["helm"]
    apply_manifests(api)
    suffix = uuid.uuid4().hex[:5]
    served, other, home = f"scoped-a-{suffix}", f"scoped-b-{suffix}", f"scoped-{suffix}"
    core = apis.CoreV1Api(api)
    for namespace in (served, other):
        core.create_namespace({"metadata": {"name": namespace}})
    values = chart_values(
        "http://127.0.0.1:9/v1",
        free_port(),
        free_port(),
        crds={"install": False},
        admissionPolicy={"install": False},
        watchNamespaces=[served],
    )
    try:
        helm_install(helm, cluster.kubeconfig, RELEASE, home, values)
        wait_available(api)  # its /readyz: the served namespace's resources are listed

        server = f"system:serviceaccount:{home}:{RELEASE}-embedding-operator-api-server"
        for verb in ("get", "list", "watch", "create", "patch", "delete"):
            assert allowed(api, server, verb, served), verb
            assert not allowed(api, server, verb, other), verb
            assert not allowed(api, server, verb, ""), verb  # no cluster-wide right left

        ca = ca_file(cluster.kubeconfig, tmp_path / "ca.crt")
        editors = {}
        for namespace in (served, other):  # kube-apiserver lets an editor through in both
            bind(api, namespace, "editor", "edit")
            editors[namespace] = RestClient(
                cluster.server, ca, namespace, token_for(api, namespace, "editor")
            )
        wait_for(lambda: editors[served].get().status == 200, 30, what="the editor's rights")
        assert editors[served].post("/", SEED).status == 201
        listed = editors[served].get()
        assert [r["name"] for r in listed.body["items"]] == [SEED["name"]]

        wait_for(lambda: editors[other].get().status != 403, 30, what="the editor's rights")
        for method, path, body in [
            ("GET", "/", None),
            ("POST", "/", SEED),
            ("GET", "/name/scoped-job", None),
            ("POST", "/run/scoped-job", None),
        ]:
            refused = editors[other].call(method, path, body)
            assert refused.status == 404, (method, path, refused)
            assert refused.body["kind"] == "Status" and refused.body["reason"] == "NotFound"
            assert f'namespace "{other}" is not served by this REST API' in refused.message
        crs = apis.CustomObjectsApi(api).list_namespaced_custom_object(
            "embedding-operator.dev", "v1alpha1", other, "deploymentembeddings"
        )
        assert crs["items"] == []  # nothing created where it does not serve
    finally:
        helm_uninstall(helm, cluster.kubeconfig, RELEASE, home)
        for namespace in (served, other, home):
            with contextlib.suppress(ApiException):  # home: not made when helm failed early
                core.delete_namespace(namespace)
