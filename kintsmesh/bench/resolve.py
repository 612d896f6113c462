"""``kintsmesh bench resolve``: person identity resolution against the simulator's ground truth.

A city's department rows (dirty, with a share of ID numbers that cannot be used)
go through the live code path — Debezium change event → normalize → resolve →
merge — into a scratch resource library database on the stack's PostgreSQL.
Every person mention (source row and role) is then compared with the person the
ground truth says it is: pairwise precision, recall and F1 over mentions.
"""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import date
from math import comb
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from kintsmesh.bench import write_result
from kintsmesh.runtime import tune_gc_for_batches
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.debezium import change_event
from kintsmesh.simulate.departments import DepartmentViews, Row, initial_rows
from kintsmesh.stack.migrate import migrate
from kintsmesh.topics import raw_topic
from sinks.library import MERGE_SESSION, Incoming, Merger, lock_library
from streams.normalize.event import normalize_event


def scratch_library(settings: Settings, name: str) -> str:
    """A fresh database with the resource library's migrations; returns its DSN."""
    with psycopg.connect(settings.dsn("postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(settings, name, RESOURCE_LIBRARY_DB)
    return settings.dsn(name)


def incoming(rows: list[Row], commit_ms: int) -> tuple[list[Incoming], Counter[str]]:
    """The rows as the merge worker receives them: through Debezium's event shape and the normalize stage."""
    items: list[Incoming] = []
    rejected: Counter[str] = Counter()
    for i, row in enumerate(rows):
        lsn = 1_000_000 + 100 * i
        result = normalize_event(raw_topic(row.database, row.table), change_event(row, "r", lsn, commit_ms),
                                 commit_ms + 50)
        if result.rejection:
            rejected[result.rejection.reason] += 1
        items.extend(Incoming.of(c.entity, c.record) for c in result.candidates)
    return items, rejected


def merge_all(dsn: str, items: list[Incoming], chunk: int = 5000) -> float:
    tune_gc_for_batches()   # as the merge worker's process
    started = time.perf_counter()
    with psycopg.connect(dsn, options=MERGE_SESSION) as conn:   # as the merge worker's
        merger = Merger(conn)
        for start in range(0, len(items), chunk):
            with conn.transaction():
                lock_library(conn)
                merger.merge(items[start:start + chunk])
    return time.perf_counter() - started


def pairwise(assigned: dict[Any, str | None], truth: dict[Any, str]) -> dict[str, float]:
    """Pairwise precision/recall of a clustering of mentions. Unassigned mentions are singletons."""
    both: Counter[tuple[str, str]] = Counter()
    ours: Counter[str] = Counter()
    real: Counter[str] = Counter()
    for mention, true_id in truth.items():
        cluster = assigned.get(mention) or f"unassigned:{mention}"
        both[(cluster, true_id)] += 1
        ours[cluster] += 1
        real[true_id] += 1
    tp = sum(comb(n, 2) for n in both.values())
    predicted = sum(comb(n, 2) for n in ours.values())
    actual = sum(comb(n, 2) for n in real.values())
    precision = tp / predicted if predicted else 1.0
    recall = tp / actual if actual else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
            "true_pairs": actual, "predicted_pairs": predicted}


def person_links(conn: psycopg.Connection[Any], rows: set[tuple[str, str, str]] | None = None) -> dict[Any, str | None]:
    """(department, table, key, role) -> canonical id of every person contribution (of ``rows`` when given)."""
    links = {}
    for d, t, pk, role, cid in conn.execute(
            "SELECT department, source_table, primary_key, role, canonical_id FROM contribution"
            " WHERE entity = 'person' AND NOT retracted"):
        if rows is None or (d, t, pk) in rows:
            links[(d, t, pk, role)] = cid
    return links


def truth_of(links: dict[Any, str | None], truth_by_row: dict[tuple[str, str, str], dict[str, str]]) -> dict[Any, str]:
    """The true person of each linked mention, from the simulator's ground truth (role -> RIC per row)."""
    return {m: truth_by_row[m[:3]][m[3]] for m in links if m[:3] in truth_by_row and m[3] in truth_by_row[m[:3]]}


def usable_id(item: Incoming) -> bool:
    return bool(item.record.get("ric")) and not item.flagged("ric")


def simulated_person_records(people: int, seed: int, today: date, dirty_rate: float = 0.05) -> list[dict[str, Any]]:
    """The person records a simulated city's department rows give through the normalize stage."""
    city = build_city(seed, people, today)
    rows = initial_rows(city, DepartmentViews(city, random.Random(seed + 1), dirty_rate))
    items, _ = incoming(rows, int(time.time() * 1000))
    return [i.record for i in items if i.entity == "person"]


def run(settings: Settings, people: int, seed: int, dirty_rate: float, today: date) -> dict[str, Any]:
    city = build_city(seed, people, today)
    rows = initial_rows(city, DepartmentViews(city, random.Random(seed + 1), dirty_rate))
    truth_by_row = {(r.database, r.table, r.key): r.truth for r in rows}
    items, rejected = incoming(rows, int(time.time() * 1000))
    persons = [i for i in items if i.entity == "person"]
    dsn = scratch_library(settings, "kintsmesh_bench_resolve")
    print(f"bench resolve: {len(rows):,} department rows of a {people:,}-person city -> {len(items):,} candidates,"
          f" {len(persons):,} person mentions ({sum(not usable_id(p) for p in persons) / len(persons):.1%}"
          f" without a usable ID); {sum(rejected.values()):,} rows to the DLQ", flush=True)
    seconds = merge_all(dsn, items)
    with psycopg.connect(dsn) as conn:
        links = person_links(conn)
        review = conn.execute("SELECT count(*) FROM review_queue WHERE status = 'open'").fetchone()
        golden = conn.execute("SELECT count(*) FROM person").fetchone()
    truth = truth_of(links, truth_by_row)
    no_id = sum(1 for item in persons if not usable_id(item)
                and (item.source.department, item.source.table, item.source.primary_key, item.source.role) in truth)
    scores = pairwise(links, truth)
    methods: dict[str, int] = defaultdict(int)
    with psycopg.connect(dsn) as conn:
        for method, n in conn.execute("SELECT method, count(*) FROM contribution WHERE entity = 'person' GROUP BY 1"):
            methods[method] = n
    return {
        "records": len(truth), "people": len(set(truth.values())), "golden_persons": golden[0] if golden else 0,
        **scores, "without_usable_id": round(no_id / len(truth), 4) if truth else 0.0,
        "sent_to_review": review[0] if review else 0, "link_methods": dict(methods),
        "candidates_merged": len(items), "merge_seconds": round(seconds, 2),
        "candidates_per_s": round(len(items) / seconds, 1), "dirty_rate": dirty_rate, "seed": seed,
    }


DEFAULT_PEOPLE, DEFAULT_SEED, DEFAULT_DIRTY_RATE = 20_000, 2026, 0.05


def main(settings: Settings, people: int, seed: int, dirty_rate: float, today: date, out: Path | None) -> dict[str, Any]:
    result = run(settings, people, seed, dirty_rate, today)
    print(f"  person mentions   {result['records']:>9,}  ({result['without_usable_id']:.1%} without a usable ID)")
    print(f"  true people       {result['people']:>9,}   golden persons {result['golden_persons']:,}")
    print(f"  precision         {result['precision']:>9.4f}   (target >= 0.9999)")
    print(f"  recall            {result['recall']:>9.4f}   (target >= 0.998)")
    print(f"  F1                {result['f1']:>9.4f}")
    print(f"  sent to review    {result['sent_to_review']:>9,}")
    print(f"  links by method   {result['link_methods']}")
    print(f"  merge             {result['candidates_per_s']:>9,.0f} candidates/s ({result['candidates_merged']:,} in"
          f" {result['merge_seconds']} s, one process)")
    # the README's figures are the default city's; another size (or seed, or dirty rate) gets its own file
    default = (people, seed, dirty_rate) == (DEFAULT_PEOPLE, DEFAULT_SEED, DEFAULT_DIRTY_RATE)
    write_result("resolve" if default else f"resolve-{people}-{seed}-{dirty_rate:g}", result, out)
    return result
