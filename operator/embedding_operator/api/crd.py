"""Generate the DeploymentEmbedding CRD from the pydantic models.

The committed ``crds/`` file is this module's output (``embedding-operator crd``); a test fails when
they drift. pydantic's JSON Schema is turned into a Kubernetes *structural* schema: references are
inlined, nullable unions collapse to their type, titles go, and the rules that only CEL can express
(name slug, model compatibility, total size, no spec change while Running) are added from the
model catalog.
"""

from __future__ import annotations

import json
from typing import Any

from embedding_operator.api import names
from embedding_operator.api.catalog import compatibility_groups
from embedding_operator.api.types import (
    MAX_TOTAL_INPUT_CHARACTERS,
    DeploymentEmbeddingSpec,
    DeploymentEmbeddingStatus,
)

Schema = dict[str, Any]

MINIMUM_KUBERNETES = "1.32"
"""selectableFields (CustomResourceFieldSelectors) went GA in 1.32; CEL messageExpression and
ValidatingAdmissionPolicy are older."""

_DROPPED_KEYS = {"title", "default", "additionalProperties"}


def _structural(node: Any, defs: Schema) -> Any:
    """Rewrite one pydantic JSON Schema node into the structural OpenAPI v3 subset."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(variants) == 1:
            return _structural({**variants[0], **rest}, defs)
        if {v.get("type") for v in variants} == {"integer", "string"}:
            # Kubernetes quantities: the one union a structural schema may express. The string's
            # pattern and the integer's minimum stay (each applies only to its own type), as in
            # the CRDs controller-gen makes for resource.Quantity.
            kept = {
                k: v[k] for v in variants for k in ("pattern", "maxLength", "minimum") if k in v
            }
            return {**_structural(rest, defs), **kept, "x-kubernetes-int-or-string": True}
        raise ValueError(f"union not expressible in a structural schema: {node}")
    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key == "format" and value in ("date-time", "byte"):
            out[key] = value
        else:
            out[key] = _structural(value, defs)
    if "const" in out:  # pydantic versions differ in whether "enum" comes too, and where
        value = out.pop("const")
        out.pop("enum", None)
        out = {"enum": [value], **out}
    return out


def model_schema(model: type[Any]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.pop("$defs", {})
    schema: Schema = _structural(raw, defs)
    return schema


def _cel_list(values: list[str] | tuple[int, ...] | tuple[str, ...]) -> str:
    return json.dumps(list(values)).replace('"', "'")


def _compatibility_rule(field: str, attribute: int) -> Schema:
    """One CEL rule: ``field`` must be a value the model's catalog entry allows."""
    groups = compatibility_groups()
    check = "false"
    allowed = "''"
    for group in reversed(groups):
        models, values = _cel_list(group[0]), group[attribute]
        check = f"self.model in {models} ? self.{field} in {_cel_list(values)} : {check}"
        allowed = f"self.model in {models} ? '{', '.join(str(v) for v in values)}' : {allowed}"
    # One .format call: joining strings with + makes the apiserver's cost estimate explode.
    return {
        "rule": f"!has(self.{field}) || ({check})",
        "messageExpression": (
            f"'%s is not supported by %s; use one of %s'.format([self.{field}, self.model, "
            f"({allowed})])"
        ),
        "fieldPath": f".{field}",
        "reason": "FieldValueInvalid",
    }


def spec_rules() -> list[Schema]:
    return [
        _compatibility_rule("outputDimension", 1),
        _compatibility_rule("outputDtype", 2),
        {
            "rule": f"self.inputs.map(s, s.size()).sum() <= {MAX_TOTAL_INPUT_CHARACTERS}",
            "message": (
                f"inputs hold more than {MAX_TOTAL_INPUT_CHARACTERS} characters in all; "
                "split them over several resources"
            ),
            "fieldPath": ".inputs",
            "reason": "FieldValueInvalid",
        },
    ]


def root_rules() -> list[Schema]:
    return [
        {
            "rule": (
                f"self.metadata.name.size() <= {names.MAX_NAME_LENGTH} && "
                f"self.metadata.name.matches('{names.NAME_PATTERN}')"
            ),
            "message": (
                f"metadata.name must be a lowercase slug of at most {names.MAX_NAME_LENGTH} "
                "characters (a-z, 0-9 and '-', starting and ending with a letter or digit)"
            ),
        },
        {
            "rule": (
                "!has(oldSelf.status) || !has(oldSelf.status.phase) || "
                "oldSelf.status.phase != 'Running' || self.spec == oldSelf.spec"
            ),
            "message": (
                "spec cannot change while the run is Running; wait for it to finish or set the "
                f"{names.CANCEL_ANNOTATION} annotation to cancel it"
            ),
        },
    ]


def open_api_schema() -> Schema:
    spec = model_schema(DeploymentEmbeddingSpec)
    spec["x-kubernetes-validations"] = spec_rules()
    spec["description"] = "What to embed and how. Immutable while a run is Running."
    status = model_schema(DeploymentEmbeddingStatus)
    status["description"] = "Written by the operator and its worker through the status subresource."
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return {
        "type": "object",
        "description": "A VoyageAI embedding job: inputs, model and options; runs on request.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": root_rules(),
    }


def build_crd() -> Schema:
    """The CustomResourceDefinition as a dict, ready for YAML or the API."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": names.CRD_NAME,
            "labels": {names.MANAGED_BY_LABEL: names.MANAGED_BY_VALUE},
            # Deleting the CRD deletes every DeploymentEmbedding: Helm keeps it on uninstall and
            # Argo CD never prunes it (docs/gitops.md); the chart can drop both (crds.keep).
            "annotations": {
                "helm.sh/resource-policy": "keep",
                "argocd.argoproj.io/sync-options": "Prune=false",
            },
        },
        "spec": {
            "group": names.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": names.KIND,
                "listKind": f"{names.KIND}List",
                "plural": names.PLURAL,
                "singular": names.SINGULAR,
                "shortNames": [names.SHORT_NAME],
                "categories": ["embedding-operator"],
            },
            "versions": [
                {
                    "name": names.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "selectableFields": [
                        {"jsonPath": ".status.phase"},
                        {"jsonPath": ".spec.model"},
                    ],
                    "additionalPrinterColumns": [
                        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
                        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
                        {"name": "Inputs", "type": "integer", "jsonPath": ".status.inputCount"},
                        {
                            "name": "Tokens",
                            "type": "integer",
                            "jsonPath": ".status.result.totalTokens",
                        },
                        {
                            "name": "Job",
                            "type": "string",
                            "jsonPath": ".status.jobName",
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {"openAPIV3Schema": open_api_schema()},
                }
            ],
        },
    }


def render(objects: list[Schema], source: str) -> str:
    """Objects as the multi-document YAML committed in ``crds/``."""
    import yaml

    header = (
        f"# Generated by `embedding-operator crd` from operator/embedding_operator/api/{source}.\n"
        "# Do not edit by hand: run `make crds` and commit the result.\n"
    )
    return header + yaml.safe_dump_all(objects, sort_keys=False, width=100)


def render_crd() -> str:
    return render([build_crd()], "types.py")
