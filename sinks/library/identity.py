"""The resource library as the resolver's ``IdentityStore`` (``streams.resolve.store``): every read and
write identity resolution makes, in SQL over one connection (the caller owns the transaction)."""

from __future__ import annotations

from collections.abc import Iterable, Set
from datetime import datetime, timezone
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sinks.library.sql import bulk_upsert, ms_to_dt, numeric_array, text_array
from sinks.library.tables import CONTRIBUTION_COLUMNS, CONTRIBUTION_KEY
from streams.resolve import matching
from streams.resolve.identity import (NO_RIC_PREFIX, Incoming, Kind, Linked, SourceRef, State, dated, mention_of,
                                      own_household)
from streams.resolve.matching import BLOCK_LIMIT, COMMON_NAME_KEY, is_name_key, rank
from streams.resolve.store import Block

# the rule of identity.flagged(): a RIC with a finding is not valid (an upgraded 15-digit one is)
UNFLAGGED_RIC = ("NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(record->'findings') f"
                 " WHERE f LIKE 'ric:%%' AND f <> 'ric:legacy_15_upgraded')")


class PostgresIdentityStore:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    # ------------------------------------------------------------------ reads

    def contributions(self, refs: set[SourceRef]) -> dict[SourceRef, State]:
        rows = self.conn.execute(
            "SELECT c.department, c.source_table, c.primary_key, c.role, c.position, c.canonical_id, c.method,"
            " (extract(epoch FROM c.committed_at) * 1000)::bigint"
            " FROM contribution c JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(d, t, p, r)"
            " ON c.department = k.d AND c.source_table = k.t AND c.primary_key = k.p AND c.role = k.r",
            tuple(text_array(column) for column in zip(*refs)),
        ).fetchall()
        return {SourceRef(d, t, p, r): (tuple(int(x) for x in pos), cid, method, ms)
                for d, t, p, r, pos, cid, method, ms in rows}

    def person_records(self, ids: set[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        return self.conn.execute(   # type: ignore[return-value]
            "SELECT canonical_id, record FROM contribution WHERE entity = 'person' AND NOT retracted"
            " AND canonical_id = ANY(%s::text[]) ORDER BY canonical_id, department, source_table, primary_key, role",
            (text_array(ids),)).fetchall()

    def persons_by_ric(self, rics: set[str]) -> dict[str, str]:
        if not rics:
            return {}
        return dict(self.conn.execute(
            "SELECT record->>'ric', min(canonical_id) FROM contribution WHERE entity = 'person' AND NOT retracted"
            f" AND record->>'ric' = ANY(%s::text[]) AND canonical_id IS NOT NULL AND {UNFLAGGED_RIC} GROUP BY 1",
            (text_array(rics),)).fetchall())

    def households(self, rics: set[str]) -> dict[str, str]:
        return dict(self.conn.execute(
            "SELECT record->>'ric', min(record->>'household_no') FROM contribution WHERE entity = 'person'"
            " AND NOT retracted AND record->>'ric' = ANY(%s::text[]) AND record->>'household_no' IS NOT NULL"
            f" AND {UNFLAGGED_RIC} GROUP BY 1", (text_array(rics),)).fetchall())

    def legal_entity_by_uscc(self, uscc: str) -> str | None:
        row = self.conn.execute(   # the golden one, else one queued and not merged yet
            "SELECT entity_id FROM legal_entity WHERE uscc = %(uscc)s UNION ALL"
            " SELECT c.canonical_id FROM settle_queue q JOIN contribution c USING (entity, canonical_id)"
            " WHERE q.entity = 'legal_entity' AND c.record->>'uscc' = %(uscc)s AND NOT c.retracted LIMIT 1",
            {"uscc": uscc}).fetchone()
        return row[0] if row else None

    def candidate_ids(self, wanted: list[Block]) -> list[list[str]]:
        """Per block, one index look-up per key, ranked by keys shared (``matching.rank`` among equals); a
        name key shared by too many persons is dropped (counted with a LIMIT: a common name costs
        ``COMMON_NAME_KEY`` index entries); a block with a valid RIC skips the other RICs' persons
        (``may_be``) before they are counted and sent."""
        names = sorted({k for keys, _ in wanted for k in keys if is_name_key(k)})
        common = {key for key, n in self.conn.execute(
            "SELECT k, (SELECT count(*) FROM (SELECT 1 FROM person_key WHERE key = k LIMIT %s) c)"
            " FROM unnest(%s::text[]) AS k", (COMMON_NAME_KEY + 1, text_array(names)))
            if n > COMMON_NAME_KEY} if names else set()
        indexes, flat, rics = [], [], []
        for i, (keys, ric) in enumerate(wanted):
            for key in sorted(keys - common):
                indexes.append(i)
                flat.append(key)
                rics.append(ric)
        shared: list[dict[str, int]] = [{} for _ in wanted]
        for i, pid, n in self.conn.execute(   # one index look-up per key (OFFSET 0 keeps the planner from
                # hashing all of person_key for a join it cannot size: 5 ms for the 20 keys of a live batch)
                "SELECT w.i, k.person_id, count(*) FROM unnest(%s::int[], %s::text[], %s::text[]) AS w(i, key, ric)"
                " CROSS JOIN LATERAL (SELECT person_id FROM person_key WHERE key = w.key OFFSET 0) k"
                f" WHERE w.ric IS NULL OR k.person_id LIKE '{NO_RIC_PREFIX}%%' OR k.person_id = w.ric"
                " GROUP BY w.i, k.person_id", (numeric_array(indexes), text_array(flat), text_array(rics))):
            shared[i][pid] = n
        return [sorted(ids, key=lambda p: (-ids[p], rank(p)))[:BLOCK_LIMIT] for ids in shared]

    def name_counts(self, names: set[str]) -> tuple[dict[str, int], int]:
        wanted = {name: matching.name_only_key(name) for name in names}
        counted = dict(self.conn.execute(
            "SELECT k, (SELECT count(*) FROM person_key WHERE key = k) FROM unnest(%s::text[]) AS k",
            (text_array(sorted(set(wanted.values()))),)).fetchall())
        counts = {name: counted.get(key, 0) for name, key in wanted.items()}
        row = self.conn.execute(   # the planner's estimate of the persons: a count(*) of a city costs more
            "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'person'").fetchone()
        return counts, int(row[0]) if row else 0

    def holds_other_row(self, canonical_id: str, kind: Kind, primary_key: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM contribution WHERE entity = 'person' AND canonical_id = %s AND department = %s"
            " AND source_table = %s AND role = %s AND primary_key <> %s AND NOT retracted LIMIT 1",
            (canonical_id, *kind, primary_key)).fetchone() is not None

    def holds_other_ric(self, canonical_id: str, ric: str | None) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM contribution WHERE entity = 'person' AND canonical_id = %s AND NOT retracted"
            f" AND record->>'ric' <> %s AND {UNFLAGGED_RIC} LIMIT 1", (canonical_id, ric)).fetchone() is not None

    def open_reviews(self, keys: set[str]) -> list[tuple[int, SourceRef, dict[str, Any]]]:
        return [(review_id, SourceRef(d, t, pk, role), record) for review_id, d, t, pk, role, record in self.conn.execute(
            "SELECT r.review_id, c.department, c.source_table, c.primary_key, c.role, c.record"
            " FROM review_queue r JOIN contribution c USING (department, source_table, primary_key, role)"
            " WHERE r.status = 'open' AND r.keys && %s::text[] AND r.entity = 'person' AND c.canonical_id IS NULL"
            " AND NOT c.retracted ORDER BY r.review_id", (text_array(keys),)).fetchall()]

    # ------------------------------------------------------------------ writes

    def write_contributions(self, writes: Iterable[tuple[Incoming, Linked]]) -> None:
        now = datetime.now(timezone.utc)
        rows = []
        for item, linked in writes:
            src, prov = item.source, item.provenance
            rows.append((src.department, src.table, src.primary_key, src.role, item.entity, linked.canonical_id,
                         numeric_array(item.position), bool(item.record.get("retracted")), Jsonb(item.record),
                         ms_to_dt(prov.get("committed_at")), now, linked.method, linked.score,
                         Jsonb(linked.evidence) if linked.evidence else None))
        bulk_upsert(self.conn, "contribution", CONTRIBUTION_COLUMNS, rows, CONTRIBUTION_KEY)

    def index(self, entries: Iterable[tuple[str, str]]) -> None:
        keys, persons = [], []
        for key, pid in entries:
            keys.append(key)
            persons.append(pid)
        if keys:
            self.conn.execute("INSERT INTO person_key (key, person_id) SELECT * FROM unnest(%s::text[], %s::text[])"
                              " ON CONFLICT DO NOTHING", (text_array(keys), text_array(persons)))

    def queue_review(self, ref: SourceRef, entity: str, candidates: list[dict[str, Any]], keys: Set[str]) -> None:
        self.conn.execute(
            "INSERT INTO review_queue (department, source_table, primary_key, role, entity, candidates, keys)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (department, source_table, primary_key, role)"
            " DO UPDATE SET candidates = EXCLUDED.candidates, keys = EXCLUDED.keys, status = 'open', decided_id = NULL,"
            " decided_at = NULL", (*ref, entity, Jsonb(candidates), sorted(keys)))

    def move_person(self, orphan: str, person: str, score: float | None, evidence: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE contribution SET canonical_id = %s, method = 'late_match', score = %s, evidence = %s"
            " WHERE entity = 'person' AND canonical_id = %s", (person, score, Jsonb(evidence), orphan))
        self.conn.execute(
            "WITH moved AS (DELETE FROM person_key WHERE person_id = %s RETURNING key)"
            " INSERT INTO person_key (key, person_id) SELECT key, %s FROM moved ON CONFLICT DO NOTHING", (orphan, person))

    def link_reviewed(self, review_id: int, ref: SourceRef, canonical_id: str, score: float | None,
                      evidence: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE contribution SET canonical_id = %s, method = 'review_rescored', score = %s, evidence = %s,"
            " merged_at = clock_timestamp() WHERE department = %s AND source_table = %s AND primary_key = %s"
            " AND role = %s", (canonical_id, score, Jsonb(evidence), *ref))
        self.conn.execute("UPDATE review_queue SET status = 'resolved', decided_id = %s, decided_at = now()"
                          " WHERE review_id = %s", (canonical_id, review_id))


def reindex(conn: psycopg.Connection[Any], persons: set[str] | None = None, chunk: int = 5000) -> int:
    """Index persons (all, or ``persons``) and open person review items under the blocking keys of their
    live source rows (``matching.keys``), as the resolve stage does when it links them: after a review
    decision, or once for a library resolved before the keys existed. Returns the keys written."""
    store, written = PostgresIdentityStore(conn), 0
    ids = sorted(persons) if persons is not None else [cid for (cid,) in conn.execute(
        "SELECT DISTINCT canonical_id FROM contribution WHERE entity = 'person' AND canonical_id IS NOT NULL")]
    for start in range(0, len(ids), chunk):
        entries = {(key, cid) for cid, record in store.person_records(set(ids[start:start + chunk]))
                   for key in matching.keys(dated(mention_of(record, own_household(record))))}
        store.index(sorted(entries))
        written += len(entries)
    if persons is None:
        for review_id, record in conn.execute(
                "SELECT r.review_id, c.record FROM review_queue r JOIN contribution c"
                " USING (department, source_table, primary_key, role) WHERE r.status = 'open' AND r.entity = 'person'"
                ).fetchall():
            conn.execute("UPDATE review_queue SET keys = %s WHERE review_id = %s",
                         (sorted(matching.keys(dated(mention_of(record, own_household(record))))), review_id))
    return written
