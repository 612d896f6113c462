"""The ``kintsmesh`` command: thin argument parsing over the stack, connect, simulate, the stages and bench.

Each command group (a module of this package) registers its own subcommands; a handler parses
nothing itself, calls one function of the code it fronts and prints the result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kintsmesh.cli import bench, capture, library, schemas, services, stack
from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import Settings

GROUPS = (stack, capture, services, schemas, library, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kintsmesh", description="The Kintsmesh change-data-capture bus: the local"
                                     " stack, connectors, the simulated city, the stages, the resource library, benchmarks.")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    try:
        return int(args.handler(args, settings))
    except KintsmeshError as exc:
        print(f"kintsmesh: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kintsmesh: interrupted", file=sys.stderr)
        return 130
