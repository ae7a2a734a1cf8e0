"""The test kubelet's own races (tests/cluster/kubelet.py), without a cluster: they made cluster
tests flaky (pod threads dying, runs ending PodNotStarted)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from urllib3.exceptions import MaxRetryError

from tests.cluster.kubelet import Kubelet, PodWorker


class _FakeCore:
    """The CoreV1Api calls a pod worker makes; the apiserver is down until ``up`` is set."""

    def __init__(self) -> None:
        self.up = False
        self.written: list[dict[str, Any]] = []

    def patch_namespaced_pod_status(self, name: str, namespace: str, body: Any, **_: Any) -> None:
        if not self.up:
            raise MaxRetryError(None, "/api/v1/...", "connection refused")  # type: ignore[arg-type]
        self.written.append(body)


def _kubelet(tmp_path: Path) -> Kubelet:
    kubelet = Kubelet.__new__(Kubelet)
    kubelet.pids_file = tmp_path / "kubelet-pods.json"
    kubelet.workers = {}
    kubelet.lock = threading.RLock()
    kubelet.run_dir = tmp_path
    kubelet.core = _FakeCore()
    return kubelet


def test_concurrent_save_pids_never_trips_over_the_shared_temporary_file(tmp_path: Path) -> None:
    kubelet = _kubelet(tmp_path)
    errors: list[BaseException] = []

    def hammer() -> None:
        try:
            for _ in range(300):
                kubelet.save_pids()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert kubelet.pids_file.read_text() == "[]"


def test_a_status_write_while_the_apiserver_is_down_is_retried_not_fatal(tmp_path: Path) -> None:
    kubelet = _kubelet(tmp_path)
    pod = {
        "metadata": {"namespace": "ns", "name": "p", "uid": "u"},
        "spec": {"containers": [{"name": "c", "image": "embedding-operator:t"}]},
    }
    worker = PodWorker(kubelet, pod)
    core: _FakeCore = kubelet.core  # type: ignore[assignment]
    assert worker.write_status("Pending") is False  # not raised: the pod thread lives on
    core.up = True
    assert worker.write_status("Pending") is True  # the same status, written once it can be
    assert [w["status"]["phase"] for w in core.written] == ["Pending"]
