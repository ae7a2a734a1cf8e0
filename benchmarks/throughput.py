"""Throughput and memory of the embedding engine against the Voyage stand-in.

    .venv/bin/python -m benchmarks.throughput            # full run, ~6 minutes on 2 cores
    .venv/bin/python -m benchmarks.throughput --quick    # a smaller run, about 3 minutes

Reports, all measured in the same run:

(a) the engine's wall time divided by the limit-bound minimum, max(tokens / TPM,
    ceil(inputs / 1000) / RPM) minutes, against a stand-in that enforces the limits (429s);
(b) the speed-up over a naive loop calling ``voyageai.Client.embed`` on batches of 128, one after
    another, on the same stand-in and the first 40,000 of the same texts (inputs per second;
    the loop's time is linear in the inputs, and the whole set would take 3 minutes alone);
(c) the peak memory (``ru_maxrss`` of a child process) of a run of 50,000 inputs at 1,024 float
    dimensions, kept in memory (``ArraySink``) and streamed to a ``.npy`` file, against the raw
    result size (50,000 x 1,024 x 4 bytes);
(d) the engine against an *undisclosed* limit: the stand-in allows ``--account-tpm`` tokens per
    window while the engine is told the catalog's 8 M TPM (no ``rateLimits``), 10,000 inputs;
    wall time over the limit-bound minimum (tokens / account TPM), with the limiter learning the
    limit from its 429s, and without (``learn_from_throttling=False``: pauses and AIMD only, the
    behaviour before it learned). The window is shortened (``--account-window``, 12 s) so the
    run spans ~5 windows in a minute; the ratios are per window.

Not a test: nothing here fails on timings. See docs/performance.md for figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedding_operator.voyage import Limits

ROOT = Path(__file__).resolve().parents[1]
MODEL = "voyage-3.5"
KEY = "bench-key"
WORDS = [
    "vector",
    "search",
    "kubernetes",
    "operator",
    "embedding",
    "batch",
    "token",
    "limit",
    "retry",
    "latency",
    "cluster",
    "document",
    "query",
    "model",
    "memory",
    "stream",
    "order",
    "result",
    "chunk",
    "digest",
    "status",
    "worker",
    "pod",
    "job",
]


def make_texts(count: int, seed: int = 7) -> list[str]:
    """Deterministic English-like texts of ~200 characters (~50 stand-in tokens)."""
    rng = random.Random(seed)
    return [
        f"Document {i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(22, 30)))
        for i in range(count)
    ]


@contextmanager
def standin(*args: str) -> Iterator[str]:
    """The stand-in in its own process (its CPU and memory are not the engine's)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.voyage_standin", "--port", "0", "--api-key", KEY, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"stand-in did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=30)


def engine_run(
    texts: list[str],
    base_url: str,
    rpm: int,
    tpm: int,
    concurrency: int,
    *,
    told: Limits | None = None,
    window: float = 60.0,
) -> dict:
    """One engine run; ``told`` are the limits the engine is given when they are not the
    account's (``rpm``/``tpm`` per ``window``, which the minimum is computed from)."""
    from embedding_operator.storage import NullSink, ResultLayout
    from embedding_operator.voyage import ClientSettings, Limits, embed_texts

    sink = NullSink(ResultLayout(MODEL, len(texts), 1024))
    client = ClientSettings(api_key=KEY, base_url=base_url, timeout=60)
    limits = told or Limits(rpm, tpm, concurrency, window_seconds=window)
    start = time.perf_counter()
    stats = asyncio.run(embed_texts(texts, model=MODEL, sink=sink, client=client, limits=limits))
    wall = time.perf_counter() - start
    minimum = window * max(stats.total_tokens / tpm, math.ceil(len(texts) / 1000) / rpm)
    return {
        "inputs": len(texts),
        "tokens": stats.total_tokens,
        "requests": stats.requests,
        "throttled": stats.throttled,
        "learned_tokens_per_window": stats.learned_tokens_per_minute,
        "wall_s": round(wall, 2),
        "limit_bound_min_s": round(minimum, 2),
        "ratio": round(wall / minimum, 3),
        "inputs_per_s": round(len(texts) / wall, 1),
    }


def undisclosed_runs(texts: list[str], args: argparse.Namespace, latency: tuple[str, ...]) -> dict:
    """(d): the same run learning the limit and not, each on a fresh stand-in."""
    from embedding_operator.api.catalog import get_model
    from embedding_operator.voyage import Limits

    info = get_model(MODEL)
    figures = {}
    for name, learn in (("learning", True), ("not_learning", False)):
        told = Limits(
            info.requests_per_minute,
            info.tokens_per_minute,
            args.concurrency,
            window_seconds=args.account_window,
            learn_from_throttling=learn,
        )
        account = ("--tpm", str(args.account_tpm), "--window", str(args.account_window))
        with standin(*account, *latency) as base_url:
            figures[name] = engine_run(
                texts,
                base_url,
                info.requests_per_minute,
                args.account_tpm,
                args.concurrency,
                told=told,
                window=args.account_window,
            )
        print(json.dumps({f"d_{name}": figures[name]}), flush=True)
    learning, before = figures["learning"], figures["not_learning"]
    return {
        "account_tokens_per_window": args.account_tpm,
        "window_s": args.account_window,
        "engine_told_tpm": info.tokens_per_minute,
        **figures,
        "ratio_learning": learning["ratio"],
        "ratio_not_learning": before["ratio"],
        "speedup": round(before["wall_s"] / learning["wall_s"], 2),
    }


def naive_run(texts: list[str], base_url: str) -> dict:
    """What a script without this project would do: the official client, batches of 128."""
    import voyageai

    client = voyageai.Client(api_key=KEY, base_url=base_url, max_retries=5, timeout=60)
    start = time.perf_counter()
    count = 0
    for i in range(0, len(texts), 128):
        count += len(client.embed(texts[i : i + 128], model=MODEL).embeddings)
    wall = time.perf_counter() - start
    assert count == len(texts)
    return {"inputs": len(texts), "wall_s": round(wall, 2), "inputs_per_s": round(count / wall, 1)}


def memory_child(base_url: str, count: int, sink_kind: str) -> None:
    """Runs in a child process: one run of ``count`` inputs, prints peak RSS as JSON."""
    from embedding_operator.storage import ArraySink, NpyFileSink, ResultLayout
    from embedding_operator.voyage import ClientSettings, Limits, embed_texts

    texts = make_texts(count)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    layout = ResultLayout(MODEL, count, 1024)
    with tempfile.TemporaryDirectory() as tmp:
        sink = (
            ArraySink(layout) if sink_kind == "array" else NpyFileSink(layout, Path(tmp) / "r.npy")
        )
        asyncio.run(
            embed_texts(
                texts,
                model=MODEL,
                sink=sink,
                client=ClientSettings(api_key=KEY, base_url=base_url, timeout=120),
                limits=Limits(10**6, 10**10, 8),
            )
        )
        if sink_kind == "array":
            assert sink.array.shape == (count, 1024)  # type: ignore[union-attr]
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"baseline_mib": baseline_kib / 1024, "peak_mib": peak_kib / 1024}))


