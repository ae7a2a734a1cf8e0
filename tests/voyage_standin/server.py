"""A Voyage-compatible HTTP server for tests, demos and benchmarks.

``POST /v1/embeddings`` validates requests as Voyage does (models and their per-request token
caps from the operator's catalog, at most 1,000 inputs, context length with truncation off,
dimensions and dtypes per model), answers in Voyage's shapes (lists or base64, ``usage``), and
errors as ``{"detail": ...}``. It enforces RPM/TPM over a sliding window with 429 and
``Retry-After``, and injects faults (500, 503, hangs, dropped connections) and latency on demand.
Every request is counted, so tests can assert how many the client sent.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from embedding_operator.api.catalog import MAX_INPUTS_PER_REQUEST, MODELS
from tests.voyage_standin.vectors import count_tokens, float_embedding, quantize

FAULTS = ("500", "503", "hang", "drop")


@dataclass
class StandInConfig:
    """Behaviour of the stand-in; fields may be changed while it runs."""

    api_key: str = "test-key"
    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0
    latency: float = 0.0
    """Seconds added to every successful response."""
    latency_per_1k_tokens: float = 0.0
    fault_rate: float = 0.0
    faults: tuple[str, ...] = FAULTS
    hang_seconds: float = 30.0
    seed: int | None = 0


@dataclass
class StandInStats:
    """What the stand-in saw (guarded by ``lock``)."""

    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    inputs: int = 0
    tokens: int = 0
    max_batch: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    authorizations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class _ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class _Window:
    """Sliding-window RPM/TPM accounting, as a provider does it."""

    def __init__(self) -> None:
        self.log: deque[tuple[float, int]] = deque()
        self.lock = threading.Lock()

    def admit(self, tokens: int, config: StandInConfig) -> None:
        with self.lock:
            now = time.monotonic()
            while self.log and self.log[0][0] <= now - config.window:
                self.log.popleft()
            used = sum(t for _, t in self.log)
            if config.rpm is not None and len(self.log) + 1 > config.rpm:
                wait = self.log[len(self.log) - config.rpm][0] + config.window - now
                raise _ApiError(
                    429,
                    f"Rate limit exceeded: more than {config.rpm} requests per minute.",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
            if config.tpm is not None and used + tokens > config.tpm:
                freed, wait = 0, config.window
                for at, spent in self.log:
                    freed += spent
                    if used + tokens - freed <= config.tpm:
                        wait = at + config.window - now
                        break
                raise _ApiError(
                    429,
                    f"Rate limit exceeded: more than {config.tpm} tokens per minute.",
                    {"Retry-After": str(max(1, math.ceil(wait)))},
                )
            self.log.append((now, tokens))


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that time out and hang up are part of the tests; don't print tracebacks."""


