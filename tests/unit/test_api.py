"""The DeploymentEmbedding API: pydantic models, the generated CRD and its validation rules."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from embedding_operator.api import MODELS, DeploymentEmbedding, get_model, names
from embedding_operator.api.crd import build_crd, render_crd
from tests.api_cases import CRD_PATH, INVALID, POLICY_PATH, Case, load_examples, valid
from tests.unit.crd_emulation import refusals


def test_committed_crd_is_the_generated_one() -> None:
    assert CRD_PATH.read_text() == render_crd(), "crds/ drifted from the types: run `make crds`"


def test_committed_admission_policy_is_the_generated_one() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "embedding_operator", "crd", "--admission-policy"],
        capture_output=True,
        check=True,
    )
    assert out.stdout == POLICY_PATH.read_bytes(), "run `make crds`"


def test_cli_prints_the_committed_crd() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "embedding_operator", "crd"], capture_output=True, check=True
    )
    assert out.stdout == CRD_PATH.read_bytes()


def test_crd_passes_kubernetes_validate_strict() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(CRD_PATH), str(POLICY_PATH)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("passed") == 3, out.stdout


def test_crd_shape() -> None:
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    assert crd["metadata"]["name"] == "deploymentembeddings.embedding-operator.dev"
    assert crd["spec"]["names"]["shortNames"] == ["demb"]
    assert version["subresources"] == {"status": {}}
    assert {"jsonPath": ".status.phase"} in version["selectableFields"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Phase"] == ".status.phase"
    assert columns["Model"] == ".spec.model"
    assert columns["Inputs"] == ".status.inputCount"
    assert columns["Tokens"] == ".status.result.totalTokens"
    assert columns["Age"] == ".metadata.creationTimestamp"
    schema = version["schema"]["openAPIV3Schema"]
    assert "$ref" not in str(schema) and "anyOf" not in str(schema)
    inputs = schema["properties"]["spec"]["properties"]["inputs"]
    assert (inputs["maxItems"], inputs["items"]["maxLength"]) == (10_000, 16_384)
    assert schema["properties"]["spec"]["properties"]["model"]["enum"] == list(MODELS)


@pytest.mark.parametrize("obj", load_examples(), ids=lambda o: o["metadata"]["name"])
def test_examples_are_accepted(obj: dict[str, object]) -> None:
    DeploymentEmbedding.model_validate(obj)
    assert refusals(obj) == []


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_object_is_refused_by_the_models(case: Case) -> None:
    with pytest.raises(ValidationError) as refused:
        DeploymentEmbedding.model_validate(case.obj)
    assert case.field in str(refused.value)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_object_is_refused_by_the_crd(case: Case) -> None:
    errors = refusals(case.obj)
    assert errors, "the CRD accepted an invalid object"
    assert any(case.field in e for e in errors), errors


@pytest.mark.parametrize("model", list(MODELS))
def test_every_model_accepts_its_own_dimensions_and_dtypes(model: str) -> None:
    info = get_model(model)
    for dimension in info.dimensions:
        for dtype in info.dtypes:
            obj = valid(model=model, outputDimension=dimension, outputDtype=dtype)
            DeploymentEmbedding.model_validate(obj)
            assert refusals(obj) == [], (model, dimension, dtype)


def test_cel_message_matches_the_models_message() -> None:
    obj = valid(model="voyage-law-2", outputDimension=512)
    [cel] = refusals(obj)
    assert cel == "spec.outputDimension: 512 is not supported by voyage-law-2; use one of 1024"
    with pytest.raises(ValidationError) as refused:
        DeploymentEmbedding.model_validate(obj)
    assert cel in str(refused.value)


def _with_phase(obj: dict[str, object], phase: str) -> dict[str, object]:
    out = copy.deepcopy(obj)
    out["status"] = {"phase": phase}
    return out


def test_spec_change_is_refused_while_running() -> None:
    old = _with_phase(valid(), "Running")
    new = _with_phase(valid(inputs=["changed"]), "Running")
    [error] = refusals(new, old=old)
    assert "spec cannot change while the run is Running" in error
    assert names.CANCEL_ANNOTATION in error


@pytest.mark.parametrize("phase", ["Pending", "Completed", "Failed"])
def test_spec_change_is_allowed_when_not_running(phase: str) -> None:
    old = _with_phase(valid(), phase)
    assert refusals(_with_phase(valid(inputs=["changed"]), phase), old=old) == []


def test_metadata_change_is_allowed_while_running() -> None:
    old = _with_phase(valid(), "Running")
    new = copy.deepcopy(old)
    new["metadata"]["annotations"] = {names.CANCEL_ANNOTATION: "now"}  # type: ignore[index]
    assert refusals(new, old=old) == []


def test_spec_defaults_resolve_from_the_catalog() -> None:
    spec = DeploymentEmbedding.model_validate(valid(model="voyage-3-lite")).spec
    assert (spec.dimension, spec.dtype) == (512, "float")
    assert spec.secret_ref.name == names.DEFAULT_API_KEY_SECRET
    assert spec.to_dict() == {"inputs": ["hello", "world"], "model": "voyage-3-lite"}


def test_unknown_model_lookup_lists_the_supported_ones() -> None:
    with pytest.raises(ValueError, match="voyage-4-large"):
        get_model("gpt-embeddings")


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    dockerfile = CRD_PATH.parent.parent / "Dockerfile"
    out = subprocess.run(
        [str(hadolint), "--no-color", str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_integer_dtypes_serialize_as_integers() -> None:
    from embedding_operator.api.types import Result

    result = Result(
        model="voyage-4",
        total_tokens=2,
        count=1,
        dimensions=2,
        dtype="int8",
        embeddings=[[12.0, -3.0]],
    )
    assert result.to_dict()["embeddings"] == [[12, -3]]
    assert json.dumps(result.to_dict()["embeddings"]) == "[[12, -3]]"
    floats = Result(
        model="voyage-4",
        total_tokens=2,
        count=1,
        dimensions=2,
        dtype="float",
        embeddings=[[0.5, -0.25]],
    )
    assert floats.to_dict()["embeddings"] == [[0.5, -0.25]]


@pytest.mark.parametrize(
    "resources",
    [
        {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": 1, "memory": "1024Mi"}},
        {"requests": {"cpu": "0.25"}, "limits": {"cpu": ".5", "memory": "1e9"}},
        {"limits": {"memory": "2G"}},
    ],
)
def test_usable_resources_are_accepted_by_both(resources: dict[str, object]) -> None:
    obj = valid(job={"resources": resources})
    assert refusals(obj) == []
    DeploymentEmbedding.model_validate(obj)
