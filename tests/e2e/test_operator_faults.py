"""The operator itself behind a misbehaving API (tests/fault_proxy.py in front of the real
kube-apiserver): a call that never answers must not wedge a resource, and bursts of 500s must not
lose a run. Its own module, so the other modules' operator is not running beside this one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from embedding_operator.controller.watches import OWNED
from tests.conftest import ClusterHandle
from tests.e2e.stack import OperatorProcess, apply_manifests, install_chart_rbac
from tests.e2e.test_operator import create, manifest, wait_phase
from tests.fault_proxy import FaultProxy, for_cluster
from tests.voyage_standin import StandIn

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def proxy(cluster: ClusterHandle) -> Iterator[FaultProxy]:
    with for_cluster(str(cluster.kubeconfig)) as p:
        yield p


@pytest.fixture(scope="module")
def operator_via_proxy(
    cluster: ClusterHandle, crd: dict[str, Any], standin: StandIn, proxy: FaultProxy
) -> Iterator[OperatorProcess]:
    """An operator with the chart's rights whose every API call crosses the proxy."""
    from tests.cluster.harness import free_port
    from tests.e2e.conftest import GUARD_VALUES, OPERATOR_ENV
    from tests.tools.fetch import ensure_tools

    api = cluster.api_client()
    apply_manifests(api)
    direct = install_chart_rbac(
        api,
        ensure_tools()["helm"],
        cluster.kubeconfig,
        cluster.log_dir / "operator.kubeconfig",
        *GUARD_VALUES,  # the guard admits the e2e image's Jobs only when told it
        f"voyage.baseURL={standin.base_url}",
    )
    api.close()
    config = yaml.safe_load(direct.read_text())
    for entry in config["clusters"]:
        entry["cluster"] = {"server": proxy.url}
    via = cluster.log_dir / "operator-via-proxy.kubeconfig"
    via.write_text(yaml.safe_dump(config))
    via.chmod(0o600)
    proc = OperatorProcess(
        via,
        cluster.log_dir / "operator-via-proxy.log",
        {**OPERATOR_ENV, "VOYAGE_BASE_URL": standin.base_url},
        metrics_port=free_port(),
        liveness_port=free_port(),
    ).start()
    proc.wait_ready()
    try:
        yield proc
    finally:
        proc.stop()


def test_a_hung_call_does_not_wedge_the_resource_nor_the_others(
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    proxy: FaultProxy,
    operator_via_proxy: OperatorProcess,
) -> None:
    # the operator's status writes of this one resource are accepted and never answered, twice
    # (its reads come from the watches: writes are its calls that can hang)
    hung = f"/namespaces/{namespace}/deploymentembeddings/hung/status"
    proxy.fail("PATCH", hung, "hang", times=2)
    create(api, namespace, manifest("hung", ["a"]))
    create(api, namespace, manifest("other", ["b"]))
    other = wait_phase(api, namespace, "other", "Completed", "Failed", timeout=90)
    assert other["status"]["phase"] == "Completed", other["status"].get("message")
    done = wait_phase(api, namespace, "hung", "Completed", "Failed", timeout=150)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    assert proxy.count("PATCH", hung, "hang") == 2
    proxy.heal()
    # the Job and pod watches ask the apiserver for the operator's own objects only
    owned = f"labelSelector={OWNED}"
    for plural in ("/jobs?", "/pods?"):
        watches = [
            unquote(p) for m, p, _ in proxy.seen if m == "GET" and plural in p and "watch" in p
        ]
        assert watches and all(owned in p for p in watches), watches


def test_bursts_of_500s_on_every_write_do_not_lose_the_run(
    api: Any,
    namespace: str,
    api_key_secret: str,
    voyage: StandIn,
    proxy: FaultProxy,
    operator_via_proxy: OperatorProcess,
) -> None:
    proxy.fail("POST", f"/namespaces/{namespace}/jobs", "500", times=4)
    proxy.fail("PATCH", f"/namespaces/{namespace}/deploymentembeddings", "503", times=4)
    create(api, namespace, manifest("bursty", ["a", "b"]))
    done = wait_phase(api, namespace, "bursty", "Completed", "Failed", timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    assert proxy.count("POST", f"/namespaces/{namespace}/jobs", "500") == 4
    assert proxy.count("POST", f"/namespaces/{namespace}/jobs", "forwarded") == 1
    proxy.heal()
