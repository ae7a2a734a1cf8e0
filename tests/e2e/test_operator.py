"""The operator end to end on the real control plane: a user applies resources with the Kubernetes
client, the operator (a real subprocess) creates Jobs, the process kubelet runs the worker, which
calls the Voyage stand-in and writes the status."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from embedding_operator.api import names
from tests.conftest import wait_for
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
    got = np.array(result["embeddings"], dtype=np.float32)
    np.testing.assert_array_equal(got, expected_matrix(texts, "voyage-3.5", 256))
    assert result["totalTokens"] == voyage.stats.tokens > 0
    assert status["stats"]["requests"] >= 1
    assert len(jobs(api, namespace, "small")) == 1
    reasons = {e.reason for e in events(api, namespace, "small")}
    assert {"Accepted", "Completed"} <= reasons
    annotations = done["metadata"].get("annotations") or {}
    assert not any(k.startswith("kopf.") for k in annotations), annotations
    assert not done["metadata"].get("finalizers")
