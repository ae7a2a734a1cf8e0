"""What one finished resource costs every client that watches, lists or deep-copies it, by how its
result is kept in the status: JSON numbers (``result.embeddings``, version 0.1: the baseline) or
base64 (``result.inline``, now).

    .venv/bin/python -m benchmarks.result_encoding

For 1, 4 and 12 vectors of 1,024 floats (12 is the most the default inline limit keeps), prints the
object's JSON size, its size in Python once parsed (tracemalloc), the time ``json.loads`` and
``copy.deepcopy`` take (what kopf does to every event's body), and each as a ratio to the baseline
measured in the same run. Not a test: nothing here fails on timings.
"""

from __future__ import annotations

import copy
import json
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from embedding_operator.storage import InlineSink, ResultLayout, to_lists
from tests.voyage_standin import expected_matrix

MODEL = "voyage-3.5"
DIMENSIONS = 1024


def status_result(texts: list[str], encoding: str) -> dict[str, Any]:
    """A Completed status's ``result`` for ``texts``: base64 (now) or JSON numbers (0.1)."""
    vectors = expected_matrix(texts, MODEL, DIMENSIONS)
    sink = InlineSink(ResultLayout(MODEL, len(texts), DIMENSIONS))
    sink.write(0, vectors)
    result = sink.finish(total_tokens=10 * len(texts)).to_dict()
    if encoding == "json":
        del result["inline"]
        result["embeddings"] = to_lists(vectors)
    return result


def body(count: int, encoding: str) -> dict[str, Any]:
    texts = [f"document {i} about topic {i % 7}" for i in range(count)]
    return {
        "apiVersion": "embedding-operator.dev/v1alpha1",
        "kind": "DeploymentEmbedding",
        "metadata": {"name": "bench", "namespace": "default", "uid": "0" * 36},
        "spec": {"inputs": texts, "model": MODEL},
        "status": {"phase": "Completed", "result": status_result(texts, encoding)},
    }


def per_call(fn: Callable[[], object], repeat: int = 50) -> float:
    """Microseconds per call, best of three rounds."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        best = min(best, (time.perf_counter() - start) / repeat)
    return best * 1e6


def parsed_bytes(raw: str) -> int:
    tracemalloc.start()
    obj = json.loads(raw)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del obj
    return size


def measure(raw: str) -> dict[str, float]:
    obj = json.loads(raw)
    return {
        "JSON bytes": len(raw),
        "parsed bytes": parsed_bytes(raw),
        "loads us": per_call(lambda: json.loads(raw)),
        "deepcopy us": per_call(lambda: copy.deepcopy(obj)),
    }


def main() -> None:
    print(f"{'vectors':>7}  {'figure':<13} {'JSON numbers':>12} {'base64':>10} {'ratio':>7}")
    for count in (1, 4, 12):
        baseline = measure(json.dumps(body(count, "json"), separators=(",", ":")))
        now = measure(json.dumps(body(count, "base64"), separators=(",", ":")))
        for figure, value in baseline.items():
            ratio = now[figure] / value
            print(f"{count:>7}  {figure:<13} {value:>12,.0f} {now[figure]:>10,.0f} {ratio:>7.3f}")


if __name__ == "__main__":
    main()
