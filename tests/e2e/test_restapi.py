"""The REST API through the real kube-apiserver's aggregation layer, installed by the chart (the
operator's Deployment and the API server's, as a user would install them), called by users that
are ServiceAccount tokens with different RBAC: viewer (view), editor (edit), runner (the chart's
runner ClusterRole only), nobody (no binding)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from embedding_operator.storage import to_lists
from tests.cluster.harness import free_port
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.rest import (
    Response,
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
from tests.e2e.test_operator import get, wait_phase
from tests.tools.fetch import ensure_tools
from tests.voyage_standin import StandIn, expected_matrix

pytestmark = pytest.mark.cluster

RELEASE = "rest"
API_SERVER = f"{RELEASE}-embedding-operator-api-server"


class Stack:
    def __init__(self, cluster: ClusterHandle, ca: Path, namespace: str) -> None:
        self.cluster = cluster
        self.ca = ca
        self.namespace = namespace

    def pod_ip(self, api: Any) -> str:
        [pod] = (
            apis.CoreV1Api(api)
            .list_namespaced_pod(
                self.namespace, label_selector="app.kubernetes.io/component=api-server"
            )
            .items
        )
        return str(pod.status.pod_ip)


@pytest.fixture(scope="module")
def stack(
    cluster: ClusterHandle, crd: dict[str, Any], standin: StandIn, tmp_path_factory: Any
) -> Iterator[Stack]:
    helm = ensure_tools()["helm"]
    api = cluster.api_client()
    apply_manifests(api)
    namespace = f"rest-{uuid.uuid4().hex[:6]}"
    values = chart_values(
        standin.base_url,
        free_port(),
        free_port(),
        crds={"install": False},
        admissionPolicy={"install": False},
        operator={"resyncSeconds": 2, "podStartTimeoutSeconds": 20},
        storage={"inlineMaxBytes": 65536, "chunkBytes": 262144},
    )
    try:
        helm_install(helm, cluster.kubeconfig, RELEASE, namespace, values)
        wait_available(api)
        yield Stack(
            cluster,
            ca_file(cluster.kubeconfig, tmp_path_factory.mktemp("ca") / "ca.crt"),
            namespace,
        )
    finally:
        helm_uninstall(helm, cluster.kubeconfig, RELEASE, namespace)
        apis.CoreV1Api(api).delete_namespace(namespace)
        api.close()


ROLES = {"viewer": "view", "editor": "edit", "runner": f"{RELEASE}-embedding-operator-runner"}


@pytest.fixture
def users(api: Any, namespace: str, stack: Stack) -> dict[str, RestClient]:
    """REST clients of four users of ``namespace``, plus ``anonymous`` (no token)."""
    clients = {}
    for user in ("viewer", "editor", "runner", "nobody"):
        token = token_for(api, namespace, user)
        if user in ROLES:
            bind(api, namespace, user, ROLES[user])
        clients[user] = RestClient(stack.cluster.server, stack.ca, namespace, token)
    clients["anonymous"] = RestClient(stack.cluster.server, stack.ca, namespace, None)
    # RBAC caches and role aggregation settle within moments
    wait_for(lambda: clients["editor"].get().status == 200, 30, what="the editor's rights")
    wait_for(lambda: clients["viewer"].get().status == 200, 30, what="the viewer's rights")
    return clients


SEED = {
    "name": "my-embedding-job",
    "inputs": ["Hello world", "How are you?"],
    "model": "voyage-3-large",
    "inputType": "document",
}


def test_discovery_lists_the_resource_and_the_apiservice_is_available(stack: Stack) -> None:
    import subprocess

    kubectl = ensure_tools()["kubectl"]
    out = subprocess.run(
        [
            str(kubectl),
            "--kubeconfig",
            str(stack.cluster.kubeconfig),
            "api-resources",
            "--api-group=api.embedding-operator.dev",
            "-o",
            "name",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "deployment-embeddings.api.embedding-operator.dev" in out.split()


def test_a_run_driven_entirely_through_rest_completes_with_the_standins_vectors(
    users: dict[str, RestClient], api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    editor = users["editor"]
    created = editor.post("/", SEED)
    assert created.status == 201, created.body
    record = created.body
    assert record["status"] == "pending" and record["inputs"] == SEED["inputs"]
    assert record["id"] == get(api, namespace, SEED["name"])["metadata"]["uid"]

    run = editor.post(f"/run/{SEED['name']}")
    assert run.status == 202, run.body
    job_id = run.body["jobId"]

    def completed() -> dict[str, Any] | None:
        got = editor.get(f"/name/{SEED['name']}")
        assert got.status == 200 and got.body["status"] != "failed", got.body
        return got.body if got.body["status"] == "completed" else None

    done = wait_for(completed, 90, what="the run completed")
    assert done["jobId"] == job_id  # the Job the run request named
    result = done["result"]
    assert result["model"] == "voyage-3-large" and result["totalTokens"] > 0
    expected = expected_matrix(SEED["inputs"], "voyage-3-large", 1024)
    np.testing.assert_array_equal(np.asarray(result["embeddings"], dtype=np.float32), expected)

    by_id = editor.get(f"/{record['id']}")
    assert by_id.status == 200 and by_id.body["result"]["embeddings"] == result["embeddings"]
    listed = editor.get("/").body
    assert [r["name"] for r in listed["items"]] == [SEED["name"]] and listed["total"] == 1
    assert "embeddings" not in listed["items"][0]["result"]  # lists stay small
    assert "embeddings" in editor.get("/", include="result").body["items"][0]["result"]
    assert editor.get("/", fields="name,status").body["items"] == [
        {"name": SEED["name"], "status": "completed"}
    ]

    again = editor.post(f"/run/{SEED['name']}")
    assert (again.status, again.body["reason"]) == (409, "Conflict")
    assert "cannot run completed jobs" in again.message

    changed = editor.put(f"/{record['id']}", {"inputs": "just one now"})
    assert changed.status == 200, changed.body
    assert get(api, namespace, SEED["name"])["spec"]["inputs"] == ["just one now"]

    gone = editor.delete(f"/{record['id']}")
    assert gone.status == 200 and gone.body["name"] == SEED["name"]
    wait_for(lambda: editor.get(f"/{record['id']}").status == 404, 30, what="deleted")


def test_a_large_chunked_result_comes_back_whole_by_name(
    users: dict[str, RestClient], api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    editor = users["editor"]
    texts = [f"document {i} about topic {i % 13}" for i in range(600)]
    body = {"name": "large", "inputs": texts, "model": "voyage-3.5", "outputDimension": 512}
    assert editor.post("/", body).status == 201
    assert editor.post("/run/large").status == 202
    done = wait_phase(api, namespace, "large", "Completed", "Failed", timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    storage = done["status"]["result"]["storage"]
    assert len(storage["names"]) > 1  # 600 x 512 x 4 bytes in 256 KiB chunks
    got = editor.get("/name/large")
    assert got.status == 200
    vectors = np.asarray(got.body["result"]["embeddings"], dtype=np.float32)
    np.testing.assert_array_equal(vectors, expected_matrix(texts, "voyage-3.5", 512))

    # a chunk altered behind the operator's back is refused, never returned as data
    core = apis.CoreV1Api(api)
    chunk = core.read_namespaced_config_map(storage["names"][0], namespace)
    raw = bytearray(base64.b64decode(chunk.binary_data["chunk"]))
    raw[0] ^= 0xFF
    core.patch_namespaced_config_map(
        storage["names"][0],
        namespace,
        {"binaryData": {"chunk": base64.b64encode(bytes(raw)).decode()}},
    )
    tampered = editor.get("/name/large")
    assert tampered.status == 500 and "digest" in tampered.message


def test_a_result_written_by_0_1_as_json_numbers_is_still_served(
    users: dict[str, RestClient], api: Any, namespace: str
) -> None:
    """0.1 kept small results in ``status.result.embeddings`` as numbers; records it finished
    before an upgrade read as before (now results are base64 in ``status.result.inline``)."""
    editor = users["editor"]
    assert editor.post("/", {**SEED, "name": "from-0-1"}).status == 201
    wait_phase(api, namespace, "from-0-1", "Pending")  # the operator has seen it
    vectors = expected_matrix(SEED["inputs"], "voyage-3-large", 1024)
    result = {"model": "voyage-3-large", "totalTokens": 7, "count": 2, "dimensions": 1024}
    legacy = {**result, "dtype": "float", "embeddings": to_lists(vectors)}
    apis.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        *("embedding-operator.dev", "v1alpha1", namespace, "deploymentembeddings", "from-0-1"),
        {"status": {"phase": "Completed", "result": legacy}},
    )
    got = editor.get("/name/from-0-1")
    assert got.status == 200 and got.body["status"] == "completed", got.body
    np.testing.assert_array_equal(np.asarray(got.body["result"]["embeddings"], "<f4"), vectors)


def test_each_user_gets_exactly_their_rights(
    users: dict[str, RestClient], api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    viewer, editor, runner, nobody = (users[u] for u in ("viewer", "editor", "runner", "nobody"))
    assert editor.post("/", {**SEED, "name": "rights"}).status == 201
    uid = get(api, namespace, "rights")["metadata"]["uid"]

    assert viewer.get("/").status == 200
    assert viewer.get("/name/rights").status == 200
    assert viewer.get(f"/{uid}").status == 200
    for denied in (
        viewer.post("/", {**SEED, "name": "nope"}),
        viewer.put(f"/{uid}", {"inputs": ["x"]}),
        viewer.delete(f"/{uid}"),
        viewer.post("/run/rights"),
        runner.get("/"),
        runner.get("/name/rights"),
        nobody.get("/"),
        nobody.post("/run/rights"),
    ):
        assert denied.status == 403, denied.body
        assert denied.body["kind"] == "Status" and denied.body["reason"] == "Forbidden"
    assert users["anonymous"].get("/").status in (401, 403)  # kube-apiserver answers itself

    run = runner.post("/run/rights")  # the runner may run, and only that
    assert run.status == 202, run.body
    wait_phase(api, namespace, "rights", "Completed", "Failed", timeout=90)


def test_the_servers_own_review_maps_paths_to_the_custom_resource(
    users: dict[str, RestClient], api: Any, namespace: str
) -> None:
    """A user kube-apiserver lets through (rights on the REST paths) but who holds no right on
    the custom resource is refused by the server's SubjectAccessReview, with its reason."""
    rbac = apis.RbacAuthorizationV1Api(api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "paths-only"},
            "rules": [
                {
                    "apiGroups": ["api.embedding-operator.dev"],
                    "resources": ["*"],
                    "verbs": ["get", "list", "create"],
                }
            ],
        },
    )
    bind(api, namespace, "nobody", "paths-only", kind="Role")
    nobody = users["nobody"]

    def past_kube_apiserver() -> Response | None:
        response = nobody.get("/")
        return response if 'resource "deploymentembeddings"' in response.message else None

    listing = wait_for(
        past_kube_apiserver,
        30,
        what="kube-apiserver letting the paths through to the server's own review",
    )
    assert listing.status == 403
    assert 'cannot list resource "deploymentembeddings" in API group "embedding-operator.dev"' in (
        listing.message
    )
    created = nobody.post("/", {**SEED, "name": "sneaky"})
    assert created.status == 403 and "cannot create" in created.message
    assert get_or_none(api, namespace, "sneaky") is None