def memory_run(count: int, sink_kind: str) -> dict:
    with standin() as base_url:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.throughput",
                "--memory-child",
                sink_kind,
                "--base-url",
                base_url,
                "--memory-inputs",
                str(count),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    raw_mib = count * 1024 * 4 / 2**20
    return {
        "sink": sink_kind,
        "inputs": count,
        "raw_result_mib": round(raw_mib, 1),
        "baseline_mib": round(figures["baseline_mib"], 1),
        "peak_mib": round(figures["peak_mib"], 1),
        "peak_over_raw": round(figures["peak_mib"] / raw_mib, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (about a minute)")
    parser.add_argument("--inputs", type=int, help="inputs of the throughput run")
    parser.add_argument("--rpm", type=int, default=2000, help="stand-in and engine RPM")
    parser.add_argument("--tpm", type=int, default=8_000_000, help="stand-in and engine TPM")
    parser.add_argument("--latency", type=float, default=0.15, help="stand-in base latency (s)")
    parser.add_argument("--latency-per-1k-tokens", type=float, default=0.01)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--naive-inputs",
        type=int,
        default=40_000,
        help="inputs of the naive loop (the first ones of the same texts; it is slow)",
    )
    parser.add_argument(
        "--account-tpm",
        type=int,
        default=100_000,
        help="(d) the stand-in's tokens per window, not told to the engine",
    )
    parser.add_argument("--account-window", type=float, default=12.0, help="(d) its window (s)")
    parser.add_argument("--undisclosed-inputs", type=int, default=10_000)
    parser.add_argument("--memory-inputs", type=int, default=50_000)
    parser.add_argument("--memory-child", choices=["array", "npy"], help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.base_url, args.memory_inputs, args.memory_child)
        return
    count = args.inputs or (20_000 if args.quick else 100_000)
    texts = make_texts(count)
    limits = ("--rpm", str(args.rpm), "--tpm", str(args.tpm))
    latency = (
        "--latency",
        str(args.latency),
        "--latency-per-1k-tokens",
        str(args.latency_per_1k_tokens),
    )
    report: dict[str, object] = {
        "setup": {
            "model": MODEL,
            "rpm": args.rpm,
            "tpm": args.tpm,
            "latency_s": args.latency,
            "latency_per_1k_tokens_s": args.latency_per_1k_tokens,
            "concurrency": args.concurrency,
            "cpus": os.cpu_count(),
        }
    }
    with standin(*limits, *latency) as base_url:
        report["a_engine"] = engine_run(texts, base_url, args.rpm, args.tpm, args.concurrency)
        print(json.dumps({"a_engine": report["a_engine"]}), flush=True)
    with standin(*limits, *latency) as base_url:
        report["b_naive"] = naive_run(texts[: args.naive_inputs or count], base_url)
    engine_rate = report["a_engine"]["inputs_per_s"]  # type: ignore[index]
    naive_rate = report["b_naive"]["inputs_per_s"]  # type: ignore[index]
    report["b_speedup"] = round(engine_rate / naive_rate, 2)
    print(json.dumps({"b_naive": report["b_naive"], "b_speedup": report["b_speedup"]}), flush=True)
    report["d_undisclosed_limit"] = undisclosed_runs(
        make_texts(args.undisclosed_inputs), args, latency
    )
    memory_inputs = 10_000 if args.quick else args.memory_inputs
    report["c_memory"] = [memory_run(memory_inputs, kind) for kind in ("array", "npy")]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
