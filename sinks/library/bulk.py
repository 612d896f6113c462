"""The T+1 fast path: a candidate that opens a new golden record of a coded entity (its id its own code,
the only candidate of its source row and of its record in the chunk, no earlier contribution, record or
history) is merged set-based in SQL, and a replayed one is recognised set-based as unchanged; the library
it leaves is the one ``Merger.merge`` would. ``stage_bulk`` is the pure-Python half (a loader runs it while
the previous chunk merges), ``merge_new_coded`` the database half of one entity."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from itertools import product
from typing import Any

import orjson

from kintsmesh.topics import changes_topic
from sinks.library.links import link_people, linked_at_insert
from sinks.library.settle import Settler
from sinks.library.sql import ms_to_dt, numeric_array
from sinks.library.tables import (CODED, CONTRIBUTION_COLUMNS, HISTORY_COLUMNS, PERSON_ID_COLUMNS, PERSON_REFS,
                                  TABLES, lock_keys)
from streams.merge.survivorship import EMPTY
from streams.resolve.identity import BatchReport, Incoming, SourceRef, coded_id


@dataclass
class BulkChunk:
    """A chunk of candidates as ``stage_bulk`` split it: per coded entity, the staging rows of those
    that may open a new record set-based; the other candidates merge one by one."""
    items: list[Incoming]
    staged: dict[str, dict[SourceRef, tuple[Any, ...]]]

    @property
    def all_staged(self) -> bool:
        """Every candidate may open a new record set-based (``Merger.merge_new`` alone can merge the chunk)."""
        return sum(len(rows) for rows in self.staged.values()) == len(self.items)


STAGING_COLUMNS = ("department text", "source_table text", "primary_key text", "role text", "entity text",
                   "canonical_id text", "position numeric[]", "record jsonb", "committed_at timestamptz",
                   "data jsonb", "fields jsonb", "changed jsonb")


@cache
def _described(entity: str, present: tuple[str, ...]) -> tuple[str, str]:
    """For a new single-source record with these fields: its field provenance and its changed fields (JSON)."""
    return (orjson.dumps({c: {"source": 0} for c in present}).decode(),
            orjson.dumps(sorted((TABLES[entity][1], *present))).decode())


def _staging_row(entity: str, ref: SourceRef, item: Incoming, cid: str) -> tuple[Any, ...]:
    """A ``_bulk`` row, its JSON serialized here (the loader's mapping thread): the merging thread only ships
    text. The small JSON documents are built by PostgreSQL from it (faster than parsing them)."""
    record = item.record
    data = {c: None if (v := record.get(c)) in EMPTY else v for c in TABLES[entity][2]}   # survive() of one
    present = tuple(c for c, v in data.items() if v is not None)
    return (ref.department, ref.table, ref.primary_key, ref.role, entity, cid,
            numeric_array(item.position), orjson.dumps(record).decode(),
            ms_to_dt(item.provenance.get("committed_at")), orjson.dumps(data).decode(), *_described(entity, present))


@cache
def _bulk_insert_sql(entity: str) -> str:
    """One statement writing what ``_recompute`` writes for a new single-source record, for every row of
    ``_bulk``: contribution, golden row (version 1), history and field provenance."""
    table, id_column, columns = TABLES[entity]
    linked = linked_at_insert(entity, "r")
    return f"""
        WITH contributed AS (
            INSERT INTO contribution ({", ".join(CONTRIBUTION_COLUMNS)})
            SELECT department, source_table, primary_key, role, entity, canonical_id, position, false, record,
                   committed_at, now(), 'code', NULL, NULL FROM _bulk),
        golden AS (
            INSERT INTO {table} ({id_column}, {", ".join((*columns, *linked))}, version, source_committed_at, updated_at)
            SELECT b.canonical_id, {", ".join((*(f"r.{c}" for c in columns), *linked.values()))}, 1, b.committed_at,
                   now()
            FROM _bulk b, jsonb_populate_record(NULL::{table}, b.data) r),
        history AS (
            INSERT INTO golden_history ({", ".join(HISTORY_COLUMNS)})
            SELECT entity, canonical_id, 1, data, committed_at, record->'provenance', now() FROM _bulk),
        provenance AS (
            INSERT INTO field_provenance (entity, canonical_id, fields)
            SELECT entity, canonical_id, jsonb_build_object(
                'sources', jsonb_build_array(jsonb_build_object(
                    'department', department, 'table', source_table, 'primary_key', primary_key, 'role', role,
                    'position', to_jsonb(position), 'committed_at', record->'provenance'->'committed_at')),
                'fields', fields)
            FROM _bulk RETURNING canonical_id)
        SELECT canonical_id FROM provenance"""


@cache
def _bulk_outbox_sql(entity: str) -> str:
    """The outbox changes of ``_bulk``'s new records, once their references to people are linked: ``after``
    carries the person ids as ``Merger._queue_changes`` adds them (null ones too, so the fields match)."""
    table, id_column, _ = TABLES[entity]
    linked = PERSON_ID_COLUMNS.get(entity, ())
    person_ids = (" || jsonb_build_object(" + ", ".join(f"'{c}', b.{c}" for c in linked) + ")") if linked else ""
    # changed_fields: the fields present (sorted when staged), then the person ids that are set
    changed = "b.changed"
    if linked:
        cases = []
        for is_set in product((False, True), repeat=len(linked)):
            names = [c for c, on in zip(linked, is_set) if on]
            when = " AND ".join(f"b.{c} IS {'NOT ' if on else ''}NULL" for c, on in zip(linked, is_set))
            cases.append(f"WHEN {when} THEN b.changed" + (f" || '{orjson.dumps(names).decode()}'::jsonb" if names else ""))
        changed = f"CASE {' '.join(cases)} END"
    # the person ids by scalar subqueries, kept from flattening (OFFSET 0): one index probe per row, where a
    # join let the planner hash the whole golden table for every chunk
    probes = "".join(f", (SELECT g.{c} FROM {table} g WHERE g.{id_column} = s.canonical_id) AS {c}" for c in linked)
    return f"""
        INSERT INTO outbox (topic, key, value)
        SELECT %(topic)s, b.canonical_id, jsonb_build_object(
            'entity', b.entity, 'canonical_id', b.canonical_id, 'version', 1, 'op', 'CREATE', 'changed_fields', {changed},
            'before', NULL, 'after', (jsonb_build_object('{id_column}', b.canonical_id) || b.data{person_ids})::text,
            'cause', b.record->'provenance', 'causes', jsonb_build_array(b.record->'provenance'),
            'source_committed_at', b.record->'provenance'->'committed_at',
            'merged_at', (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
        FROM (SELECT s.*{probes} FROM _bulk s OFFSET 0) b"""


def stage_bulk(items: list[Incoming]) -> BulkChunk:
    """The pure-Python half of ``Merger.merge_bulk`` (no database): which candidates may merge set-based, as the
    rows of the staging table. A loader runs it while the previous chunk is merged."""
    rows = Counter(i.source for i in items)
    coded: dict[str, dict[SourceRef, tuple[Incoming, str]]] = defaultdict(dict)
    for item in items:
        if item.entity in CODED and rows[item.source] == 1 and not item.record.get("retracted"):
            coded[item.entity][item.source] = (item, coded_id(item))
    staged: dict[str, dict[SourceRef, tuple[Any, ...]]] = {}
    for entity, by_ref in coded.items():
        once = Counter(cid for _, cid in by_ref.values())
        staged[entity] = {ref: _staging_row(entity, ref, item, cid)
                          for ref, (item, cid) in by_ref.items() if once[cid] == 1}
    return BulkChunk(items, staged)


def merge_new_coded(settler: Settler, entity: str, rows: dict[SourceRef, tuple[Any, ...]],
                    report: BatchReport) -> tuple[set[SourceRef], set[str]]:
    """Set-based ``merge`` of new records of one coded entity; returns the source rows it leaves to ``merge``
    and the ids of the records it made."""
    conn = settler.conn
    table, id_column, _ = TABLES[entity]
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS _bulk ({', '.join(STAGING_COLUMNS)}) ON COMMIT DELETE ROWS")
    with conn.cursor() as cur:
        with cur.copy("COPY _bulk FROM STDIN") as copy:
            for row in rows.values():
                copy.write_row(row)
        # scalar subqueries: one index probe per row, whatever the library's size (a join or EXISTS in an OR
        # let the planner hash the whole contribution table for every chunk)
        same_row = ("c.department = b.department AND c.source_table = b.source_table"
                    " AND c.primary_key = b.primary_key AND c.role = b.role")
        cur.execute(
            f"DELETE FROM _bulk b WHERE (SELECT true FROM contribution c WHERE {same_row})"
            f" OR (SELECT true FROM {table} g WHERE g.{id_column} = b.canonical_id)"
            " OR (SELECT true FROM golden_history h WHERE h.entity = b.entity AND h.canonical_id = b.canonical_id"
            " LIMIT 1) RETURNING department, source_table, primary_key, role,"
            # a replay: the same kind of position (CDC or T+1), not newer than the merged one (is_stale)
            " (SELECT c.position[1] = b.position[1] AND c.position >= b.position"
            f"  FROM contribution c WHERE {same_row}) IS TRUE")
        known = cur.fetchall()
        report.unchanged += sum(1 for *_, stale in known if stale)
        handed_back = {SourceRef(*row) for *row, stale in known if not stale}
        if entity in PERSON_REFS:   # the insert links by RIC: beside live merges of persons (``lock_rics``)
            lock_keys(conn, " UNION ALL ".join(f"SELECT 'ric:' || (data->>'{ric}'), false FROM _bulk"
                                               for _, ric, _ in PERSON_REFS[entity]))
        cur.execute(_bulk_insert_sql(entity))
        ids = {cid for (cid,) in cur.fetchall()}
        created = len(ids)
        if ids:
            link_people(conn, {entity: ids}, [], settler.note_links, inserted_linked=True,
                        side_by_side=settler.side_by_side)
            settler.forget_links()   # new records: the set-based outbox statement publishes them with their links
            cur.execute(_bulk_outbox_sql(entity), {"topic": changes_topic(entity)})
        # emptied for the next entity of the transaction by a DELETE: a TRUNCATE gives the table a new file and
        # its catalog row a new version, and every prepared statement on it is planned again
        cur.execute("DELETE FROM _bulk")
    if ids:
        report.merged += created
        report.set_based += created
        report.new_golden += created
        report.golden_updates += created
        report.links["code"] += created
        report.outbox[entity] += created
    return handed_back, ids
