"""``kintsmesh stack | migrate | config``: the local stack's processes, schema migrations and settings."""

from __future__ import annotations

import argparse
import json
import subprocess
from collections.abc import Sequence
from typing import Any

from kintsmesh.settings import Settings


def _print_status(rows: Sequence[object]) -> None:
    print(f"{'component':<12}{'state':<20}{'port':<8}{'pid':<10}")
    for row in rows:
        print(f"{row.name:<12}{row.state:<20}{row.port:<8}{row.pid or '-'!s:<10}")  # type: ignore[attr-defined]


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh import stack

    if args.action == "supervise":
        from kintsmesh.stack.supervise import serve

        serve([c for c in stack.components(settings) if c.name != "supervisor"], settings.supervisor_metrics_port,
              settings.metrics_host)
        return 0
    if args.action == "up":
        print(f"starting the stack under {settings.stack_dir}", flush=True)
        _print_status(stack.up(settings, args.components or None))
        print("stop it with: kintsmesh stack down   (or: make down)")
        return 0
    if args.action in ("down", "restart"):
        stopped = stack.down(settings, args.components or None)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), flush=True)
        if args.action == "restart":   # e.g. a stage after a code change: its new code runs from now on
            _print_status(stack.up(settings, args.components or None))
        return 0
    if args.action == "reset":
        stack.reset(settings)
        print(f"stack stopped and its data deleted (jars kept under {settings.stack_dir})")
        return 0
    if args.action == "status":
        rows = stack.status(settings)
        _print_status(rows)
        wanted = set(args.components) if args.components else None
        return 0 if all(r.healthy for r in rows if wanted is None or r.name in wanted) else 3
    # logs
    names = args.components or [c.name for c in stack.components(settings)]
    for name in names:
        path = stack.log_path(settings, name)
        print(f"==> {name}: {path} <==", flush=True)
        subprocess.run(["tail", "-n", str(args.lines), path], check=False)
    return 0


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.stack import configure_postgres

    applied, roles = configure_postgres(settings)
    for database, names in applied.items():
        print(f"  {database:<18} {'applied ' + ', '.join(names) if names else 'up to date'}")
    print(f"  roles              {', '.join(roles)}")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("stack", help="start / stop / inspect the local stack")
    p.add_argument("action", choices=["up", "down", "restart", "status", "logs", "reset", "supervise"],
                   help="restart: down, then up; supervise: the supervisor process itself (stack up starts it)")
    p.add_argument("components", nargs="*", help="postgres kafka registry connect normalize resolve merge events api"
                                                 " monitor prometheus supervisor (default: all)")
    p.add_argument("--datadir", default="", help=argparse.SUPPRESS)  # marks the process as the stack's
    p.add_argument("-n", "--lines", type=int, default=40, help="logs: lines per component")
    p.set_defaults(handler=cmd_stack)

    p = sub.add_parser("migrate", help="apply pending schema migrations")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.set_defaults(handler=cmd_config)
