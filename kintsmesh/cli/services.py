"""The long-running processes ``kintsmesh stack up`` starts: ``registry``, ``streams`` (the stages), ``monitor``, ``api``."""

from __future__ import annotations

import argparse
from typing import Any

from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import Settings


def cmd_registry(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.registry.server import serve

    serve(settings, args.port)
    return 0


def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    log_level = {"crit": "critical", "warn": "warning"}.get(args.loglevel, args.loglevel)
    if args.action in ("resolve", "merge", "events"):
        from kintsmesh.runtime import tune_gc_for_batches

        tune_gc_for_batches()
    if args.action == "resolve":
        from streams.resolve.worker import run_resolve_worker

        run_resolve_worker(settings, log_level=log_level)
        return 0
    if args.action == "merge":
        from streams.merge.worker import run_merge_worker

        run_merge_worker(settings, log_level=log_level)
        return 0
    if args.action == "events":
        from streams.events.worker import run_event_worker

        run_event_worker(settings, log_level=log_level)
        return 0
    from streams.normalize.worker import run_worker

    bench = (args.bench_inputs.split(","), args.bench_prefix, args.bench_app_id) if args.bench_inputs else None
    run_worker(settings, log_level=args.loglevel, datadir=args.datadir, bench=bench, passthrough=args.passthrough)
    return 0


def cmd_monitor(args: argparse.Namespace, settings: Settings) -> int:
    # librdkafka's admin client has aborted the process during a broker restart: the stack's supervisor
    # starts it again
    from monitoring.exporter import serve

    serve(settings)
    return 0


def cmd_api(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.api import serve
    from kintsmesh.settings import RESOURCE_LIBRARY_DB

    serve(settings, args.database or RESOURCE_LIBRARY_DB, args.port)
    return 0


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.security.tokens import clients, issue

    if args.action == "clients":
        for client in clients().values():
            print(f"{client.client_id:<20} {' '.join(sorted(client.scopes)):<28} {client.requests_per_minute:>6}/min"
                  f"  {client.purpose}")
        return 0
    if bool(args.client) == bool(args.citizen):
        raise KintsmeshError("token issue: name a registered --client, or a --citizen RIC (one of the two)")
    print(issue(settings.secrets_dir, args.client, args.citizen, args.ttl))
    return 0


def cmd_secrets(args: argparse.Namespace, settings: Settings) -> int:
    if args.compose:
        from kintsmesh.stack.compose import render

        written = render(settings)
        print(f"{settings.stack_dir}: {len(written)} files for docker-compose (secrets never replaced)")
        return 0
    from kintsmesh.security.install import initialise

    names = initialise(settings, tuple(h for h in args.hosts.split(",") if h))
    print(f"{settings.secrets_dir} (mode 0700): {len(names)} files; nothing existing was replaced")
    return 0


def cmd_setup(args: argparse.Namespace, settings: Settings) -> int:
    """What ``stack up`` does once PostgreSQL and Kafka answer, for a stack it did not start (docker-compose,
    an external cluster): migrations, PostgreSQL roles, Kafka principals and ACLs, the pipeline's topics."""
    from kintsmesh.cli.stack import cmd_migrate
    from kintsmesh.stack import configure_kafka

    cmd_migrate(args, settings)
    principals = configure_kafka(settings)
    print(f"  kafka              {len(principals)} principals, {sum(principals.values())} ACLs")
    print("  topics             every pipeline topic exists")
    return 0


def register(sub: Any) -> None:
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
    p.set_defaults(handler=cmd_monitor)

    p = sub.add_parser("api", help="the dossier HTTP endpoint (stack up starts one)")
    p.add_argument("action", choices=["serve"])
    p.add_argument("--datadir", default="", help=argparse.SUPPRESS)  # marks the process as the stack's
    p.add_argument("--database", default="", help=argparse.SUPPRESS)  # bench dossier: its scratch library
    p.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(handler=cmd_api)

    p = sub.add_parser("token", help="API bearer tokens from the installation's local issuer")
    p.add_argument("action", choices=["issue", "clients"])
    p.add_argument("--client", help="a client registered in kintsmesh/security/api_clients.yaml")
    p.add_argument("--citizen", metavar="RIC", help="a citizen's token: their own access history only")
    p.add_argument("--ttl", type=int, default=3600, help="seconds the token is valid (default 3600)")
    p.set_defaults(handler=cmd_token)

    p = sub.add_parser("secrets", help="the installation's secrets and CA (stack up makes them on first use)")
    p.add_argument("action", choices=["init"])
    p.add_argument("--hosts", default="", help="more names the server certificates must carry, comma-separated")
    p.add_argument("--compose", action="store_true", help="also the configuration files docker-compose's"
                   " containers read (its init service runs this)")
    p.set_defaults(handler=cmd_secrets)

    p = sub.add_parser("setup", help="migrations, PostgreSQL roles, Kafka principals and ACLs, pipeline topics"
                       " (stack up does it; for docker-compose or an external cluster)")
    p.set_defaults(handler=cmd_setup)
