"""The ``embedding-operator`` command.

Each subcommand imports its layer lazily, so ``crd`` and ``worker`` start without loading kopf and
``run`` without loading Voyage's client.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from embedding_operator import __version__

Command = Callable[[argparse.Namespace], int]


def _crd(args: argparse.Namespace) -> int:
    from embedding_operator.api.crd import render_crd

    sys.stdout.write(render_crd())
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
    crd.set_defaults(handler=_crd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Command = args.handler
    return handler(args)
