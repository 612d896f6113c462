"""Capture and its health: ``kintsmesh connect | simulate | status | dlq``."""

from __future__ import annotations

import argparse
import json
from datetime import date
from typing import Any

from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import DEMO_SEED, DEPARTMENTS, Settings


def cmd_connect(args: argparse.Namespace, settings: Settings) -> int:
    from connect.client import ConnectClient
    from connect.connectors import connector_configs

    client = ConnectClient.of(settings)
    departments = args.departments or list(DEPARTMENTS)
    unknown = set(departments) - set(DEPARTMENTS)
    if unknown:
        raise KintsmeshError(f"connect: unknown department(s) {sorted(unknown)}; known: {', '.join(DEPARTMENTS)}")
    if args.action == "apply":
        for name, config in connector_configs(settings, departments).items():
            outcome = client.apply(name, config)
            print(f"  {name:<28} {outcome}")
        if args.wait:
            client.wait_running([f"kintsmesh-{d}" for d in departments], timeout_s=args.wait)
        return 0
    if args.action in ("restart", "stop", "resume"):
        for department in departments:
            getattr(client, args.action)(f"kintsmesh-{department}")
            print(f"  kintsmesh-{department:<18} {args.action} requested")
        return 0
    # status
    healthy = True
    for department in departments:
        state = client.status(f"kintsmesh-{department}")
        healthy &= state.running
        print(f"  {state.name:<28} connector={state.connector_state:<10} tasks={','.join(t.state for t in state.tasks) or '-'}")
        for task in state.tasks:
            if task.trace:
                print(f"    task {task.id} failed:\n" + "\n".join("      " + l for l in task.trace.splitlines()[:15]))
    return 0 if healthy else 3


def cmd_simulate(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.simulate.runner import run_simulation

    if args.initial is None and args.rate is None:
        raise KintsmeshError("simulate: give --initial N (bulk population) and/or --rate R --duration S (live changes)")
    run_simulation(
        settings,
        seed=args.seed,
        initial=args.initial,
        rate=args.rate,
        duration_s=args.duration,
        dirty_rate=args.dirty_rate,
        truth_path=args.truth,
        today=args.today,
        keep_existing=args.keep_existing,
    )
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.status import show

    return show(settings, watch_s=args.watch)


def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from rich.console import Console

    from monitoring.lag import wait_for_pipeline
    from monitoring.verify import check

    console = Console()
    if args.wait > 0:
        left = wait_for_pipeline(settings, timeout_s=args.wait)
        if any(left.values()):
            console.print(f"[yellow]still in the pipeline after {args.wait:g} s: {left}; rows committed in the last"
                          f" {args.grace:g} s count as in flight[/]")
    result = check(settings, grace_s=args.grace, departments=args.departments or None)
    for line in result.render():
        console.print(line)
    return 0 if result.ok else 1


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import dlq

    known = (*DEPARTMENTS, "merge", "events")   # dlq.merge / dlq.events: what the merge / life-event worker could not read
    departments = args.departments or list(known)
    unknown = set(departments) - set(known)
    if unknown:
        raise KintsmeshError(f"dlq: unknown DLQ(s) {sorted(unknown)}; known: {', '.join(known)}")
    if args.action == "list":
        for department, reasons in dlq.summary(settings, departments).items():
            detail = ", ".join(f"{reason} {n:,}" for reason, n in reasons.most_common()) or "-"
            print(f"  {department:<14} {sum(reasons.values()):>8,}  {detail}")
        return 0
    if args.action == "show":
        from kintsmesh.security.audit import cli_access

        cli_access(settings, "*", f"dlq:{','.join(departments)}", args.purpose, ["rejected_records"])
        for department in departments:
            for record in dlq.show(settings, department, args.reason, args.limit):
                print(json.dumps(record, ensure_ascii=False, indent=2, default=str))
        return 0
    for department in departments:
        print(f"  {department:<14} replayed {dlq.replay(settings, department, args.reason):,}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("connect", help="Debezium connectors through the Kafka Connect REST API")
    p.add_argument("action", choices=["apply", "status", "restart", "stop", "resume"],
                   help="stop keeps the connector's config and offsets; resume picks up where it stopped")
    p.add_argument("departments", nargs="*", metavar="DEPARTMENT", help=f"one of {', '.join(DEPARTMENTS)} (default: all)")
    p.add_argument("--wait", type=float, default=0, help="apply: wait up to S seconds for every task to run")
    p.set_defaults(handler=cmd_connect)

    p = sub.add_parser("simulate", help="a synthetic city writing to the department databases")
    p.add_argument("--seed", type=int, default=DEMO_SEED)
    p.add_argument("--initial", type=int, metavar="N", help="bulk-load a population of N people")
    p.add_argument("--rate", type=float, metavar="R", help="live changes per second across departments")
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of live changes")
    p.add_argument("--dirty-rate", type=float, default=0.03, help="share of department values written dirty")
    p.add_argument("--today", type=date.fromisoformat, default=None, help="the city's 'today' (default: the real date)")
    p.add_argument("--keep-existing", action="store_true", help="--initial: keep a city already loaded instead of failing")
    p.add_argument("--truth", default=None, help="ground-truth file (default .stack/sim/ground_truth.jsonl)")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("verify", help="reconcile: every department row is in the library or a DLQ; nothing twice"
                                      " (exit 1 when anything is off)")
    p.add_argument("departments", nargs="*", help="default: every department with a mapping")
    p.add_argument("--grace", type=float, default=60.0,
                   help="a row committed this many seconds ago or less may still be on its way (default 60)")
    p.add_argument("--wait", type=float, default=60.0,
                   help="first wait this long at most for the stages to drain (default 60; 0: do not wait)")
    p.set_defaults(handler=cmd_verify)

    p = sub.add_parser("status", help="every department at a glance: connector, events/s, sync lag, DLQ, T+1")
    p.add_argument("--watch", type=float, nargs="?", const=5.0, default=None, metavar="S",
                   help="refresh every S seconds (default 5) until Ctrl-C")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("dlq", help="inspect and replay what the normalize stage rejected")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("departments", nargs="*", metavar="DEPARTMENT")
    p.add_argument("--reason", help="only records with this reason code")
    p.add_argument("-n", "--limit", type=int, default=5, help="show: records per department")
    p.add_argument("--purpose", help="show: why you read them (required; audited with your OS user)")
    p.set_defaults(handler=cmd_dlq)
