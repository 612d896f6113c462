"""``kintsmesh bench <stage>``: the benchmarks (each prints a table and writes bench/results/*.json)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from kintsmesh.settings import Settings


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.stage == "resolve" and args.hard:
        from kintsmesh.bench import resolve_hard

        resolve_hard.main(args.people or resolve_hard.DEFAULT_PEOPLE, args.seed if args.seed != 2026 else
                          resolve_hard.DEFAULT_SEED, args.today or date(2026, 12, 1), None, with_splink=not args.no_splink)
        return 0
    if args.stage == "resolve":
        from kintsmesh.bench.resolve import DEFAULT_PEOPLE
        from kintsmesh.bench.resolve import main as run_resolve_bench

        run_resolve_bench(settings, args.people or DEFAULT_PEOPLE, args.seed, args.dirty_rate, args.today or date.today(), None)
        return 0
    if args.stage == "dossier":
        from kintsmesh.bench.dossier import run_dossier_bench

        run_dossier_bench(settings, people=args.people or 1_000_000, count=args.requests)
        return 0
    if args.stage == "evidence":
        from kintsmesh.bench.dossier import run_evidence_bench

        run_evidence_bench(settings, people=args.people or 1_000_000, count=args.requests)
        return 0
    if args.stage == "services":
        from kintsmesh.bench.dossier import run_services_bench

        run_services_bench(settings, people=args.people or 1_000_000, count=args.requests)
        return 0
    if args.stage == "aggregates":
        from kintsmesh.bench.aggregates import run_aggregates_bench

        run_aggregates_bench(settings, rate=args.rate or 300.0, duration_s=args.duration, people=args.people or 1_000_000)
        return 0
    if args.stage == "events":
        from kintsmesh.bench.dossier import run_events_bench

        run_events_bench(settings, rate=args.rate or 1000.0, duration_s=args.duration, people=args.people or 1_000_000)
        return 0
    if args.stage == "batch":
        from kintsmesh.bench.batch import run_batch_bench

        run_batch_bench(settings, rows=args.rows, file_format=args.format)
        return 0
    if args.stage == "merge":
        from kintsmesh.bench.merge import run_merge_bench

        run_merge_bench(settings, rate=args.rate or 1000.0, duration_s=args.duration, runs=args.runs)
        return 0
    if args.stage == "chaos":
        from kintsmesh.bench.chaos import run_chaos_bench

        result = run_chaos_bench(settings, changes=args.changes, rate=args.rate or 400.0,
                                 kills=args.kills)
        return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1
    if args.stage == "normalize":
        from kintsmesh.bench.normalize import run_normalize_bench

        run_normalize_bench(settings, events=args.events)
        return 0
    from kintsmesh.bench.capture import run_capture_bench

    run_capture_bench(settings, rate=args.rate or 1000.0, duration_s=args.duration, burst=args.burst)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks (print a table, write bench/results/*.json)")
    p.add_argument("stage", choices=["capture", "normalize", "resolve", "merge", "batch", "dossier", "evidence", "services",
                                      "aggregates", "events", "chaos"])
    p.add_argument("--people", type=int, default=None,
                   help="resolve: city size (20,000); dossier, evidence, services, aggregates, events: people in the"
                        " scratch library"
                        " (1,000,000)")
    p.add_argument("--requests", type=int, default=10000, help="dossier, evidence, services: requests (random children; parents;"
                   " residents)")
    p.add_argument("--seed", type=int, default=2026, help="resolve: city seed (--hard: 7)")
    p.add_argument("--hard", action="store_true", help="resolve: the hard set (kintsmesh.bench.hardset, 50,000"
                   " people), in memory, ours against Splink on the same records (resolve-hard.json)")
    p.add_argument("--no-splink", action="store_true", help="resolve --hard: ours only")
    p.add_argument("--dirty-rate", type=float, default=0.05, help="resolve: share of dirty values (about 10%% of person"
                   " mentions then lack a usable ID)")
    p.add_argument("--today", type=date.fromisoformat, default=None, help="resolve: the city's 'today'")
    p.add_argument("--rows", type=int, default=1_000_000, help="batch: rows in the extract")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv",
                   help="batch: the extract's format (batch-parquet.json for parquet)")
    p.add_argument("--events", type=int, default=60000, help="normalize: raw events per run")
    p.add_argument("--rate", type=float, default=None, help="changes per second: latency runs (1,000), chaos (400)")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per run")
    p.add_argument("--runs", type=int, default=1,
                   help="merge: lag runs in a row; the one with the median p99 is reported, every run's figures kept")
    p.add_argument("--changes", type=int, default=100_000, help="chaos: live changes written during the kills")
    p.add_argument("--kills", type=int, default=20, help="chaos: SIGKILLs of random components")
    p.add_argument("--burst", type=int, default=60000, help="throughput run: changes written as fast as possible")
    p.set_defaults(handler=cmd_bench)
