"""The package's dependency rules, checked on the source (see README, "Layout")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "embedding_operator"

# layer -> top-level modules it must never import (``embedding_operator.X`` or third-party X)
FORBIDDEN = {
    "api": {"voyage", "storage", "worker", "controller", "kube", "cli", "kopf", "kubernetes"},
    "voyage": {"storage", "worker", "controller", "kube", "kopf", "kubernetes"},
    "storage": {"worker", "controller", "kopf"},
    "worker": {"controller", "kopf"},
    "controller": {"worker", "voyage", "facade"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(parts[1] if parts[0] == "embedding_operator" and len(parts) > 1 else parts[0])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_one_way(layer: str) -> None:
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no layer {layer}"
    wrong = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in files
        for name in _imports(path) & FORBIDDEN[layer]
    }
    assert not wrong, sorted(wrong)
