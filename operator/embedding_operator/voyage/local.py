"""Helpers of ``embedding-operator embed``: the same engine, run from a manifest file.

Users try a spec on their machine before applying it; benchmarks drive the engine the same way.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import ValidationError

from embedding_operator.api import names
from embedding_operator.api.types import DeploymentEmbedding
from embedding_operator.voyage.engine import RunStats


class ManifestError(ValueError):
    """The manifest holds no usable DeploymentEmbedding (message says which and why)."""


def load_manifest(path: str | Path, name: str | None = None) -> DeploymentEmbedding:
    """The DeploymentEmbedding of a (possibly multi-document) YAML file, validated as
    ``kubectl apply`` would; ``name`` picks one when the file holds several."""
    try:
        documents = list(yaml.safe_load_all(Path(path).read_text()))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    found = [
        d
        for d in documents
        if isinstance(d, dict)
        and d.get("kind") == names.KIND
        and (name is None or (d.get("metadata") or {}).get("name") == name)
    ]
    if not found:
        which = f" named {name!r}" if name else ""
        raise ManifestError(f"{path}: no {names.KIND}{which}")
    if len(found) > 1:
        listed = ", ".join(str((d.get("metadata") or {}).get("name")) for d in found)
        raise ManifestError(f"{path}: several {names.KIND}s ({listed}); choose one with --name")
    try:
        return DeploymentEmbedding.model_validate(found[0])
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ManifestError(f"{path}: invalid {names.KIND}: {problems}") from None


def summary(stats: RunStats, output: str | None) -> str:
    """One line for the terminal, e.g. ``embedded 5000 inputs with voyage-3.5 ...``."""
    result = stats.result
    shape = f"{result.dimensions} dims, {result.dtype}" if result else ""
    retried = f", {stats.retries} retried" if stats.retries else ""
    throttled = f", {stats.throttled} rate-limited" if stats.throttled else ""
    where = f" -> {output}" if output else " (no -o: vectors not saved)"
    model = result.model if result else "?"
    return (
        f"embedded {stats.count} inputs with {model} ({shape}): {stats.total_tokens:,} tokens, "
        f"{stats.requests} requests{retried}{throttled}, {stats.elapsed:.1f} s{where}"
    )
