"""The resource library and what is served from it: ``kintsmesh batch | resolve | held | review | explain | events |
subscriptions | dossier | audit``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import CITY_TZ, DEPARTMENTS, Settings


def connect_library(settings: Settings) -> Any:
    import psycopg

    from kintsmesh.settings import RESOURCE_LIBRARY_DB

    return psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB))


def cmd_batch(args: argparse.Namespace, settings: Settings) -> int:
    from streams.batch import load as batch

    if args.action == "extract":
        rows = batch.extract(settings, args.dept, args.table, args.file, limit=args.limit)
        print(f"{args.dept}.{args.table or batch.EXTRACT_TABLES.get(args.dept)}: {rows:,} rows written to {args.file}")
        return 0
    from kintsmesh.runtime import tune_gc_for_batches

    tune_gc_for_batches()
    report = batch.load_batch(settings, args.dept, args.date, Path(args.file), table=args.table,
                              progress=sys.stderr.isatty(),
                              sessions=args.sessions or batch.SESSIONS)
    print(json.dumps(report, ensure_ascii=False, indent=2) if args.json else batch.summary(report))
    return 0


def cmd_held(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.dlq import DeadLetters
    from sinks.library import held

    with connect_library(settings) as conn:
        if args.action == "reject":
            dead = DeadLetters(settings, "merge")
            with conn.transaction():
                gone = held.send_expired(held.Holds(conn), dead, args.older_than)
            print(f"{len(gone):,} held record(s) older than {args.older_than:g} s sent to dlq.merge"
                  f" ({held.UNRESOLVED})")
            return 0
        rows = held.summary(conn)
    for table, field, identifier, n, oldest in rows:
        print(f"{table:<22} {field} names no accepted person row ({identifier}): {n:,} held, the oldest for"
              f" {oldest:,.0f} s")
    print(f"{sum(r[3] for r in rows):,} record(s) held (after reference_hold_s = {settings.reference_hold_s:g} s"
          " each goes to dlq.merge)")
    return 0


def cmd_review(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.library import review

    with connect_library(settings) as conn:
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
    from kintsmesh.security.audit import cli_access
    from sinks.library import review

    cli_access(settings, args.canonical_id, "golden_record_explained", args.purpose, ["sources", "history", "fields"])
    with connect_library(settings) as conn:
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
        from streams.events.worker import run_daily

        first = args.date or datetime.now(CITY_TZ).date()
        for result in run_daily(settings, first, args.until or first):
            print(json.dumps(result, ensure_ascii=False))
        return 0
    from kintsmesh.security.audit import cli_access
    from sinks.events import recorded_events

    cli_access(settings, args.subject or "*", "life_events", args.purpose, ["events"])
    with connect_library(settings) as conn:
        rows, held = recorded_events(conn, args.type, args.subject, args.date, args.limit)
    for event, published in reversed(rows):
        print(json.dumps({**event, "published_at": published}, ensure_ascii=False, default=str))
    for event, release_at in held:
        print(json.dumps({**event, "held_until": release_at}, ensure_ascii=False, default=str))
    print(f"{len(rows)} life event(s) shown" + (f", {len(held)} held back for their subject" if held else ""))
    return 0


def cmd_subscriptions(args: argparse.Namespace, settings: Settings) -> int:
    from sinks.subscriptions import progress
    from streams.events.subscriptions import subscriptions

    if args.action == "add":
        return add_subscriber(settings, args.name)
    with connect_library(settings) as conn:
        cursors, newest = progress(conn)
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


def add_subscriber(settings: Settings, name: str | None) -> int:
    """The Kafka principal of a subscriber of subscriptions.yaml, its ACLs, and the client configuration
    to hand to its operators (over a channel fit for a password)."""
    from kintsmesh import kafka
    from kintsmesh.security import kafka as acls
    from streams.events.subscriptions import subscriptions

    known = subscriptions()
    if name not in known:
        raise KintsmeshError(f"subscriptions add: {name!r} is not in streams/events/subscriptions.yaml (add its"
                             f" allowance there first); known: {', '.join(known)}")
    principal = f"sub-{name}"
    counts = acls.apply(settings)   # every principal of the files, this one included
    config = {"bootstrap.servers": settings.kafka_bootstrap, **kafka.security_config(settings, principal),
              "group.id": f"sub.{name}.<your-consumer>"}
    print(f"# subscriber {name}: principal {principal}, {counts[principal]} ACLs: read {known[name].topic},"
          f" groups sub.{name}.*; nothing else")
    print(f"# the CA certificate to trust: {settings.trusted_ca}")
    for key, value in config.items():
        print(f"{key}={value}")
    return 0


def cmd_dossier(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.security.audit import operator
    from sinks.library.dossier import school_enrolment

    with connect_library(settings) as conn:
        result = school_enrolment(conn, args.ric, requester=f"{args.requester} ({operator()})", purpose=args.purpose,
                                  level=args.level, year=args.year, channel="cli", status=0)
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
        print(f"{g['relation']:<10} district {g['district'] or '-'}  resides in the city: {g['resides_in_city']}"
              f"  household registered: {g['household_registered']}  insured {g['insured_months']} months"
              f"  rental filing until {g['rental_filing_until'] or '-'}")
    certificate = result["birth_certificate"]
    print(f"birth certificate  {'issued ' + str(certificate['issued_date']) if certificate else '-'}")
    print(f"(access logged: {args.requester}, purpose {args.purpose!r}; see kintsmesh audit {args.ric})")
    return 0 if child else 4


def cmd_evidence(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.security.audit import operator
    from sinks.library.evidence import ItemError, evidence_for, items, newborn_presentations

    if args.item == "items":
        for item in items().values():
            print(f"{item.name:<32} {item.title}  (applicant: {item.applicant}; {len(item.evidence)} evidence)")
            for e in item.evidence:
                source = " or ".join(f"{s.department} {s.person_field or s.certificate}" for s in e.sources)
                print(f"    {e.name:<28} {source or 'presented in person'}")
        return 0
    if args.item == "report":
        with connect_library(settings) as conn:
            report = newborn_presentations(conn)
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    if not args.ric or not args.requester or not args.purpose:
        raise ItemError("kintsmesh evidence <item> <RIC> --requester WHO --purpose WHY")
    with connect_library(settings) as conn:
        result = evidence_for(conn, args.item, args.ric, requester=f"{args.requester} ({operator()})",
                              purpose=args.purpose, channel="cli", status=0)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return 0
    print(f"{result['title']}: {result['presentations']} to present (before shared data: "
          f"{result['presentations_before']})")
    for held in result["held"]:
        record = held["record"]
        print(f"  held   {held['evidence']:<28} {held['department']:<14} {record['entity']} {record['id']}"
              f" ({record['table']} {record['primary_key']})  {held['date'] or ''}")
    for missing in result["to_present"]:
        print(f"  bring  {missing['evidence']:<28} {missing['reason']}")
    print(f"(access logged: {args.requester}, purpose {args.purpose!r}; see kintsmesh audit {result['ric']})")
    return 0


def cmd_aggregates(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.settings import CITY_TZ
    from sinks.library import population as aggregates

    today = datetime.now(CITY_TZ).date()   # the city's day, as the life-event stage's
    with connect_library(settings) as conn:
        if args.action == "recount":
            print(json.dumps(aggregates.recount(conn, today), ensure_ascii=False))
        elif args.action == "population":
            print(json.dumps(aggregates.population(conn, args.level), ensure_ascii=False, indent=1))
        elif args.action == "needs":
            print(json.dumps(aggregates.needs_report(conn, today), ensure_ascii=False, indent=1))
        elif args.action == "export":
            out = Path(args.out or f"population-{args.level}.parquet")
            print(f"{aggregates.export_parquet(conn, out, args.level):,} rows written to {out}")
        else:
            for path in aggregates.plot_districts(conn, Path(args.out or "population-charts")):
                print(f"written {path}")
    return 0


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.security import audit
    from sinks.library.dossier import audit_history

    if args.ric == "verify":
        with connect_library(settings) as conn:
            report = audit.verify(conn)
        for finding in report.findings:
            print(f"  row {finding['chain_seq']} (audit_id {finding['audit_id']}):"
                  + "".join(f" {k}" for k in ("altered", "unlinked", "gap") if finding[k]))
        print(f"access audit: {report.rows:,} rows, head {report.head_seq} {report.head_hash or '-'}: "
              + ("chain intact" if report.intact else f"{report.broken:,} rows fail the chain (TAMPERED)"))
        print("(record the head elsewhere: a later head must extend it)")
        return 0 if report.intact else 3
    audit.cli_access(settings, args.ric, "access_audit", args.purpose, ["accesses"])
    with connect_library(settings) as conn:
        accesses = audit_history(conn, args.ric, args.limit)
    for a in accesses:
        print(f"{a['requested_at'][:19]}  {a['requester']:<28} {a['channel']:<10} {a['resource']:<26} "
              f"purpose: {a['purpose']}  fields: {', '.join(a['fields'])}  -> {a['outcome']}")
    print(f"{len(accesses)} access(es) to {args.ric}'s data")
    return 0


def cmd_resolve(args: argparse.Namespace, settings: Settings) -> int:
    """Identity resolution's data: its Fellegi–Sunter weights (estimated without labels) and its keys."""
    from sinks.library.identity import reindex
    from streams.resolve.estimate import estimate
    from streams.resolve.matching import WEIGHTS_FILE

    if args.action == "reindex":
        with connect_library(settings) as conn:
            print(f"{reindex(conn):,} blocking keys written")
        return 0
    if args.source == "simulator":
        from kintsmesh.bench.resolve import simulated_person_records

        records = simulated_person_records(args.people, args.seed, date.today())
        source = f"simulator: {args.people:,} people, seed {args.seed}"
    else:
        with connect_library(settings) as conn:
            records = [r for (r,) in conn.execute(
                "SELECT record FROM contribution WHERE entity = 'person' AND NOT retracted ORDER BY random() LIMIT %s",
                (args.limit,))]
        source = f"resource library: {len(records):,} person source rows"
    weights, report = estimate(records, random_pairs=args.pairs, source=source,
                               progress=lambda line: print(f"  {line}", file=sys.stderr))
    out = Path(args.out) if args.out else WEIGHTS_FILE
    out.write_text(json.dumps(weights.as_json(), ensure_ascii=False, indent=1) + "\n")
    for comparison, levels in weights.m.items():
        print(f"  {comparison:<11}" + "  ".join(f"{level} {weights.bits(comparison, level):+.1f}" for level in levels))
    print(f"  prior {weights.prior_bits:+.1f} bits; untrained (kept as they were): {report['untrained'] or 'none'}")
    print(f"weights from {source} written to {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("resolve", help="identity resolution: estimate its weights from the data, index the keys")
    p.add_argument("action", choices=["estimate", "reindex"])
    p.add_argument("--from", dest="source", choices=["library", "simulator"], default="library",
                   help="estimate: the resource library's person source rows, or a simulated city's")
    p.add_argument("--limit", type=int, default=500_000, help="estimate: person source rows sampled from the library")
    p.add_argument("--people", type=int, default=20_000, help="estimate --from simulator: the city's size")
    p.add_argument("--seed", type=int, default=2026, help="estimate --from simulator: the city's seed")
    p.add_argument("--pairs", type=int, default=1_000_000, help="estimate: random pairs for the u probabilities")
    p.add_argument("--out", help="estimate: where to write the weights (default: streams/resolve/weights.json,"
                   " which the resolve stage reads when it starts)")
    p.set_defaults(handler=cmd_resolve)

    p = sub.add_parser("batch", help="T+1: load a department's nightly extract (or write one from its database)")
    p.add_argument("action", choices=["load", "extract"])
    p.add_argument("file", help="load: the extract (CSV, or Parquet when it ends in .parquet); extract: where to"
                   " write it (the same two formats)")
    p.add_argument("--dept", required=True, choices=list(DEPARTMENTS))
    p.add_argument("--date", type=date.fromisoformat, default=date.today(), help="load: the batch date (YYYY-MM-DD)")
    p.add_argument("--table", default=None, help="the source table (load: default from the CSV header)")
    p.add_argument("--json", action="store_true", help="load: print the reconciliation report as JSON")
    p.add_argument("--limit", type=int, help="extract: only the first N rows by primary key (a sample)")
    p.add_argument("--sessions", type=int, metavar="N",
                   help="load: library connections merging chunks of new records side by side (default 2)")
    p.set_defaults(handler=cmd_batch)

    p = sub.add_parser("held", help="records held because the person they name is not in the library (yet)")
    p.add_argument("action", nargs="?", choices=["list", "reject"], default="list",
                   help="reject: send those held longer than --older-than to dlq.merge now")
    p.add_argument("--older-than", type=float, default=0.0, metavar="SECONDS")
    p.set_defaults(handler=cmd_held)

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
    p.add_argument("--purpose", required=True, help="why you read it (audited with your OS user)")
    p.set_defaults(handler=cmd_explain)

    p = sub.add_parser("events", help="life events: the rules, the daily pass (or a back-fill), what was detected")
    p.add_argument("action", choices=["rules", "daily", "list"])
    p.add_argument("--date", type=date.fromisoformat, default=None,
                   help="daily: the day to pass (default today, Asia/Shanghai); list: events that occurred that day")
    p.add_argument("--until", type=date.fromisoformat, default=None, help="daily: back-fill every day to this one")
    p.add_argument("--type", help="list: only this event type")
    p.add_argument("--subject", help="list: only this subject (RIC or USCC)")
    p.add_argument("--purpose", help="list: why you read them (required; audited with your OS user)")
    p.add_argument("-n", "--limit", type=int, default=20)
    p.set_defaults(handler=cmd_events)

    p = sub.add_parser("subscriptions", help="subscribers of life events: their topics, allowances and progress")
    p.add_argument("action", choices=["list", "add"],
                   help="add: create the Kafka principal and ACLs of a subscriber of subscriptions.yaml and print"
                        " its client configuration")
    p.add_argument("name", nargs="?", help="add: the subscriber")
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

    p = sub.add_parser("evidence", help="a business item's evidence the library holds for an applicant, and what"
                       " is still to present (`evidence items`: the items; `evidence report`: newborn registration"
                       " presentations over the city)")
    p.add_argument("item", help="an item of sinks/library/items.yaml, `items` or `report`")
    p.add_argument("ric", nargs="?", help="the applicant's resident identity number")
    p.add_argument("--requester", help="who asks (logged)")
    p.add_argument("--purpose", help="why (logged)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_evidence)

    p = sub.add_parser("aggregates", help="decision support: the actual resident population per area, age band and"
                       " sex (kept current by the life-event stage), needs per district; cells under 10 suppressed")
    p.add_argument("action", choices=["population", "needs", "export", "plot", "recount"],
                   help="export: Parquet; plot: a PNG pyramid per district; recount: every cell again from the"
                        " golden persons (once for a library that predates them; with the life-event stage caught up)")
    p.add_argument("--level", choices=["district", "street", "community"], default="district")
    p.add_argument("--out", help="export: the Parquet file; plot: the folder for the PNGs")
    p.set_defaults(handler=cmd_aggregates)

    p = sub.add_parser("audit", help="a citizen's access history (who looked at their data, when and why),"
                       " or `audit verify`: check the audit's hash chain")
    p.add_argument("ric", help="a citizen's RIC, or `verify`")
    p.add_argument("--purpose", help="why you read it (required with a RIC; audited with your OS user)")
    p.add_argument("-n", "--limit", type=int, default=100)
    p.set_defaults(handler=cmd_audit)
