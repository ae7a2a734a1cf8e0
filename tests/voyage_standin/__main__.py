"""``python -m tests.voyage_standin --port 8089 [--rpm N] [--tpm N] [--latency S] ...``"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from tests.voyage_standin.server import FAULTS, StandIn, StandInConfig


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.voyage_standin", description="A Voyage-compatible HTTP stand-in."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8089, help="0 picks a free port")
    parser.add_argument("--api-key", default="test-key", help="the key clients must send")
    parser.add_argument("--rpm", type=int, help="requests per window (default: unlimited)")
    parser.add_argument("--tpm", type=int, help="tokens per window (default: unlimited)")
    parser.add_argument("--window", type=float, default=60.0, help="rate window in seconds")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per response")
    parser.add_argument(
        "--latency-per-1k-tokens", type=float, default=0.0, help="extra seconds per 1K tokens"
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="0..1")
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"comma-separated subset of {FAULTS}"
    )
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    if not set(faults) <= set(FAULTS):
        parser.error(f"--faults: choose from {FAULTS}")
    config = StandInConfig(
        api_key=args.api_key,
        rpm=args.rpm,
        tpm=args.tpm,
        window=args.window,
        latency=args.latency,
        latency_per_1k_tokens=args.latency_per_1k_tokens,
        fault_rate=args.fault_rate,
        faults=faults,
        hang_seconds=args.hang_seconds,
        seed=args.seed,
    )
    server = StandIn(config, host=args.host, port=args.port)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    with server:
        print(f"voyage stand-in listening on {server.base_url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
        s = server.stats
        print(
            f"requests={s.requests} statuses={dict(s.statuses)} faults={dict(s.faults)} "
            f"inputs={s.inputs} tokens={s.tokens}",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
