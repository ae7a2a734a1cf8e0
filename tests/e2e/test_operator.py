"""The operator end to end on the real control plane: a user applies resources with the Kubernetes
client, the operator (a real subprocess) creates Jobs, the process kubelet runs the worker, which
calls the Voyage stand-in and writes the status."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pytest

from embedding_operator.api import names
from embedding_operator.api.types import Result
from embedding_operator.storage import result_array
from tests.conftest import ClusterHandle, wait_for
from tests.e2e import apis
from tests.e2e.conftest import API_KEY
from tests.e2e.stack import OperatorProcess
from tests.voyage_standin import StandIn, expected_matrix

pytestmark = [pytest.mark.cluster, pytest.mark.usefixtures("operator")]

G, V, P = names.GROUP, names.VERSION, names.PLURAL


def manifest(name: str, inputs: list[str], run: str | None = "r1", **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if run:
        meta["annotations"] = {names.RUN_ANNOTATION: run}
    return {
        "apiVersion": names.API_VERSION,
        "kind": names.KIND,
        "metadata": meta,
        "spec": {"inputs": inputs, "model": "voyage-3.5", **spec},
    }


def create(api: Any, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = apis.CustomObjectsApi(api).create_namespaced_custom_object(
        G, V, ns, P, obj
    )
    return out


def get(api: Any, ns: str, name: str) -> dict[str, Any]:
    out: dict[str, Any] = apis.CustomObjectsApi(api).get_namespaced_custom_object(G, V, ns, P, name)
    return out


def patch(api: Any, ns: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = apis.CustomObjectsApi(api).patch_namespaced_custom_object(
        G, V, ns, P, name, body
    )
    return out


def annotate(api: Any, ns: str, name: str, key: str, value: str) -> None:
    patch(api, ns, name, {"metadata": {"annotations": {key: value}}})


def wait_phase(api: Any, ns: str, name: str, *phases: str, timeout: float = 90) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        obj = get(api, ns, name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    found: dict[str, Any] = wait_for(check, timeout, what=f"{name} in {phases}")
    return found


def reason(obj: dict[str, Any], type_: str = "Succeeded") -> str:
    return next(c["reason"] for c in obj["status"]["conditions"] if c["type"] == type_)


def events(api: Any, ns: str, name: str) -> list[Any]:
    items = (
        apis.CoreV1Api(api)
        .list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
        .items
    )
    return list(items)


def jobs(api: Any, ns: str, name: str) -> list[Any]:
    selector = f"{names.OWNER_LABEL}={name}"
    return list(apis.BatchV1Api(api).list_namespaced_job(ns, label_selector=selector).items)


def test_small_run_completes_with_the_standins_vectors_inline(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    texts = [f"sentence number {i}" for i in range(12)]
    create(api, namespace, manifest("small", texts, outputDimension=256))
    done = wait_phase(api, namespace, "small", "Completed", "Failed")
    status = done["status"]
    assert status["phase"] == "Completed", status.get("message")
    assert reason(done) == "Completed"
    assert status["observedGeneration"] == done["metadata"]["generation"]
    assert status["lastHandledRunRequest"] == "r1"
    assert status["inputCount"] == 12
    result = status["result"]
    assert (result["count"], result["dimensions"], result["dtype"]) == (12, 256, "float")
    assert result["inline"]["encoding"] == "float32-le" and "embeddings" not in result
    # the kubectl recipe of docs/api.md: base64 of little-endian float32, count x dimensions
    got = np.frombuffer(base64.b64decode(result["inline"]["data"]), "<f4").reshape(12, 256)
    np.testing.assert_array_equal(got, expected_matrix(texts, "voyage-3.5", 256))
    assert result["totalTokens"] == voyage.stats.tokens > 0
    assert status["stats"]["requests"] >= 1
    assert len(jobs(api, namespace, "small")) == 1
    reasons = {e.reason for e in events(api, namespace, "small")}
    assert {"Accepted", "Completed"} <= reasons
    annotations = done["metadata"].get("annotations") or {}
    assert not any(k.startswith("kopf.") for k in annotations), annotations
    assert not done["metadata"].get("finalizers")


def _scrape(port: int, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return str(response.read().decode())


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_operator_serves_liveness_and_run_metrics(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn, operator: OperatorProcess
) -> None:
    # kopf answers 200 with the JSON of its probes; urlopen raises on anything else
    assert isinstance(json.loads(_scrape(operator.liveness_port, "/healthz")), dict)
    before = _scrape(operator.metrics_port, "/metrics")
    runs = _sample(before, "embedding_operator_runs_total", outcome="Completed")
    requests = _sample(before, "embedding_operator_voyage_requests_total", model="voyage-3.5")
    create(api, namespace, manifest("measured", ["one", "two", "three"]))
    wait_phase(api, namespace, "measured", "Completed")

    def counted() -> str | None:
        text = _scrape(operator.metrics_port, "/metrics")
        done = _sample(text, "embedding_operator_runs_total", outcome="Completed") > runs
        return text if done else None

    after = wait_for(counted, 30, what="the run counted")
    assert _sample(after, "embedding_operator_voyage_requests_total", model="voyage-3.5") > requests
    assert _sample(after, "embedding_operator_tokens_total", model="voyage-3.5") > 0
    assert _sample(after, "embedding_operator_run_duration_seconds_count") >= 1


def test_large_run_is_reassembled_from_owned_chunks(
    api: Any, cluster: ClusterHandle, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    from embedding_operator.kube import Kube
    from embedding_operator.storage.configmaps import labels, load_result

    # a chunk left by an earlier run that crashed: swept once this run's result is recorded
    stale = {
        "metadata": {"name": "large-result-stale", "labels": labels("large", "old-run")},
        "binaryData": {"chunk": "AAAA"},
    }
    apis.CoreV1Api(api).create_namespaced_config_map(namespace, stale)
    texts = [f"document {i} about topic {i % 17}" for i in range(1500)]
    create(api, namespace, manifest("large", texts, outputDimension=512))
    done = wait_phase(api, namespace, "large", "Completed", "Failed", timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    result = Result.model_validate(done["status"]["result"])
    assert result.inline is None and result.storage is not None
    assert len(result.storage.names) > 1  # 1500 x 512 x 4 bytes in 256 KiB chunks
    assert result.storage.size == 1500 * 512 * 4
    owned = apis.CoreV1Api(api).read_namespaced_config_map(result.storage.names[0], namespace)
    assert owned.metadata.owner_references[0].uid == done["metadata"]["uid"]
    vectors = load_result(
        Kube.from_environment("e2e", kubeconfig=str(cluster.kubeconfig)), namespace, result
    )  # verifies the sha256 digest
    np.testing.assert_array_equal(vectors, expected_matrix(texts, "voyage-3.5", 512))
    remaining = {
        cm.metadata.name
        for cm in apis.CoreV1Api(api).list_namespaced_config_map(namespace).items
        if cm.metadata.name.startswith("large-result")
    }
    assert remaining == set(result.storage.names)


def test_spec_near_the_size_limit_runs(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    texts = [f"{i:05d} " + "lorem ipsum dolor sit amet " * 596 for i in range(62)]
    assert 990_000 < sum(map(len, texts)) <= 1_000_000
    create(api, namespace, manifest("near-limit", texts, model="voyage-3.5-lite"))
    done = wait_phase(api, namespace, "near-limit", "Completed", "Failed", timeout=120)
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    assert done["status"]["result"]["count"] == 62
    assert not any(k.startswith("kopf.") for k in done["metadata"].get("annotations") or {})


def test_unchanged_completed_resource_refuses_a_rerun_and_a_spec_change_reruns(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    create(api, namespace, manifest("rerun", ["first input"]))
    first = wait_phase(api, namespace, "rerun", "Completed")
    annotate(api, namespace, "rerun", names.RUN_ANNOTATION, "r2")

    def refused() -> dict[str, Any] | None:
        obj = get(api, namespace, "rerun")
        return obj if obj["status"].get("lastHandledRunRequest") == "r2" else None

    obj = wait_for(refused, 30, what="the refusal of r2")
    assert obj["status"]["phase"] == "Completed"
    assert reason(obj, "RunRequest") == "CompletedAndUnchanged"
    assert obj["status"]["result"] == first["status"]["result"]
    assert len(jobs(api, namespace, "rerun")) == 1
    refusal = [e for e in events(api, namespace, "rerun") if e.reason == "CompletedAndUnchanged"]
    assert refusal and "cannot run completed jobs" in refusal[0].message

    patch(api, namespace, "rerun", {"spec": {"inputs": ["second input", "third input"]}})
    pending = wait_phase(api, namespace, "rerun", "Pending")
    assert "result" not in pending["status"]
    assert reason(pending) == "SpecChanged"
    annotate(api, namespace, "rerun", names.RUN_ANNOTATION, "r3")
    second = wait_phase(api, namespace, "rerun", "Completed")
    got = result_array(Result.model_validate(second["status"]["result"]))
    expected = expected_matrix(["second input", "third input"], "voyage-3.5", 1024)
    np.testing.assert_array_equal(got, expected)
    assert second["status"]["observedGeneration"] == 2
    assert len(jobs(api, namespace, "rerun")) == 2


def test_running_resource_refuses_updates_and_deletion_until_cancelled(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    from kubernetes.client import ApiException

    voyage.config.latency = 30.0  # keeps the run Running
    create(api, namespace, manifest("busy", ["slow input"]))
    running = wait_phase(api, namespace, "busy", "Running")
    job = running["status"]["jobName"]

    with pytest.raises(ApiException) as update:
        patch(api, namespace, "busy", {"spec": {"inputs": ["changed"]}})
    assert update.value.status == 422
    assert "spec cannot change while the run is Running" in update.value.body

    with pytest.raises(ApiException) as delete:
        apis.CustomObjectsApi(api).delete_namespaced_custom_object(G, V, namespace, P, "busy")
    assert delete.value.status == 403
    assert "is Running and cannot be deleted" in delete.value.body

    annotate(api, namespace, "busy", names.RUN_ANNOTATION, "r2")  # ignored while Running
    obj = wait_for(
        lambda: (
            (o := get(api, namespace, "busy"))["status"].get("lastHandledRunRequest") == "r2" and o
        ),
        30,
        what="r2 handled",
    )
    assert reason(obj, "RunRequest") == "IgnoredWhileRunning"
    assert obj["status"]["jobName"] == job

    annotate(api, namespace, "busy", names.CANCEL_ANNOTATION, "stop")
    cancelled = wait_phase(api, namespace, "busy", "Failed")
    assert reason(cancelled) == "Cancelled"
    wait_for(lambda: not jobs(api, namespace, "busy"), 30, what="the Job deleted")
    apis.CustomObjectsApi(api).delete_namespaced_custom_object(G, V, namespace, P, "busy")


def _wait_failed(api: Any, ns: str, name: str, timeout: float = 90) -> dict[str, Any]:
    failed = wait_phase(api, ns, name, "Failed", "Completed", timeout=timeout)
    assert failed["status"]["phase"] == "Failed"
    return failed


def test_job_out_of_retries_fails_with_the_workers_last_error(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    voyage.config.faults = ("503",)
    voyage.config.fault_rate = 1.0
    try:
        create(api, namespace, manifest("flaky", ["x"], job={"backoffLimit": 1}))
        failed = _wait_failed(api, namespace, "flaky", timeout=120)
    finally:
        voyage.config.faults = ("500", "503", "hang", "drop")
    assert reason(failed) == "BackoffLimitExceeded"
    assert "503" in failed["status"]["message"]
    [job] = jobs(api, namespace, "flaky")
    assert job.status.failed == 2  # the first pod and one retry


def test_run_past_its_deadline_fails(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    voyage.config.latency = 60.0
    create(api, namespace, manifest("slow", ["x"], job={"activeDeadlineSeconds": 30}))
    failed = _wait_failed(api, namespace, "slow", timeout=90)
    assert reason(failed) == "DeadlineExceeded"


@pytest.mark.parametrize(
    ("secret", "expected"),
    [(None, "SecretNotFound"), ({"other-key": "dmFsdWU="}, "SecretKeyNotFound")],
    ids=["missing", "no-key"],
)
def test_missing_secret_or_key_is_said_at_once_then_fails_the_run(
    api: Any, namespace: str, voyage: StandIn, secret: dict[str, str] | None, expected: str
) -> None:
    if secret is not None:
        apis.CoreV1Api(api).create_namespaced_secret(
            namespace, {"metadata": {"name": "voyage-api-key"}, "data": secret}
        )
    create(api, namespace, manifest("nokey", ["x"]))
    failed = _wait_failed(api, namespace, "nokey", timeout=60)
    assert reason(failed) == expected
    # said while the run was still Running, as soon as the kubelet knew, not only at the end
    said = [e.message for e in events(api, namespace, "nokey") if e.reason == expected]
    assert any("is waiting" in m and "voyage-api-key" in m for m in said), said
    assert "voyage-api-key" in failed["status"]["message"]
    wait_for(lambda: not jobs(api, namespace, "nokey"), 30, what="the stuck Job deleted")


def test_job_deleted_by_someone_else_fails_the_run(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    voyage.config.latency = 30.0
    create(api, namespace, manifest("orphan", ["x"]))
    running = wait_phase(api, namespace, "orphan", "Running")
    apis.BatchV1Api(api).delete_namespaced_job(
        running["status"]["jobName"], namespace, propagation_policy="Background"
    )
    failed = _wait_failed(api, namespace, "orphan", timeout=60)
    assert reason(failed) == "JobDeleted"


def test_worker_killed_without_writing_status_fails_the_run(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn
) -> None:
    import os
    import signal
    import subprocess

    voyage.config.latency = 30.0
    create(api, namespace, manifest("killed", ["x"], job={"backoffLimit": 0}))
    running = wait_phase(api, namespace, "killed", "Running")
    job = running["status"]["jobName"]

    def worker_pid() -> int | None:
        out = subprocess.run(
            ["pgrep", "-f", f"[-]-job {job}"], capture_output=True, text=True, check=False
        )
        pids = [int(p) for p in out.stdout.split()]
        return pids[0] if pids else None

    os.kill(wait_for(worker_pid, 30, what="the worker process"), signal.SIGKILL)
    failed = _wait_failed(api, namespace, "killed", timeout=60)
    assert reason(failed) == "BackoffLimitExceeded"


def test_bad_api_key_fails_at_once_and_the_key_leaks_nowhere(
    cluster: Any, api: Any, namespace: str, voyage: StandIn, operator: OperatorProcess
) -> None:
    wrong = "pa-wrong-key-which-must-stay-secret-42"
    apis.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {"metadata": {"name": "creds"}, "stringData": {"token": wrong}},
    )
    create(
        api, namespace, manifest("badkey", ["x"], apiKeySecretRef={"name": "creds", "key": "token"})
    )
    failed = _wait_failed(api, namespace, "badkey")
    assert reason(failed) == "VoyageError"
    assert "401" in failed["status"]["message"] or "API key" in failed["status"]["message"]
    [job] = wait_for(
        lambda: [j for j in jobs(api, namespace, "badkey") if j.status.failed],
        30,
        what="the Job failed",
    )
    assert job.status.failed == 1  # podFailurePolicy: no retry for a permanent error
    assert voyage.stats.requests == 1

    everything = json.dumps(get(api, namespace, "badkey")) + json.dumps(
        [e.to_dict() for e in events(api, namespace, "badkey")], default=str
    )
    logs = operator.log() + "".join(
        p.read_text(errors="replace") for p in cluster.pod_log_dir.glob(f"{namespace}_*")
    )
    for secret in (wrong, API_KEY):
        assert secret not in everything
        assert secret not in logs


def test_operator_killed_mid_run_converges_with_one_job_per_request(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn, operator: OperatorProcess
) -> None:
    from embedding_operator.api.names import job_name

    voyage.config.latency = 3.0
    try:
        # killed before it saw the resource: the run starts when it is back
        operator.kill()
        created = create(api, namespace, manifest("restart", ["a", "b"]))
        operator.start()
        running = wait_phase(api, namespace, "restart", "Running")
        assert running["status"]["jobName"] == job_name(
            "restart", created["metadata"]["uid"], "r1", 1
        )
        # killed mid-run: the worker finishes on its own, the operator catches up
        operator.kill()
        operator.start()
        done = wait_phase(api, namespace, "restart", "Completed", "Failed", timeout=60)
        assert done["status"]["phase"] == "Completed", done["status"].get("message")
        assert [j.metadata.name for j in jobs(api, namespace, "restart")] == [
            running["status"]["jobName"]
        ]
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()


def test_job_created_but_not_recorded_is_adopted_not_duplicated(
    api: Any, namespace: str, api_key_secret: str, voyage: StandIn, operator: OperatorProcess
) -> None:
    """The operator crashed after creating a run's Job and before recording it in the status."""
    from kubernetes import utils

    from embedding_operator.controller.objects import build_job, build_worker_rbac
    from embedding_operator.controller.settings import Settings

    settings = Settings.from_env(operator.env)
    operator.kill()
    try:
        created = create(api, namespace, manifest("adopt", ["a", "b", "c"]))
        role = apis.RbacAuthorizationV1Api(api).read_cluster_role(settings.worker_cluster_role)
        owner = {"metadata": {"name": role.metadata.name, "uid": role.metadata.uid}}
        rbac = build_worker_rbac(namespace, settings, owner)
        for obj in [*rbac, build_job(created, "r1", 1, settings)]:
            utils.create_from_dict(api, obj, namespace=namespace)
        # the worker starts and waits for its run to be recorded; the operator comes back
        operator.start()
        done = wait_phase(api, namespace, "adopt", "Completed", "Failed", timeout=60)
    finally:
        if operator.proc is None or operator.proc.poll() is not None:
            operator.start()
    assert done["status"]["phase"] == "Completed", done["status"].get("message")
    [job] = wait_for(
        lambda: [j for j in jobs(api, namespace, "adopt") if j.status.succeeded],
        30,
        what="the adopted Job succeeded",
    )
    assert job.metadata.name == done["status"]["jobName"]
    assert len(jobs(api, namespace, "adopt")) == 1
