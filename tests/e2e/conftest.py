"""Fixtures for the operator's end-to-end tests: the Voyage stand-in, the admission policy, and
the operator itself as a subprocess (one per test module that asks for it, watching every
namespace; modules that test the bare control plane run without it)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ClusterHandle
from tests.e2e import apis
from tests.e2e.stack import OperatorProcess, apply_manifests, install_chart_rbac
from tests.voyage_standin import StandIn, StandInConfig

API_KEY = "pa-e2e-secret-key-0123456789"
"""The stand-in's key: the tests assert it never leaks into a status, Event or log."""

OPERATOR_ENV = {
    "EMBEDDING_OPERATOR_IMAGE": "embedding-operator:e2e",
    "EMBEDDING_OPERATOR_WORKER_CLUSTER_ROLE": "e2e-embedding-operator-worker",
    "EMBEDDING_OPERATOR_RESYNC_SECONDS": "2",
    "EMBEDDING_OPERATOR_POD_START_TIMEOUT_SECONDS": "6",
    # small chunks, so a moderately large result exercises several ConfigMaps
    "EMBEDDING_OPERATOR_INLINE_MAX_BYTES": "65536",
    "EMBEDDING_OPERATOR_CHUNK_BYTES": "262144",
    "VOYAGE_MAX_ATTEMPTS": "3",
    "VOYAGE_MAX_RETRY_SECONDS": "5",
}


GUARD_VALUES = ("image.repository=embedding-operator", "image.tag=e2e")
"""The chart values that make its operator guard admit the e2e operator's Jobs (its image)."""


@pytest.fixture(scope="session")
def standin() -> Iterator[StandIn]:
    with StandIn(StandInConfig(api_key=API_KEY)) as server:
        yield server


@pytest.fixture
def voyage(standin: StandIn) -> Iterator[StandIn]:
    """The stand-in, reset to good behaviour before and after the test."""
    standin.config.fault_rate = 0.0
    standin.config.latency = 0.0
    standin.reset()
    yield standin
    standin.config.fault_rate = 0.0
    standin.config.latency = 0.0


def operator_kubeconfig(cluster: ClusterHandle, standin: StandIn) -> Path:
    """The CRD and admission policy, the chart's RBAC and guard for the stand-in, and a
    kubeconfig of the chart's operator ServiceAccount."""
    from tests.tools.fetch import ensure_tools

    api = cluster.api_client()
    try:
        apply_manifests(api)
        return install_chart_rbac(
            api,
            ensure_tools()["helm"],
            cluster.kubeconfig,
            cluster.log_dir / "operator.kubeconfig",
            *GUARD_VALUES,
            f"voyage.baseURL={standin.base_url}",
        )
    finally:
        api.close()


@pytest.fixture(scope="module")
def operator(
    cluster: ClusterHandle, crd: dict[str, Any], standin: StandIn
) -> Iterator[OperatorProcess]:
    from tests.cluster.harness import free_port

    kubeconfig = operator_kubeconfig(cluster, standin)
    proc = OperatorProcess(
        kubeconfig,
        cluster.log_dir / "operator.log",
        {**OPERATOR_ENV, "VOYAGE_BASE_URL": standin.base_url},
        metrics_port=free_port(),
        liveness_port=free_port(),
    ).start()
    proc.wait_ready()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def api_key_secret(api: Any, namespace: str) -> str:
    """The default Secret (``voyage-api-key``/``api-key``) holding the stand-in's key."""
    apis.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "voyage-api-key"},
            "data": {"api-key": base64.b64encode(API_KEY.encode()).decode()},
        },
    )
    return API_KEY
