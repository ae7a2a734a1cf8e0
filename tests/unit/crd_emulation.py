"""The CRD's own validation, evaluated in Python: its structural schema (with kubectl's strict
field validation) through jsonschema, and its CEL rules through cel-python.

This proves the generated rules' logic without a cluster; the cluster tests prove the same
objects against a real kube-apiserver.
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

from embedding_operator.api.types import quantity_value
from tests.api_cases import crd


def _strict(schema: Any) -> Any:
    """Unknown fields are errors (kubectl apply --validate=strict), int-or-string is a union."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes")}
    if schema.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if "properties" in schema:
        out.setdefault("additionalProperties", False)
    return out


def _schema() -> dict[str, Any]:
    root: dict[str, Any] = copy.deepcopy(crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
    return root


def _sum(values: celtypes.ListType) -> celtypes.IntType:
    return celtypes.IntType(sum(values))


def _format(template: celtypes.StringType, args: celtypes.ListType) -> celtypes.StringType:
    """Kubernetes' CEL string library ``format`` (only ``%s`` is used by the CRD)."""
    return celtypes.StringType(str(template) % tuple(str(a) for a in args))


def _quantity(text: celtypes.StringType) -> celtypes.DoubleType:
    """Kubernetes' CEL quantity library, as far as the CRD uses it: ``quantity(s)`` (a number
    here) and ``.compareTo(q)``."""
    return celtypes.DoubleType(float(quantity_value(str(text))))


def _compare_to(left: celtypes.DoubleType, right: celtypes.DoubleType) -> celtypes.IntType:
    return celtypes.IntType((left > right) - (left < right))


_FUNCTIONS = {"sum": _sum, "format": _format, "quantity": _quantity, "compareTo": _compare_to}


def _evaluate(rules: list[dict[str, Any]], where: str, bindings: dict[str, Any]) -> list[str]:
    env = celpy.Environment()
    errors = []
    for rule in rules:
        if "oldSelf" in rule["rule"] and "oldSelf" not in bindings:
            continue  # transition rules run on updates only
        activation = {k: celpy.json_to_cel(v) for k, v in bindings.items()}
        program = env.program(env.compile(rule["rule"]), functions=_FUNCTIONS)
        try:
            ok = bool(program.evaluate(activation))
        except celpy.CELEvalError:
            ok = False  # the apiserver refuses an object whose rule cannot be evaluated
        if ok:
            continue
        if "messageExpression" in rule:
            program = env.program(env.compile(rule["messageExpression"]), functions=_FUNCTIONS)
            message = str(program.evaluate(activation))
        else:
            message = rule["message"]
        errors.append(f"{where}{rule.get('fieldPath', '')}: {message}")
    return errors


def refusals(obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """What the apiserver would say about ``obj`` (as 'path: message'); empty when accepted."""
    schema = _schema()
    validator = jsonschema.Draft7Validator(_strict(schema))
    errors = [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(obj)
    ]
    if errors:
        return errors  # CEL runs only on objects that pass the structural schema
    errors += _nested(schema["properties"]["spec"], obj["spec"], "spec")
    root = {"self": obj} if old is None else {"self": obj, "oldSelf": old}
    errors += _evaluate(schema["x-kubernetes-validations"], "", root)
    return errors


def _nested(schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """The rules of ``schema`` and of every object below it that is present in ``value``."""
    errors = _evaluate(schema.get("x-kubernetes-validations") or [], where, {"self": value})
    for name, child in (schema.get("properties") or {}).items():
        if isinstance(value, dict) and name in value:
            errors += _nested(child, value[name], f"{where}.{name}")
    return errors
