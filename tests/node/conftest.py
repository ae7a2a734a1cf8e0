"""Fixtures of the real-node tier: one control plane with a real node (kubelet, containerd,
runc, CNI bridge) per session, and the Voyage stand-in the pods reach through the node's
gateway. Skipped only when NO_IMAGE=1 disables the image build explicitly."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.cluster.harness import pid_alive
from tests.image import runner
from tests.voyage_standin import StandIn, StandInConfig

API_KEY = "pa-node-secret-key-0123456789"


@pytest.fixture(scope="session")
def node_standin() -> Iterator[StandIn]:
    with StandIn(StandInConfig(api_key=API_KEY)) as server:
        yield server


@pytest.fixture(scope="session")
def real_node(tmp_path_factory: pytest.TempPathFactory, node_standin: StandIn) -> Iterator[Any]:
    if runner.disabled():
        pytest.skip(f"{runner.DISABLE_ENV}=1: the image build was disabled explicitly")
    from tests.node.harness import RealNodeCluster

    port = node_standin.httpd.server_address[1]
    node = RealNodeCluster(
        state_dir=tmp_path_factory.mktemp("node"), image=runner.build().name, forwards={port: port}
    )
    node.start(timeout=300)
    started = node.started_pids()
    try:
        yield node
    finally:
        left = node.stop()
        alive = [p for p in started if pid_alive(p)]
        assert not left and not alive, f"processes left behind: {left + alive}"
        assert not node.leftovers(), node.leftovers()


@pytest.fixture
def node_api(real_node: Any) -> Iterator[Any]:
    client = real_node.api_client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def node_namespace(request: pytest.FixtureRequest, node_api: Any) -> Iterator[str]:
    """A fresh namespace with its `default` ServiceAccount and the stand-in's key Secret."""
    from tests.conftest import wait_for
    from tests.e2e import apis

    core: Any = apis.CoreV1Api(node_api)
    name = f"node-{request.node.name[:30].replace('_', '-').lower().strip('-')}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(lambda: core.list_namespaced_service_account(name).items, 30, what="default SA")
    try:
        yield name
    finally:
        core.delete_namespace(name)


def key_secret(api: Any, namespace: str) -> None:
    from tests.e2e import apis

    apis.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "voyage-api-key"},
            "data": {"api-key": base64.b64encode(API_KEY.encode()).decode()},
        },
    )
