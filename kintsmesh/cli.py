"""The ``kintsmesh`` command: thin argument parsing over the stack, connect, simulate and bench code."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from kintsmesh.errors import KintsmeshError
from kintsmesh.registry.catalog import LEVELS
from kintsmesh.settings import DEPARTMENTS, Settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _print_status(rows: Sequence[object]) -> None:
    print(f"{'component':<12}{'state':<20}{'port':<8}{'pid':<10}")
    for row in rows:
        print(f"{row.name:<12}{row.state:<20}{row.port:<8}{row.pid or '-'!s:<10}")  # type: ignore[attr-defined]


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh import stack

    if args.action == "up":
        print(f"starting the stack under {settings.stack_dir}", flush=True)
        _print_status(stack.up(settings, args.components or None))
        print("stop it with: kintsmesh stack down   (or: make down)")
        return 0
    if args.action == "down":
        stopped = stack.down(settings, args.components or None)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
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


def cmd_connect(args: argparse.Namespace, settings: Settings) -> int:
    from connect.client import ConnectClient
    from connect.connectors import connector_configs

    client = ConnectClient(settings.connect_endpoint)
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


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.stage == "resolve":
        from kintsmesh.bench.resolve import DEFAULT_PEOPLE, main as run_resolve_bench

        run_resolve_bench(settings, args.people or DEFAULT_PEOPLE, args.seed, args.dirty_rate, args.today or date.today(), None)
        return 0
    if args.stage == "dossier":
        from kintsmesh.bench.dossier import run_dossier_bench

        run_dossier_bench(settings, people=args.people or 1_000_000, count=args.requests)
        return 0
    if args.stage == "events":
        from kintsmesh.bench.dossier import run_events_bench

        run_events_bench(settings, rate=args.rate, duration_s=args.duration, people=args.people or 1_000_000)
        return 0
    if args.stage == "batch":
        from kintsmesh.bench.batch import run_batch_bench

        run_batch_bench(settings, rows=args.rows, file_format=args.format)
        return 0
    if args.stage == "merge":
        from kintsmesh.bench.merge import run_merge_bench

        run_merge_bench(settings, rate=args.rate, duration_s=args.duration)
        return 0
    if args.stage == "normalize":
        from kintsmesh.bench.normalize import run_normalize_bench

        run_normalize_bench(settings, events=args.events)
        return 0
    from kintsmesh.bench.capture import run_capture_bench

    run_capture_bench(settings, rate=args.rate, duration_s=args.duration, burst=args.burst)
    return 0


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.registry.client import SchemaRegistry

    registry = SchemaRegistry(settings)
    if args.action == "register":
        if not args.file or not args.subject:
            raise KintsmeshError("schemas register: give FILE (an .avsc) and --subject")
        with open(args.file) as fh:
            version = registry.register(args.subject, json.load(fh))
        print(f"{version.subject} version {version.version} id {version.id}")
        return 0
    if args.action == "compatibility":
        if args.level:
            registry.client.set_compatibility(args.subject, args.level)
        print(f"{args.subject or '(global)'}: {registry.client.get_compatibility(args.subject)}")
        return 0
    versions = registry.versions()
    if args.action == "show":
        if args.subject not in versions:
            raise KintsmeshError(f"schemas show: no subject {args.subject!r} (kintsmesh schemas list)")
        print(json.dumps(versions[args.subject][-1].schema, ensure_ascii=False, indent=2))
        return 0
    for subject, held in sorted(versions.items()):
        print(f"{subject:<48} versions {len(held):<3} latest {held[-1].version} id {held[-1].id}")
    return 0


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.registry.server import serve

    serve(settings, args.port)
    return 0


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    log_level = {"crit": "critical", "warn": "warning"}.get(args.loglevel, args.loglevel)
    if args.action in ("resolve", "merge"):
        from sinks.worker import run_merge_worker

        run_merge_worker(settings, args.action, log_level=log_level)
        return 0
    if args.action == "events":
        from sinks.events import run_event_worker

        run_event_worker(settings, log_level=log_level)
        return 0
    from streams.worker import run_worker

    bench = (args.bench_inputs.split(","), args.bench_prefix, args.bench_app_id) if args.bench_inputs else None
    run_worker(settings, log_level=args.loglevel, datadir=args.datadir, bench=bench, passthrough=args.passthrough)
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    if not args.supervised:
        # librdkafka's admin client has aborted the process during a broker restart: a supervisor starts
        # the exporter again, its own process (the pid file's) never dies of it
        from kintsmesh.stack.supervise import supervise

        return supervise("lag exporter", [sys.executable, "-m", "kintsmesh.cli", "monitor", "serve",
                                          "--datadir", args.datadir, "--supervised"])
    from monitoring.exporter import serve

    serve(settings)
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from monitoring.status import show

    return show(settings, watch_s=args.watch)


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streams import dlq

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
        for department in departments:
            for record in dlq.show(settings, department, args.reason, args.limit):
                print(json.dumps(record, ensure_ascii=False, indent=2, default=str))
        return 0
    for department in departments:
        print(f"  {department:<14} replayed {dlq.replay(settings, department, args.reason):,}")
    return 0


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import batch

    if args.action == "extract":
        rows = batch.extract(settings, args.dept, args.table, args.file, limit=args.limit)
        print(f"{args.dept}.{args.table or batch.EXTRACT_TABLES.get(args.dept)}: {rows:,} rows written to {args.file}")
        return 0
    report = batch.load_batch(settings, args.dept, args.date, Path(args.file), table=args.table,
                              progress=sys.stderr.isatty())
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else batch.summary(report))
    return 0


def _library(settings: Settings) -> Any:
    import psycopg

    from kintsmesh.settings import RESOURCE_LIBRARY_DB

    return psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB))


def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import review

    with _library(settings) as conn:
        if args.action == "list":
            items = review.open_reviews(conn, args.limit)
            for item in items:
                print(json.dumps(item, ensure_ascii=False, default=str))
            print(f"{len(items)} open review(s) shown")
            return 0
        if args.review_id is None:
            raise KintsmeshError(f"review {args.action}: give the review id (kintsmesh review list)")
        target = review.decide(conn, args.review_id, args.action == "accept", args.to)
        print(f"review {args.review_id} {args.action}ed: linked to {target}")
    return 0


def cmd_explain(args: argparse.Namespace, settings: Settings) -> int:
    from sinks import review

    with _library(settings) as conn:
        if args.valid_at or args.recorded_at:
            result = review.as_of(conn, args.canonical_id, args.valid_at, args.recorded_at)
            if result is None:
                raise KintsmeshError(f"{args.canonical_id}: no version at that time")
        else:
            result = review.explain(conn, args.canonical_id)
    print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    return 0


def cmd_events(args: argparse.Namespace, settings: Settings) -> int:
    from streams.events.rules import rules

    if args.action == "rules":
        for rule in rules().values():
            source = f"{rule.entity} changes" if rule.trigger == "change" else "daily pass over persons"
            print(f"{rule.name:<26} {rule.trigger:<9} {source:<26} {rule.topic}")
            print(f"{'':<26} {rule.description}")
        return 0
    if args.action == "daily":
        from sinks.events import run_daily

        first = args.date or _today_cst()
        for result in run_daily(settings, first, args.until or first):
            print(json.dumps(result, ensure_ascii=False))
        return 0
    with _library(settings) as conn:
        where: list[str] = ["true"]
        params: list[Any] = []
        for column, value in (("event_type", args.type), ("subject_code", args.subject), ("occurred_on", args.date)):
            if value:
                where.append(f"{column} = %s")
                params.append(value)
        rows = conn.execute(f"SELECT event, published_at FROM life_event WHERE {' AND '.join(where)}"
                            " ORDER BY seq DESC LIMIT %s", (*params, args.limit)).fetchall()
        # held back for their subject (a birth waiting for its newborn's person record): not published yet
        held = conn.execute(
            f"SELECT event, release_at FROM (SELECT event, release_at, event->>'event_type' AS event_type,"
            " event->>'subject_code' AS subject_code, (event->>'occurred_on')::date AS occurred_on FROM held_event) h"
            f" WHERE {' AND '.join(where)} ORDER BY release_at LIMIT %s", (*params, args.limit)).fetchall()
    for event, published in reversed(rows):
        print(json.dumps({**event, "published_at": published}, ensure_ascii=False, default=str))
    for event, release_at in held:
        print(json.dumps({**event, "held_until": release_at}, ensure_ascii=False, default=str))
    print(f"{len(rows)} life event(s) shown" + (f", {len(held)} held back for their subject" if held else ""))
    return 0


def cmd_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    from streams.events.subscriptions import subscriptions

    with _library(settings) as conn:
        cursors = {name: (last, delivered) for name, last, delivered in conn.execute(
            "SELECT subscriber, last_seq, delivered FROM subscription")}
        newest_row = conn.execute("SELECT coalesce(max(seq), 0) FROM life_event").fetchone()
    newest = int(newest_row[0]) if newest_row else 0
    for name, sub in subscriptions().items():
        last, delivered = cursors.get(name, (None, 0))
        state = (f"delivered {delivered:,}, {newest - last:,} events still to look at" if last is not None
                 else "not started (the life-event worker starts it)")
        print(f"{name:<24} {sub.topic:<36} {state}")
        print(f"{'':<24} events  {', '.join(sub.events)}")
        fields = [f for f in sub.fields if f != "attributes"] + [f"attributes.{a}" for a in sub.attributes]
        print(f"{'':<24} fields  {', '.join(fields)}")
        if sub.filters or sub.backfill_from:
            print(f"{'':<24} filters {sub.filters or '-'}  back-fill from {sub.backfill_from or '-'}")
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.api import serve
    from kintsmesh.settings import RESOURCE_LIBRARY_DB

    serve(settings, args.database or RESOURCE_LIBRARY_DB, args.port)
    return 0


def cmd_dossier(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.dossier import school_enrolment

    with _library(settings) as conn:
        result = school_enrolment(conn, args.ric, requester=args.requester, purpose=args.purpose, level=args.level,
                                  year=args.year, channel="cli")
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return 0
    child, verdict = result["child"], result["verdict"]
    print(f"school enrolment dossier, {args.level} {result['enrolment']['year']}: {verdict['verdict']}")
    for reason in verdict["reasons"]:
        print(f"  - {reason}")
    if child:
        print(f"child      {child['name']} {child['ric']} born {child['birth_date']}  household {child['household_no'] or '-'}"
              f"  {child['address'] or ''}")
    for g in result["guardians"]:
        filings = ", ".join(f["certificate_no"] for f in g["rental_filings"]) or "-"
        print(f"{g['relation']:<10} {g['name']} {g['ric']}  household {g['household_no'] or '-'}  insured "
              f"{g['insured_months']} months (latest {g['latest_insured_month'] or '-'})  rental filings {filings}")
    certificate = result["birth_certificate"]
    print(f"birth certificate  {certificate['certificate_no'] + ' issued ' + str(certificate['issued_date']) if certificate else '-'}")
    print(f"(access logged: {args.requester}, purpose {args.purpose!r}; see kintsmesh audit {args.ric})")
    return 0 if child else 4


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.dossier import audit_history

    with _library(settings) as conn:
        accesses = audit_history(conn, args.ric, args.limit)
    for a in accesses:
        print(f"{a['requested_at'][:19]}  {a['requester']:<28} {a['channel']:<10} {a['resource']:<26} "
              f"purpose: {a['purpose']}  fields: {', '.join(a['fields'])}  -> {a['outcome']}")
    print(f"{len(accesses)} access(es) to {args.ric}'s data")
    return 0


def _today_cst() -> date:
    from streams.events.predicates import CST

    return datetime.now(CST).date()


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.stack.migrate import migrate_all

    for database, applied in migrate_all(settings).items():
        print(f"  {database:<18} {'applied ' + ', '.join(applied) if applied else 'up to date'}")
    return 0


def cmd_config(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kintsmesh", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start / stop / inspect the local stack")
    p.add_argument("action", choices=["up", "down", "status", "logs", "reset"])
    p.add_argument("components", nargs="*", help="postgres kafka registry connect normalize resolve merge events api monitor prometheus (default: all)")
    p.add_argument("-n", "--lines", type=int, default=40, help="logs: lines per component")
    p.set_defaults(handler=cmd_stack)

    p = sub.add_parser("connect", help="Debezium connectors through the Kafka Connect REST API")
    p.add_argument("action", choices=["apply", "status", "restart", "stop", "resume"],
                   help="stop keeps the connector's config and offsets; resume picks up where it stopped")
    p.add_argument("departments", nargs="*", metavar="DEPARTMENT", help=f"one of {', '.join(DEPARTMENTS)} (default: all)")
    p.add_argument("--wait", type=float, default=0, help="apply: wait up to S seconds for every task to run")
    p.set_defaults(handler=cmd_connect)

    p = sub.add_parser("simulate", help="a synthetic city writing to the department databases")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--initial", type=int, metavar="N", help="bulk-load a population of N people")
    p.add_argument("--rate", type=float, metavar="R", help="live changes per second across departments")
    p.add_argument("--duration", type=float, default=60.0, metavar="S", help="seconds of live changes")
    p.add_argument("--dirty-rate", type=float, default=0.03, help="share of department values written dirty")
    p.add_argument("--today", type=date.fromisoformat, default=None, help="the city's 'today' (default: the real date)")
    p.add_argument("--keep-existing", action="store_true", help="--initial: keep a city already loaded instead of failing")
    p.add_argument("--truth", default=None, help="ground-truth file (default .stack/sim/ground_truth.jsonl)")
    p.set_defaults(handler=cmd_simulate)

    p = sub.add_parser("bench", help="benchmarks (print a table, write bench/results/*.json)")
    p.add_argument("stage", choices=["capture", "normalize", "resolve", "merge", "batch", "dossier", "events"])
    p.add_argument("--people", type=int, default=None,
                   help="resolve: city size (20,000); dossier, events: people in the scratch library (1,000,000)")
    p.add_argument("--requests", type=int, default=10000, help="dossier: requests for random children")
    p.add_argument("--seed", type=int, default=2026, help="resolve: city seed")
    p.add_argument("--dirty-rate", type=float, default=0.05, help="resolve: share of dirty values (about 10%% of person"
                   " mentions then lack a usable ID)")
    p.add_argument("--today", type=date.fromisoformat, default=None, help="resolve: the city's 'today'")
    p.add_argument("--rows", type=int, default=1_000_000, help="batch: rows in the extract")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv",
                   help="batch: the extract's format (batch-parquet.json for parquet)")
    p.add_argument("--events", type=int, default=60000, help="normalize: raw events per run")
    p.add_argument("--rate", type=float, default=1000.0, help="latency run: changes per second")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    p.add_argument("--burst", type=int, default=60000, help="throughput run: changes written as fast as possible")
    p.set_defaults(handler=cmd_bench)

    p = sub.add_parser("schemas", help="Avro schemas in the schema registry (KINTSMESH_REGISTRY_URL)")
    p.add_argument("action", choices=["list", "register", "show", "compatibility"])
    p.add_argument("file", nargs="?", help="register: the .avsc file")
    p.add_argument("--subject", help="register / show / compatibility: subject, e.g. gldm.person.candidates-value")
    p.add_argument("--level", choices=LEVELS, help="compatibility: set this level (the subject's, or the global one)")
    p.set_defaults(handler=cmd_schemas)

    p = sub.add_parser("registry", help="the schema registry, Confluent REST API (stack up starts one)")
    p.add_argument("action", choices=["serve"])
    p.add_argument("--datadir", default="", help=argparse.SUPPRESS)  # marks the process as the stack's
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_registry)

    p = sub.add_parser("streams", help="stream processing workers (Faust)")
    p.add_argument("action", choices=["worker", "resolve", "merge", "events"],
                   help="worker: normalize (Faust); resolve: identity decisions, repartitioned by canonical id;"
                        " merge: golden records (more merge processes share gldm.*.resolved, each with its own"
                        " KINTSMESH_MERGE_METRICS_PORT); events: life events")
    p.add_argument("--loglevel", default="warn", choices=["crit", "error", "warn", "info", "debug"])
    p.add_argument("--datadir", default="", help="Faust's data folder (default .stack/normalize)")
    # used by `kintsmesh bench normalize` to run a worker on its own topics
    p.add_argument("--bench-inputs", default="", help=argparse.SUPPRESS)
    p.add_argument("--bench-prefix", default="", help=argparse.SUPPRESS)
    p.add_argument("--bench-app-id", default="", help=argparse.SUPPRESS)
    p.add_argument("--passthrough", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_streams)

    p = sub.add_parser("monitor", help="the lag exporter: connector states, consumer lag, DLQ sizes, T+1 batches")
    p.add_argument("action", choices=["serve"])
    p.add_argument("--datadir", default="", help=argparse.SUPPRESS)  # marks the process as the stack's
    p.add_argument("--supervised", action="store_true", help=argparse.SUPPRESS)  # the exporter itself
    p.set_defaults(handler=cmd_monitor)

    p = sub.add_parser("status", help="every department at a glance: connector, events/s, sync lag, DLQ, T+1")
    p.add_argument("--watch", type=float, nargs="?", const=5.0, default=None, metavar="S",
                   help="refresh every S seconds (default 5) until Ctrl-C")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("dlq", help="inspect and replay what the normalize stage rejected")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("departments", nargs="*", metavar="DEPARTMENT")
    p.add_argument("--reason", help="only records with this reason code")
    p.add_argument("-n", "--limit", type=int, default=5, help="show: records per department")
    p.set_defaults(handler=cmd_dlq)

    p = sub.add_parser("batch", help="T+1: load a department's nightly extract (or write one from its database)")
    p.add_argument("action", choices=["load", "extract"])
    p.add_argument("file", help="load: the extract (CSV, or Parquet when it ends in .parquet); extract: where to"
                   " write it (the same two formats)")
    p.add_argument("--dept", required=True, choices=list(DEPARTMENTS))
    p.add_argument("--date", type=date.fromisoformat, default=date.today(), help="load: the batch date (YYYY-MM-DD)")
    p.add_argument("--table", default=None, help="the source table (load: default from the CSV header)")
    p.add_argument("--json", action="store_true", help="load: print the reconciliation report as JSON")
    p.add_argument("--limit", type=int, help="extract: only the first N rows by primary key (a sample)")
    p.set_defaults(handler=cmd_batch)

    p = sub.add_parser("review", help="identity decisions waiting for a person")
    p.add_argument("action", choices=["list", "accept", "reject"])
    p.add_argument("review_id", nargs="?", type=int)
    p.add_argument("--to", help="accept: link to this canonical id instead of the top candidate")
    p.add_argument("-n", "--limit", type=int, default=20)
    p.set_defaults(handler=cmd_review)

    p = sub.add_parser("explain", help="a golden record: its sources, why they were linked, where each field came from")
    p.add_argument("canonical_id")
    p.add_argument("--valid-at", type=datetime.fromisoformat, help="the version true at this time (source time)")
    p.add_argument("--recorded-at", type=datetime.fromisoformat, help="the version the library held at this time")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("events", help="life events: the rules, the daily pass (or a back-fill), what was detected")
    p.add_argument("action", choices=["rules", "daily", "list"])
    p.add_argument("--date", type=date.fromisoformat, default=None,
                   help="daily: the day to pass (default today, Asia/Shanghai); list: events that occurred that day")
    p.add_argument("--until", type=date.fromisoformat, default=None, help="daily: back-fill every day to this one")
    p.add_argument("--type", help="list: only this event type")
    p.add_argument("--subject", help="list: only this subject (RIC or USCC)")
    p.add_argument("-n", "--limit", type=int, default=20)
    p.set_defaults(handler=cmd_events)

    p = sub.add_parser("subscriptions", help="subscribers of life events: their topics, allowances and progress")
    p.add_argument("action", choices=["list"])
    p.set_defaults(handler=cmd_subscriptions)

    p = sub.add_parser("dossier", help="the proactive school-enrolment dossier of a child, with the rule's verdict")
    p.add_argument("kind", choices=["school-enrolment"])
    p.add_argument("ric", help="the child's resident identity number")
    p.add_argument("--requester", required=True, help="who asks (logged)")
    p.add_argument("--purpose", required=True, help="why (logged)")
    p.add_argument("--level", choices=["primary", "junior_high"], default="primary")
    p.add_argument("--year", type=int, default=None, help="enrolment year (default: the coming September)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_dossier)

    p = sub.add_parser("audit", help="a citizen's access history: who looked at their data, when and why")
    p.add_argument("ric")
    p.add_argument("-n", "--limit", type=int, default=100)
    p.set_defaults(handler=cmd_audit)

    p = sub.add_parser("api", help="the dossier HTTP endpoint (stack up starts one)")
    p.add_argument("action", choices=["serve"])
    p.add_argument("--datadir", default="", help=argparse.SUPPRESS)  # marks the process as the stack's
    p.add_argument("--database", default="", help=argparse.SUPPRESS)  # bench dossier: its scratch library
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_api)

    p = sub.add_parser("migrate", help="apply pending schema migrations")
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser("config", help="print the effective settings (secrets masked)")
    p.set_defaults(handler=cmd_config)
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


if __name__ == "__main__":
    sys.exit(main())
