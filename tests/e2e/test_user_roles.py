"""RBAC aggregation on the real control plane: the chart's ClusterRoles, aggregated into the
cluster's view/edit/admin, let a user with ``edit`` in one namespace create and run a
DeploymentEmbedding there and one with ``view`` read it, and no more (docs/operator.md, threat
model, third row)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from embedding_operator.api import names
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.test_operator import G, P, V, annotate, create, manifest, wait_phase
from tests.e2e.test_privilege import account_token, client_for, denied, rbac_group
from tests.voyage_standin import StandIn

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]


def test_edit_user_creates_and_runs_view_user_reads(
    cluster: ClusterHandle, api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    rbac = apis.RbacAuthorizationV1Api(api)
    for who, role in (("alice", "edit"), ("bob", "view")):
        account_token(api, namespace, who)
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": who},
                "roleRef": {"apiGroup": rbac_group, "kind": "ClusterRole", "name": role},
                "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": namespace}],
            },
        )
    alice = client_for(cluster.kubeconfig, account_token(api, namespace, "alice"))
    bob = client_for(cluster.kubeconfig, account_token(api, namespace, "bob"))
    try:
        # RBAC aggregation is asynchronous (the clusterrole-aggregation controller)
        def created() -> bool:
            try:
                create(alice, namespace, manifest("by-alice", ["edit can run"], run=None))
            except client.ApiException as e:
                if e.status == 403:
                    return False
                raise
            return True

        wait_for(created, 30, what="alice (edit) may create a DeploymentEmbedding")
        annotate(alice, namespace, "by-alice", names.RUN_ANNOTATION, "go")
        assert apis.CustomObjectsApi(alice).get_namespaced_custom_object(
            G, V, namespace, P, "by-alice"
        )  # edit includes view
        done = wait_phase(bob, namespace, "by-alice", "Completed", "Failed")  # bob reads it
        assert done["status"]["phase"] == "Completed", done["status"].get("message")
        objects = apis.CustomObjectsApi(bob)
        assert [
            o["metadata"]["name"]
            for o in objects.list_namespaced_custom_object(G, V, namespace, P)["items"]
        ] == ["by-alice"]
        denied(lambda: create(bob, namespace, manifest("by-bob", ["view cannot"])))
        denied(lambda: annotate(bob, namespace, "by-alice", names.RUN_ANNOTATION, "again"))
        # edit gives no status writes (only the operator and its workers write results)
        denied(
            lambda: apis.CustomObjectsApi(alice).patch_namespaced_custom_object_status(
                G, V, namespace, P, "by-alice", {"status": {"phase": "Completed"}}
            )
        )
        # and nothing in other namespaces
        denied(lambda: create(alice, "default", manifest("elsewhere", ["x"])))
    finally:
        alice.close()
        bob.close()