class StandIn:
    """The server; ``with StandIn(config) as s: s.base_url`` runs it on a thread."""

    def __init__(
        self, config: StandInConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or StandInConfig()
        self.stats = StandInStats()
        self.window = _Window()
        self._rng = random.Random(self.config.seed)
        self._rng_lock = threading.Lock()
        self._stopping = threading.Event()
        self.httpd = _QuietServer((host, port), _handler(self))
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> StandIn:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget counts and the rate window, re-seed the faults (between tests sharing one
        server)."""
        self.stats = StandInStats()
        self.window = _Window()
        with self._rng_lock:
            self._rng = random.Random(self.config.seed)

    def pick_fault(self) -> str | None:
        with self._rng_lock:
            if self.config.fault_rate <= 0 or self._rng.random() >= self.config.fault_rate:
                return None
            return self._rng.choice(self.config.faults)

    # -- the API --------------------------------------------------------------------------

    def embeddings(self, body: Any, admit: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Validate one request body; return the response. ``admit`` (the rate limits) is called
        with the request's tokens once they are counted, before the vectors are computed, as
        the provider counts a request when it arrives (not after the work, which may be slow
        on a loaded machine)."""
        if not isinstance(body, dict):
            raise _ApiError(422, "Request body must be a JSON object.")
        texts = body.get("input")
        if isinstance(texts, str):
            texts = [texts]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise _ApiError(422, "'input' must be a string or a list of strings.")
        if not texts:
            raise _ApiError(400, "'input' must not be empty.")
        if len(texts) > MAX_INPUTS_PER_REQUEST:
            raise _ApiError(
                400,
                f"The batch size limit is {MAX_INPUTS_PER_REQUEST}. Your batch size is "
                f"{len(texts)}.",
            )
        model_name = body.get("model")
        info = MODELS.get(model_name) if isinstance(model_name, str) else None
        if info is None:
            raise _ApiError(
                400, f"Model {model_name} is not supported. Supported models: {', '.join(MODELS)}."
            )
        truncation = body.get("truncation", True)
        if not isinstance(truncation, bool):
            raise _ApiError(422, "'truncation' must be a boolean.")
        input_type = body.get("input_type")
        if input_type not in (None, "query", "document"):
            raise _ApiError(400, "'input_type' must be null, 'query' or 'document'.")
        dimension = body.get("output_dimension")
        if dimension is None:
            dimension = info.default_dimension
        elif dimension not in info.dimensions:
            raise _ApiError(
                400, f"Model {info.name} does not support output_dimension={dimension}."
            )
        dtype = body.get("output_dtype") or "float"
        if dtype not in info.dtypes:
            raise _ApiError(400, f"Model {info.name} does not support output_dtype={dtype}.")
        encoding = body.get("encoding_format")
        if encoding not in (None, "base64"):
            raise _ApiError(400, "'encoding_format' must be null or 'base64'.")
        counts = []
        for i, text in enumerate(texts):
            tokens = count_tokens(text)
            if tokens > info.context_tokens:
                if not truncation:
                    raise _ApiError(
                        400,
                        f"Input at index {i} has {tokens} tokens, which exceeds the context "
                        f"length of {info.context_tokens} tokens for model {info.name}. "
                        "Please shorten it or set truncation to true.",
                    )
                tokens = info.context_tokens
            counts.append(tokens)
        total = sum(counts)
        if total > info.max_tokens_per_request:
            raise _ApiError(
                400,
                f"Request to model '{info.name}' failed. The max allowed tokens per submitted "
                f"batch is {info.max_tokens_per_request}. Your batch has {total} tokens after "
                "truncation. Please lower the number of tokens in the batch.",
            )
        if admit is not None:
            admit(total)
        data = []
        for i, text in enumerate(texts):
            vector = quantize(float_embedding(text, info.name, dimension), dtype)
            value: Any = (
                base64.b64encode(vector.tobytes()).decode("ascii")
                if encoding == "base64"
                else vector.tolist()
            )
            data.append({"object": "embedding", "embedding": value, "index": i})
        return {
            "object": "list",
            "data": data,
            "model": info.name,
            "usage": {"total_tokens": total},
        }


def _handler(server: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def do_GET(self) -> None:
            self._send(404, {"detail": "Not Found"}, {})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/embeddings":
                self._send(404, {"detail": "Not Found"}, {})
                return
            stats, config = server.stats, server.config
            with stats.lock:
                stats.requests += 1
                stats.in_flight += 1
                stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
                stats.authorizations.append(self.headers.get("Authorization", ""))
            try:
                self._embeddings(raw, config, stats)
            finally:
                with stats.lock:
                    stats.in_flight -= 1

        def _embeddings(self, raw: bytes, config: StandInConfig, stats: StandInStats) -> None:
            status, headers = 200, {}
            try:
                if self.headers.get("Authorization", "") != f"Bearer {config.api_key}":
                    raise _ApiError(401, "Provided API key is invalid.")
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise _ApiError(422, "Request body is not valid JSON.") from None
                response = server.embeddings(body, lambda n: server.window.admit(n, config))
                tokens = response["usage"]["total_tokens"]
                fault = server.pick_fault()
                if fault is not None:
                    with stats.lock:
                        stats.faults[fault] += 1
                    if fault == "500":
                        raise _ApiError(500, "Internal Server Error")
                    if fault == "503":
                        raise _ApiError(503, "Service Unavailable")
                    if fault == "hang":
                        server._stopping.wait(config.hang_seconds)
                    with stats.lock:
                        stats.statuses[0] += 1  # 0: no response
                    self._drop()
                    return
                delay = config.latency + config.latency_per_1k_tokens * tokens / 1000
                if delay > 0:
                    server._stopping.wait(delay)
                with stats.lock:
                    stats.inputs += len(response["data"])
                    stats.tokens += tokens
                    stats.max_batch = max(stats.max_batch, len(response["data"]))
                payload: dict[str, Any] = response
            except _ApiError as error:
                status, headers, payload = error.status, error.headers, {"detail": error.detail}
            with stats.lock:
                stats.statuses[status] += 1
            self._send(status, payload, headers)

    return Handler
