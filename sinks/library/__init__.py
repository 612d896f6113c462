"""The resource library writer: resolve a batch of GLDM candidates, then merge the golden records it touched.

Used by the resolve and merge stages (Kafka, real time; ``streams.resolve.worker``, ``streams.merge.worker``)
and by ``kintsmesh batch load`` (T+1), so both paths run exactly the same code. ``Merger`` puts together:

* the identity decision (``streams.resolve.resolver.Resolver``, pure) over the library as its store
  (``identity.PostgresIdentityStore``); ``resolve`` returns a ``Settlement``, the records touched, which
  the resolve stage queues in ``settle_queue`` for the merge stage that owns their canonical ids;
* the recompute of every record touched, its history, provenance, links and outbox (``settle.Settler``);
* the set-based path for new coded records of large T+1 chunks (``bulk``);
* the package's other modules: table metadata and locks (``tables``), SQL helpers (``sql``), person
  references (``links``), the publishable queues (``outbox``), review decisions and ``explain``
  (``review``), the school-enrolment dossier (``dossier``).

``merge`` resolves and settles in one transaction (T+1 loads, review decisions). The caller owns the
transaction; nothing here commits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kintsmesh.errors import TerminalError
from sinks.library.bulk import BulkChunk, merge_new_coded, stage_bulk
from sinks.library.held import Holds, Origin
from sinks.library.identity import PostgresIdentityStore
from sinks.library.settle import Settler
from sinks.library.sql import bulk_upsert, numeric_array, text_array
from sinks.library.tables import (BOOKKEEPING, CODED, MERGE_SESSION, PERSON_ID_COLUMNS, TABLES, Contended,
                                  lock_library, lock_merge, lock_resolve, lock_settle)
from streams.normalize.mapping import one_per_person_kinds
from streams.resolve.identity import BatchReport, Incoming, Settlement, SourceRef, coded_id, jsonable
from streams.resolve.resolver import Resolver

__all__ = ["BOOKKEEPING", "CODED", "MERGE_SESSION", "PERSON_ID_COLUMNS", "TABLES", "BatchReport", "BulkChunk",
           "Contended", "Growth", "Incoming", "Merger", "Settlement", "SourceRef", "jsonable", "lock_library",
           "lock_merge", "lock_resolve", "lock_settle", "numeric_array", "text_array"]


class Growth:
    """Candidates merged so far, and when to ANALYZE next: after 5k, 10k, 20k ... (autovacuum lags behind a
    library filling fast). One per load, shared by its sessions, so the tables are analyzed once per step."""

    def __init__(self) -> None:
        self.merged, self.analyze_at = 0, 5_000
        self._lock = threading.Lock()

    def due(self, merged: int) -> bool:
        with self._lock:
            self.merged += merged
            if self.merged < self.analyze_at:
                return False
            self.analyze_at = self.merged * 2
            return True


class Merger:
    """Resolve + merge batches into the resource library over one connection (caller commits)."""

    def __init__(self, conn: psycopg.Connection[Any], growth: Growth | None = None, side_by_side: bool = False) -> None:
        """``side_by_side``: the merge stage's, whose transactions commit beside other merge processes'
        (``lock_merge``; ``Settler``)."""
        self.conn = conn
        self.resolver = Resolver(PostgresIdentityStore(conn), one_per_person_kinds())
        self.settler = Settler(conn, side_by_side)
        self.holds = Holds(conn)
        self.growth = growth or Growth()

    def merge(self, items: list[Incoming]) -> BatchReport:
        """Resolve and merge a batch in the caller's transaction (T+1 loads, review decisions, tests)."""
        return self.merge_settled(items)[0]

    def merge_settled(self, items: list[Incoming], origin: Callable[[Incoming], Origin | None] | None = None
                      ) -> tuple[BatchReport, Settlement]:
        """``merge``, also returning what was settled (the source changes behind each record: the merge
        stage's sync-lag metrics). A record whose person reference does not resolve is held instead
        (``held``; ``origin`` says where it came from, for the DLQ should its hold expire)."""
        kept = self.holds.hold(items, origin)
        report, settlement = self._settled(kept)
        report.held += len(items) - len(kept)
        return report, settlement

    def _settled(self, items: list[Incoming]) -> tuple[BatchReport, Settlement]:
        """Resolve and settle items whose references were checked."""
        report, settlement = self.resolve(items)
        self.settler.settle(settlement, report)
        return report, settlement

    def resolve(self, items: list[Incoming]) -> tuple[BatchReport, Settlement]:
        """The resolve stage: writes only ``contribution`` and ``review_queue``; the golden records it
        touched are left to the merge stage (``settle_queued``)."""
        report, settlement = self.resolver.resolve(items)
        self._grown(len(items))
        return report, settlement

    def queue(self, settlement: Settlement) -> int:
        """Queue the records ``settlement`` touched for the merge stage (``settle_queue``); returns how many."""
        rows = [(entity, cid, Jsonb(causes), Jsonb(fallback) if fallback is not None else None, Jsonb(person_rows),
                 absorbed_by) for entity, cid, causes, fallback, person_rows, absorbed_by in settlement.queued()]
        bulk_upsert(self.conn, "settle_queue",
                    ("entity", "canonical_id", "causes", "fallback", "person_rows", "absorbed_by"), rows)
        return len(rows)

    def settle_queued(self, named: list[tuple[int, str, str]]) -> tuple[BatchReport, Settlement]:
        """The merge stage: settle the records named (queue seq, entity, canonical id) and delete their
        ``settle_queue`` rows, in the caller's transaction. A record whose row is gone (merged already: a
        redelivery, a replay from ``dlq.merge``) is recomputed all the same, which changes nothing unless
        something was left undone."""
        settlement = Settlement()
        rows = self.conn.execute(
            "DELETE FROM settle_queue WHERE seq = ANY(%s::bigint[])"
            " RETURNING seq, entity, canonical_id, causes, fallback, person_rows, absorbed_by",
            ([seq for seq, _, _ in named],)).fetchall()
        for _, entity, cid, causes, fallback, person_rows, absorbed_by in sorted(rows, key=lambda r: r[0]):
            settlement.add_queued(entity, cid, causes, fallback, person_rows, absorbed_by)
        found = {r[0] for r in rows}
        for seq, entity, cid in named:
            if seq not in found:
                settlement.touch_without_change(entity, cid, {})
        report = BatchReport()
        self.settler.settle(settlement, report)
        return report, settlement

    def merge_bulk(self, items: list[Incoming]) -> BatchReport:
        """``merge`` for a large batch (T+1 extracts): the library it leaves is the same, but new records of
        coded entities are merged set-based (``sinks.library.bulk``); every other candidate (a person, a
        retraction, a row merged before, two rows of one record ...) goes through ``merge``."""
        return self.merge_staged(stage_bulk(items))

    def merge_staged(self, chunk: BulkChunk) -> BatchReport:
        """The database half of ``merge_bulk``."""
        chunk, held = self._hold(chunk)
        report = self._merge_chunk(chunk)[0]
        report.held += held
        return report

    def merge_new(self, chunk: BulkChunk) -> tuple[BatchReport, list[Incoming]]:
        """A chunk whose every candidate is staged (``BulkChunk.all_staged``): only its new records, set-based,
        under ``lock_library(shared=True)``; returns the report and the candidates left for ``merge`` (merged
        before: a replay, a correction), which the caller merges in a transaction of its own, under both
        locks."""
        chunk, held = self._hold(chunk)
        report, settlement = BatchReport(), Settlement()
        handed_back = self._merge_new(chunk, report, settlement)
        report.held += held
        return report, [i for i in chunk.items if i.source in handed_back]

    def _hold(self, chunk: BulkChunk) -> tuple[BulkChunk, int]:
        kept = self.holds.hold(chunk.items)
        held = len(chunk.items) - len(kept)
        if held:
            keep = {i.source for i in kept}
            chunk = BulkChunk(kept, {e: {r: row for r, row in rows.items() if r in keep} for e, rows in chunk.staged.items()})
        return chunk, held

    def merge_coded(self, items: list[Incoming], origin: Callable[[Incoming], Origin | None] | None = None
                    ) -> tuple[BatchReport, Settlement]:
        """The merge stage's coded candidates (no identity decision): ``merge_settled``, with the new records
        written set-based as in T+1 loads (measured on batches of 40 new insurance months: 183 µs of CPU per
        record, process and backend, against 305–330 recomputed one by one)."""
        kept = self.holds.hold(items, origin)
        report, settlement = self._merge_chunk(stage_bulk(kept))
        report.held += len(items) - len(kept)
        return report, settlement

    def _merge_chunk(self, chunk: BulkChunk) -> tuple[BatchReport, Settlement]:
        """A chunk whose references were checked: the candidates that may open a new record set-based, the
        others (and those the set-based path hands back: merged before) one by one."""
        staged = {ref for rows in chunk.staged.values() for ref in rows}
        # the others first: a new certificate links to the newborn its source row names, merged among them
        report, settlement = self._settled([i for i in chunk.items if i.source not in staged])
        handed_back = self._merge_new(chunk, report, settlement)
        if handed_back:   # merged before: the ordinary merge decides (a replay, a correction)
            again, settled = self._settled([i for i in chunk.items if i.source in handed_back])
            report.add(again)
            settlement.add_causes(settled)
        return report, settlement

    def _merge_new(self, chunk: BulkChunk, report: BatchReport, settlement: Settlement) -> set[SourceRef]:
        """The staged candidates of ``chunk`` set-based; returns those handed back (merged before)."""
        staged = {ref for rows in chunk.staged.values() for ref in rows}
        bulk = BatchReport()
        handed_back: set[SourceRef] = set()
        made: set[str] = set()
        for entity, rows in chunk.staged.items():
            if rows:
                back, ids = merge_new_coded(self.settler, entity, rows, bulk)
                handed_back |= back
                made |= ids
        bulk.read = len(staged) - len(handed_back)
        self._grown(bulk.read)
        report.add(bulk)
        for item in chunk.items:   # what was merged set-based, for the stage's sync-lag metrics
            if item.source in staged and item.source not in handed_back and coded_id(item) in made:
                settlement.touch(item.entity, coded_id(item), item.source, item.provenance)
        return handed_back

    def _grown(self, merged: int) -> None:
        if self.growth.due(merged):   # a library filling up fast outgrows its planner statistics
            self._analyze_grown_tables()

    def _analyze_grown_tables(self) -> None:
        """ANALYZE the tables that changed by a quarter since their statistics were taken (autovacuum lags
        behind a library filling from empty); a large library's tables are left alone: analyzing them
        inside a merge transaction held a batch back for seconds. In name order: a T+1 load's sessions
        analyzing at once wait for each other in one order, never in a cycle."""
        tables = [*(t for t, _, _ in TABLES.values()), "contribution"]
        for (table,) in self.conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s)"
                " AND n_mod_since_analyze > greatest(1000, n_live_tup / 4) ORDER BY relname", (tables,)).fetchall():
            self.conn.execute(f"ANALYZE {table}")

    def relink(self, ref: SourceRef, entity: str, canonical_id: str, method: str) -> BatchReport:
        """Move one source row's contribution to ``canonical_id`` (a review decision) and re-merge both sides."""
        row = self.conn.execute(
            "SELECT canonical_id, record FROM contribution WHERE department = %s AND source_table = %s"
            " AND primary_key = %s AND role = %s", (ref.department, ref.table, ref.primary_key, ref.role)).fetchone()
        if row is None:
            raise TerminalError(f"{ref}: no contribution")
        self.conn.execute(
            "UPDATE contribution SET canonical_id = %s, method = %s, merged_at = clock_timestamp()"
            " WHERE department = %s AND source_table = %s AND primary_key = %s AND role = %s",
            (canonical_id, method, ref.department, ref.table, ref.primary_key, ref.role))
        settlement = Settlement()
        for cid in {canonical_id} | ({row[0]} if row[0] else set()):
            settlement.touch(entity, cid, ref, row[1]["provenance"])
        if entity == "person":   # what its source row names (a birth certificate's newborn) links to the person
            settlement.person_rows[canonical_id].add(ref.row)
        report = BatchReport()
        self.settler.settle(settlement, report)
        return report
