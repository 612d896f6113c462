"""The resource library as the resolver's ``IdentityStore`` (``streams.resolve.store``): every read and
write identity resolution makes, in SQL over one connection (the caller owns the transaction)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from sinks.library.sql import bulk_upsert, ms_to_dt, numeric_array, text_array
from sinks.library.tables import CONTRIBUTION_COLUMNS, CONTRIBUTION_KEY
from streams.resolve import matching
from streams.resolve.identity import BlockParams, Incoming, Kind, Linked, SourceRef, State

# at most this many golden persons per block (a common name on a common day is a large block)
BLOCK_LIMIT = 50


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

    def queued_persons(self) -> set[str]:
        return {cid for (cid,) in self.conn.execute(
            "SELECT DISTINCT canonical_id FROM settle_queue WHERE entity = 'person'")}

    def person_records(self, ids: set[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        return self.conn.execute(   # type: ignore[return-value]
            "SELECT canonical_id, record FROM contribution WHERE entity = 'person' AND NOT retracted"
            " AND canonical_id = ANY(%s::text[])", (text_array(ids),)).fetchall()

    def persons_by_ric(self, rics: set[str]) -> dict[str, str]:
        if not rics:
            return {}
        return dict(self.conn.execute("SELECT ric, person_id FROM person WHERE ric = ANY(%s)", (list(rics),)).fetchall())

    def legal_entity_by_uscc(self, uscc: str) -> str | None:
        row = self.conn.execute(   # the golden one, else one queued and not merged yet
            "SELECT entity_id FROM legal_entity WHERE uscc = %(uscc)s UNION ALL"
            " SELECT c.canonical_id FROM settle_queue q JOIN contribution c USING (entity, canonical_id)"
            " WHERE q.entity = 'legal_entity' AND c.record->>'uscc' = %(uscc)s AND NOT c.retracted LIMIT 1",
            {"uscc": uscc}).fetchone()
        return row[0] if row else None

    def blocks(self, wanted: list[BlockParams]) -> list[dict[str, matching.Mention]]:
        """The golden persons in the blocks of each of ``wanted``, in one statement: per mention, one index
        look-up per block (an OR of them would not use the indexes well), at most ``BLOCK_LIMIT`` each, the
        first by canonical id (as the memory store cuts its blocks): a common name's block is the same set
        whatever order the rows lie in, so a decision does not depend on the table's storage order."""
        limit = BLOCK_LIMIT
        rows = self.conn.execute(
            "SELECT m.i, p.person_id, p.ric, p.name, p.gender, p.birth_date, p.address->>'full',"
            " array_remove(ARRAY[p.household_no, mo.household_no, fa.household_no], NULL), p.mother_ric, p.father_ric"
            " FROM unnest(%s::int[], %s::date[], %s::text[], %s::text[], %s::text[]) AS m(i, birth, key, body, area)"
            " CROSS JOIN LATERAL ("
            "  (SELECT person_id FROM person WHERE m.birth IS NOT NULL AND m.key IS NOT NULL"
            f"    AND birth_date = m.birth AND name_key = m.key ORDER BY person_id LIMIT {limit})"
            "  UNION (SELECT person_id FROM person WHERE m.birth IS NOT NULL AND m.key IS NULL"
            f"    AND birth_date = m.birth ORDER BY person_id LIMIT {limit})"
            f"  UNION (SELECT person_id FROM person WHERE m.key IS NOT NULL AND m.birth IS NULL AND name_key = m.key ORDER BY person_id LIMIT {limit})"
            # a typo in a flagged RIC's date: its area and the name still block
            "  UNION (SELECT person_id FROM person WHERE m.key IS NOT NULL AND m.area IS NOT NULL"
            f"    AND name_key = m.key AND left(ric, 6) = m.area ORDER BY person_id LIMIT {limit})"
            f"  UNION (SELECT person_id FROM person WHERE m.body IS NOT NULL AND left(ric, 17) = m.body ORDER BY person_id LIMIT {limit})) c"
            " JOIN person p USING (person_id)"
            " LEFT JOIN person mo ON mo.ric = p.mother_ric LEFT JOIN person fa ON fa.ric = p.father_ric",
            (list(range(len(wanted))), *(list(column) for column in zip(*wanted)))).fetchall()
        found: list[dict[str, matching.Mention]] = [{} for _ in wanted]
        for i, pid, ric, name, gender, birth, addr, households, mother, father in rows:
            found[i][pid] = matching.Mention(ric, bool(ric), name, gender, birth, frozenset(households), addr,
                                             mother, father)
        return found

    def households(self, rics: set[str]) -> dict[str, str]:
        return dict(self.conn.execute(
            "SELECT ric, household_no FROM person WHERE ric = ANY(%s::text[]) AND household_no IS NOT NULL",
            (text_array(rics),)).fetchall())

    def holds_other_row(self, canonical_id: str, kind: Kind, primary_key: str) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM contribution WHERE entity = 'person' AND canonical_id = %s AND department = %s"
            " AND source_table = %s AND role = %s AND primary_key <> %s AND NOT retracted LIMIT 1",
            (canonical_id, *kind, primary_key)).fetchone() is not None

    def holds_other_ric(self, canonical_id: str, ric: str | None) -> bool:
        return self.conn.execute(
            "SELECT 1 FROM contribution WHERE entity = 'person' AND canonical_id = %s AND NOT retracted"
            " AND record->>'ric' <> %s AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(record->'findings') f"
            "  WHERE f LIKE 'ric:%%' AND f <> 'ric:legacy_15_upgraded') LIMIT 1",   # the rule of identity.flagged()
            (canonical_id, ric)).fetchone() is not None

    def orphans(self, name_key: str | None, birth: date | None, ric_body: str | None) -> set[str]:
        return {cid for (cid,) in self.conn.execute(
            "SELECT person_id FROM person WHERE person_id LIKE 'P~%%' AND name_key = %(key)s"
            " AND (birth_date = %(birth)s OR birth_date IS NULL)"
            " UNION SELECT canonical_id FROM contribution WHERE entity = 'person' AND canonical_id LIKE 'P~%%'"
            " AND left(record->>'ric', 17) = %(body)s",
            {"key": name_key, "birth": birth, "body": ric_body})}

    def open_reviews_born_on(self, births: set[date]) -> list[tuple[int, SourceRef, dict[str, Any]]]:
        return [(review_id, SourceRef(d, t, pk, role), record) for review_id, d, t, pk, role, record in self.conn.execute(
            "SELECT r.review_id, c.department, c.source_table, c.primary_key, c.role, c.record"
            " FROM review_queue r JOIN contribution c USING (department, source_table, primary_key, role)"
            " WHERE r.status = 'open' AND r.entity = 'person' AND c.canonical_id IS NULL AND NOT c.retracted"
            " AND c.record->>'birth_date' = ANY(%s::text[])", (text_array(b.isoformat() for b in births),)
        ).fetchall()]

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

    def queue_review(self, ref: SourceRef, entity: str, candidates: list[dict[str, Any]]) -> None:
        self.conn.execute(
            "INSERT INTO review_queue (department, source_table, primary_key, role, entity, candidates)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (department, source_table, primary_key, role)"
            " DO UPDATE SET candidates = EXCLUDED.candidates, status = 'open', decided_id = NULL, decided_at = NULL",
            (*ref, entity, Jsonb(candidates)))

    def move_person(self, orphan: str, person: str, score: float | None, evidence: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE contribution SET canonical_id = %s, method = 'late_match', score = %s, evidence = %s"
            " WHERE entity = 'person' AND canonical_id = %s", (person, score, Jsonb(evidence), orphan))

    def link_reviewed(self, review_id: int, ref: SourceRef, canonical_id: str, score: float | None,
                      evidence: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE contribution SET canonical_id = %s, method = 'review_rescored', score = %s, evidence = %s,"
            " merged_at = clock_timestamp() WHERE department = %s AND source_table = %s AND primary_key = %s"
            " AND role = %s", (canonical_id, score, Jsonb(evidence), *ref))
        self.conn.execute("UPDATE review_queue SET status = 'resolved', decided_id = %s, decided_at = now()"
                          " WHERE review_id = %s", (canonical_id, review_id))