def get_or_none(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    from kubernetes.client import ApiException

    try:
        return get(api, namespace, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "JSON"),
        ({"name": "Bad_Name", "inputs": ["a"], "model": "voyage-3.5"}, "name"),
        ({"name": "x", "inputs": [], "model": "voyage-3.5"}, "inputs"),
        ({"name": "x", "inputs": ["a"], "model": "voyage-0"}, "model"),
        (
            {"name": "x", "inputs": ["a"], "model": "voyage-3.5", "outputDimension": "1024"},
            "outputDimension",
        ),
        ({"name": "x", "inputs": ["a"], "model": "voyage-3.5", "extra": 1}, "extra"),
    ],
)
def test_bad_bodies_are_400_naming_the_field_and_nothing_is_stored(
    users: dict[str, RestClient], api: Any, namespace: str, body: Any, field: str
) -> None:
    response = users["editor"].post("/", body)
    assert response.status == 400, response.body
    assert response.body["kind"] == "Status" and field in response.message
    assert (
        apis.CustomObjectsApi(api).list_namespaced_custom_object(
            "embedding-operator.dev", "v1alpha1", namespace, "deploymentembeddings"
        )["items"]
        == []
    )


def test_errors_of_every_path(
    users: dict[str, RestClient], api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    editor = users["editor"]
    for bad in ({"limit": "0"}, {"limit": "1000000"}, {"page": "x"}, {"status": "done"}):
        response = editor.get("/", **bad)
        assert response.status == 400 and next(iter(bad)) in response.message, response.body
    assert editor.get("/", **{"continue": "garbage"}).status == 400

    for missing in (
        editor.get("/name/ghost"),
        editor.get("/00000000-0000-0000-0000-000000000000"),
        editor.put("/00000000-0000-0000-0000-000000000000", {"inputs": ["a"]}),
        editor.delete("/00000000-0000-0000-0000-000000000000"),
        editor.post("/run/ghost"),
    ):
        assert missing.status == 404 and missing.body["reason"] == "NotFound", missing.body

    assert editor.post("/", {**SEED, "name": "taken"}).status == 201
    taken = editor.post("/", {**SEED, "name": "taken"})
    assert taken.status == 409 and "already exists" in taken.message

    huge = editor.post("/", b'{"name": "huge", "inputs": ["' + b"x" * (3 * 1024 * 1024) + b'"]}')
    assert huge.status == 413, huge.body
    assert get_or_none(api, namespace, "huge") is None

    voyage.config.latency = 30.0  # keeps the run Running
    uid = get(api, namespace, "taken")["metadata"]["uid"]
    assert editor.post("/run/taken").status == 202
    wait_phase(api, namespace, "taken", "Running")
    update = editor.put(f"/{uid}", {"inputs": ["changed"]})
    assert update.status == 409 and "cannot update running jobs" in update.message
    delete = editor.delete(f"/{uid}")
    assert delete.status == 409 and "cannot delete running jobs" in delete.message
    rerun = editor.post("/run/taken")
    assert rerun.status == 409 and "running" in rerun.message
    assert get(api, namespace, "taken")["spec"]["inputs"] == SEED["inputs"]


def test_forged_remote_user_on_a_direct_connection_is_401(
    stack: Stack, users: dict[str, RestClient], api: Any
) -> None:
    """Straight to the pod, past kube-apiserver: without the front-proxy certificate the
    X-Remote-User header is never trusted; a real token still works (TokenReview)."""
    base = "/" + users["editor"].base.split("/", 3)[3]
    url = f"https://{stack.pod_ip(api)}:8443{base}"
    forged = requests.get(
        url,
        headers={"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"},
        verify=False,
        timeout=10,
    )
    assert forged.status_code == 401, forged.text
    assert forged.json()["reason"] == "Unauthorized"
    token = users["editor"].session.headers["Authorization"]
    direct = requests.get(url, headers={"Authorization": token}, verify=False, timeout=10)
    assert direct.status_code == 200, direct.text
    for health in ("livez", "readyz"):
        assert requests.get(
            f"https://{stack.pod_ip(api)}:8443/{health}", verify=False, timeout=10
        ).ok


def test_metrics_count_requests_by_route_and_code(
    stack: Stack, users: dict[str, RestClient], api: Any
) -> None:
    users["editor"].get("/name/ghost")
    text = requests.get(f"http://{stack.pod_ip(api)}:9091/metrics", timeout=10).text
    assert (
        'embedding_operator_api_requests_total{code="404",method="GET",route="/name/{name}"}'
        in text
    )
    assert "embedding_operator_api_request_duration_seconds_bucket" in text
