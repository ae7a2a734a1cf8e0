"""Shared pytest fixtures.

Cluster tests (marker ``cluster``) get a real control plane: etcd, kube-apiserver and
kube-controller-manager built from their Go modules, plus the process kubelet (see
docs/control-plane.md). One cluster per session; a fresh namespace per test.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# E2E_CRD_DIR lets a developer try CRDs against the real apiserver before committing them.
CRD_DIR = Path(os.environ.get("E2E_CRD_DIR") or Path(__file__).resolve().parent.parent / "crds")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: needs the real control plane of tests/cluster (started once a session)"
    )
    config.addinivalue_line(
        "markers",
        "image: needs the image built from the Dockerfile (tests/image; NO_IMAGE=1 skips); "
        "also marked cluster, so the fast tier `-m 'not cluster'` never builds it",
    )
    config.addinivalue_line(
        "markers",
        "node: runs on the real node of tests/node (kubelet, containerd, runc); also cluster",
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane binaries before any cluster test runs (outside per-test timeouts:
    the first build takes minutes; later ones are a no-op)."""
    items = session.items
    node = any(i.get_closest_marker("node") for i in items)
    if node or any(
        i.get_closest_marker("cluster") and not i.get_closest_marker("image") for i in items
    ):
        from tests.cluster.harness import ensure_binaries

        ensure_binaries()
    if node or any(item.get_closest_marker("image") for item in items):
        from tests.image import runner

        if not runner.disabled():
            runner.build()
            if node:
                from tests.node.harness import ensure_node_binaries

                ensure_node_binaries()


class ClusterHandle:
    """What cluster tests get: the kubeconfig, an API client factory and the log folders."""

    def __init__(self, cluster: Any) -> None:
        self._cluster = cluster
        self.kubeconfig: Path = cluster.kubeconfig
        self.server: str = cluster.server
        self.log_dir: Path = cluster.log_dir
        self.pod_log_dir: Path = cluster.pod_log_dir

    def api_client(self) -> Any:
        """A new admin ``kubernetes.client.ApiClient``."""
        return self._cluster.api_client()

    def pod_log(self, namespace: str, pod: str, container: str) -> str:
        path = self.pod_log_dir / f"{namespace}_{pod}_{container}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterHandle]:
    from tests.cluster.harness import Cluster, ensure_binaries, pid_alive

    ensure_binaries()
    c = Cluster(state_dir=tmp_path_factory.mktemp("cluster"))
    c.start()
    started = c.started_pids()
    try:
        yield ClusterHandle(c)
    finally:
        left = c.stop()
        alive = [p for p in started if pid_alive(p)]
        assert not left and not alive, f"processes left behind: {left + alive}"


@pytest.fixture
def api(cluster: ClusterHandle) -> Iterator[Any]:
    """An admin ApiClient, closed after the test."""
    client = cluster.api_client()
    try:
        yield client
    finally:
        client.close()


def wait_for(
    check: Callable[[], Any], timeout: float = 60, interval: float = 0.25, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what or check!r} (last: {last!r})")


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api: Any) -> Iterator[str]:
    """A fresh namespace (with its `default` ServiceAccount ready), deleted after the test."""
    from kubernetes import client

    core: Any = client.CoreV1Api(api)
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"e2e": "true"}}})

    def sa_ready() -> bool:
        try:
            core.read_namespaced_service_account("default", name)
            return True
        except client.ApiException as exc:
            if exc.status != 404:
                raise
            return False

    wait_for(sa_ready, 30, what=f"ServiceAccount {name}/default")
    try:
        yield name
    finally:
        core.delete_namespace(name)


@pytest.fixture(scope="session")
def crd(cluster: ClusterHandle) -> dict[str, Any]:
    """Install the CRDs of crds/ once a session; returns the DeploymentEmbedding CRD as applied."""
    import yaml
    from kubernetes import client

    api_client = cluster.api_client()
    ext: Any = client.ApiextensionsV1Api(api_client)
    installed: dict[str, Any] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            ext.create_custom_resource_definition(doc)
            name = doc["metadata"]["name"]

            def established(name: str = name) -> bool:
                obj = ext.read_custom_resource_definition(name)
                return any(
                    c.type == "Established" and c.status == "True"
                    for c in (obj.status.conditions or [])
                )

            wait_for(established, 30, what=f"CRD {name} Established")
            installed[name] = doc
    api_client.close()
    crd_doc: dict[str, Any] = installed["deploymentembeddings.embedding-operator.dev"]
    return crd_doc
