"""The ``embedding-operator`` command.

Each subcommand imports its layer lazily, so ``crd`` and ``worker`` start without loading kopf and
``run`` without loading Voyage's client.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from embedding_operator import __version__, logs

Command = Callable[[argparse.Namespace], int]


def _crd(args: argparse.Namespace) -> int:
    from embedding_operator.api.admission import build_admission_policy
    from embedding_operator.api.crd import render, render_crd

    if args.admission_policy:
        sys.stdout.write(render(build_admission_policy(), "admission.py"))
    else:
        sys.stdout.write(render_crd())
    return 0


def _run(args: argparse.Namespace) -> int:
    import os

    from embedding_operator.controller import run

    # httpx logs every API request, kopf every handled event ("Handler ... succeeded"): the
    # operator's own lines say what it did; -v brings them back
    level = logging.DEBUG if args.verbose else logging.INFO
    logs.configure(args.log_format, level, quiet=("httpx", "kopf.objects"))
    if args.log_format:
        os.environ[logs.ENV] = args.log_format  # handed on to the workers (WORKER_PASSTHROUGH)
    run(args.namespace or [], args.liveness_port, args.metrics_port)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from embedding_operator.worker import run_worker

    # Voyage's client logs every response, httpx every API request
    logs.configure(
        default_object={"namespace": args.namespace, "name": args.name}, quiet=("voyage", "httpx")
    )
    return run_worker(args.namespace, args.name, args.job)


def _api_server(args: argparse.Namespace) -> int:
    from embedding_operator.restapi.main import run

    return run(args)


def _embed(args: argparse.Namespace) -> int:
    import asyncio

    from embedding_operator.storage import NullSink, ResultLayout, open_file_sink
    from embedding_operator.voyage import ClientSettings, EmbeddingError, embed_spec
    from embedding_operator.voyage.local import ManifestError, load_manifest, summary
    from embedding_operator.voyage.progress import ProgressBar

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        spec = load_manifest(args.file, args.name).spec
        client = ClientSettings.from_env()
        layout = ResultLayout.for_spec(spec)
        sink = open_file_sink(args.output, layout) if args.output else NullSink(layout)
    except (ManifestError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bar = ProgressBar(enabled=args.progress)
    try:
        stats = asyncio.run(embed_spec(spec, sink, client=client, on_progress=bar))
    except EmbeddingError as e:
        bar.close()
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar.close()
    print(summary(stats, args.output))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedding-operator",
        description="Run VoyageAI embedding jobs declared as DeploymentEmbedding resources.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    crd = sub.add_parser(
        "crd", help="print the DeploymentEmbedding CRD generated from the API types"
    )
    crd.add_argument(
        "--admission-policy",
        action="store_true",
        help="print the ValidatingAdmissionPolicy (no delete while Running) instead",
    )
    crd.set_defaults(handler=_crd)

    run = sub.add_parser("run", help="run the operator (kopf) against the current cluster")
    run.add_argument(
        "--namespace", action="append", help="watch only this namespace (repeatable; default: all)"
    )
    run.add_argument("--liveness-port", type=int, default=8080, help="0 disables /healthz")
    run.add_argument("--metrics-port", type=int, default=9090, help="0 disables /metrics")
    run.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        help=f"text (default) or one JSON object per line; also ${logs.ENV}, handed to workers",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(handler=_run)

    worker = sub.add_parser("worker", help="embed one run's inputs (what a Job's pod runs)")
    worker.add_argument("--namespace", required=True)
    worker.add_argument("--name", required=True, help="the DeploymentEmbedding")
    worker.add_argument("--job", required=True, help="the Job this run belongs to")
    worker.set_defaults(handler=_worker)

    api_server = sub.add_parser(
        "api-server",
        help="serve the REST API as an aggregated API server (behind kube-apiserver)",
    )
    api_server.add_argument("--secure-port", type=int, default=8443, help="HTTPS port")
    api_server.add_argument("--bind-address", default="0.0.0.0", help="address to listen on")  # noqa: S104
    api_server.add_argument("--tls-cert-file", help="serving certificate (PEM)")
    api_server.add_argument("--tls-private-key-file", help="its key (PEM)")
    api_server.add_argument(
        "--tls-secret",
        metavar="NAMESPACE/NAME",
        help="read the serving certificate from this kubernetes.io/tls Secret instead of files",
    )
    api_server.add_argument(
        "--requestheader-client-ca-file",
        help="CA of kube-apiserver's front-proxy client certificate; default: read from the "
        "kube-system/extension-apiserver-authentication ConfigMap",
    )
    api_server.add_argument(
        "--requestheader-allowed-names",
        default="",
        help="comma-separated common names of the front-proxy certificate (with "
        "--requestheader-client-ca-file; empty: any the CA signed)",
    )
    api_server.add_argument("--metrics-port", type=int, default=9091, help="0 disables /metrics")
    api_server.add_argument(
        "--max-request-bytes",
        type=int,
        default=3 * 1024 * 1024,
        help="larger request bodies get 413 (default: kube-apiserver's own limit, 3 MiB)",
    )
    api_server.add_argument(
        "--namespace",
        action="append",
        default=[],
        dest="namespaces",
        help="serve only this namespace (repeatable; the server's Roles are there); default: all",
    )
    api_server.set_defaults(handler=_api_server)

    embed = sub.add_parser(
        "embed", help="run a DeploymentEmbedding manifest locally (key from VOYAGE_API_KEY)"
    )
    embed.add_argument("-f", "--file", required=True, help="manifest (YAML, may hold several)")
    embed.add_argument("--name", help="which DeploymentEmbedding when the file holds several")
    embed.add_argument("-o", "--output", help="write the vectors to FILE.json or FILE.npy")
    embed.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    embed.set_defaults(handler=_embed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command = args.handler
    return handler(args)
