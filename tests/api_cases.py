"""Invalid DeploymentEmbedding objects, each with the field its refusal must name.

Shared by the unit tests (pydantic, the CRD's schema and its CEL rules evaluated in Python) and
the cluster tests (the same objects sent to a real kube-apiserver).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CRD_PATH = ROOT / "crds" / "embedding-operator.dev_deploymentembeddings.yaml"
POLICY_PATH = ROOT / "crds" / "embedding-operator.dev_admission-policy.yaml"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def valid(name: str = "ok", **spec: Any) -> dict[str, Any]:
    """A small valid object; keyword arguments override spec fields (None removes one)."""
    body: dict[str, Any] = {"inputs": ["hello", "world"], "model": "voyage-3.5"}
    for key, value in spec.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return {
        "apiVersion": "embedding-operator.dev/v1alpha1",
        "kind": "DeploymentEmbedding",
        "metadata": {"name": name},
        "spec": body,
    }


@dataclass(frozen=True)
class Case:
    id: str
    obj: dict[str, Any]
    field: str
    """A word the refusal must contain: the field (or the rule's subject) at fault."""


def _without(obj: dict[str, Any], key: str) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    del out[key]
    return out


INVALID: list[Case] = [
    Case("inputs-missing", valid(inputs=None), "inputs"),
    Case("inputs-empty", valid(inputs=[]), "inputs"),
    Case("inputs-not-a-list", valid(inputs="just one string"), "inputs"),
    Case("input-not-a-string", valid(inputs=["a", 5]), "inputs"),
    Case("input-empty-string", valid(inputs=["a", ""]), "inputs"),
    Case("input-too-long", valid(inputs=["x" * 16_385]), "inputs"),
    Case("too-many-inputs", valid(inputs=["x"] * 10_001), "inputs"),
    Case("inputs-too-large-in-all", valid(inputs=["y" * 16_000] * 63), "inputs"),
    Case("model-missing", valid(model=None), "model"),
    Case("model-unknown", valid(model="voyage-5-ultra"), "model"),
    Case("model-not-a-string", valid(model=3), "model"),
    Case("input-type-unknown", valid(inputType="passage"), "inputType"),
    Case("dimension-not-an-integer", valid(outputDimension="1024"), "outputDimension"),
    Case("dimension-zero", valid(outputDimension=0), "outputDimension"),
    Case("dimension-not-offered", valid(model="voyage-4", outputDimension=768), "outputDimension"),
    Case(
        "dimension-fixed-model", valid(model="voyage-law-2", outputDimension=512), "outputDimension"
    ),
    Case("dtype-unknown", valid(outputDtype="float16"), "outputDtype"),
    Case("dtype-not-offered", valid(model="voyage-finance-2", outputDtype="int8"), "outputDtype"),
    Case("truncation-not-a-bool", valid(truncation="yes"), "truncation"),
    Case("secret-ref-without-key", valid(apiKeySecretRef={"name": "voyage"}), "key"),
    Case("secret-ref-bad-name", valid(apiKeySecretRef={"name": "Bad_Name", "key": "k"}), "name"),
    Case("unknown-spec-field", valid(batchSize=64), "batchSize"),
    Case("unknown-nested-field", valid(rateLimits={"rpm": 10}), "rpm"),
    Case("concurrency-zero", valid(rateLimits={"maxConcurrency": 0}), "maxConcurrency"),
    Case("concurrency-huge", valid(rateLimits={"maxConcurrency": 1000}), "maxConcurrency"),
    Case("backoff-negative", valid(job={"backoffLimit": -1}), "backoffLimit"),
    Case("deadline-too-short", valid(job={"activeDeadlineSeconds": 5}), "activeDeadlineSeconds"),
    Case("resources-not-quantity", valid(job={"resources": {"limits": {"cpu": [1]}}}), "cpu"),
    *(
        Case(f"resources-{where}-{value}", valid(job={"resources": {where: {what: value}}}), what)
        for where, what, value in [
            ("requests", "memory", "lots"),
            ("limits", "memory", "1Gibberish"),
            ("requests", "cpu", "0.5.5"),
            ("limits", "cpu", "-1"),
        ]
    ),
    Case("resources-unknown-name", valid(job={"resources": {"requests": {"gpu": "1"}}}), "gpu"),
    Case(
        "resources-cpu-request-over-limit",
        valid(job={"resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1500m"}}}),
        "requests.cpu",
    ),
    Case(
        "resources-memory-request-over-limit",
        valid(job={"resources": {"requests": {"memory": "1025Mi"}, "limits": {"memory": "1Gi"}}}),
        "requests.memory",
    ),
    Case("name-uppercase", valid(name="Hello"), "metadata.name"),
    Case("name-too-long", valid(name="a" * 64), "metadata.name"),
    Case("name-with-dot", valid(name="my.embedding"), "metadata.name"),
    Case("spec-missing", _without(valid(), "spec"), "spec"),
]


def load_examples() -> list[dict[str, Any]]:
    """Every DeploymentEmbedding in examples/ (other kinds, e.g. Secrets, are skipped)."""
    objs = []
    for path in EXAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "DeploymentEmbedding":
                objs.append(doc)
    return objs


def crd() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return loaded
