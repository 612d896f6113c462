"""The merge stage's work on the resource library: every golden record a settlement touched is recomputed
from all its contributions by survivorship (``streams.merge.survivorship``); a changed one gets a new
version in ``golden_history``, its ``field_provenance`` and a change in the ``outbox`` (published on
``gldm.<entity>.changes`` after commit); references to people are linked (``sinks.library.links``), and a
record linked to a person after it merged gets a version of its own that names the person.

The caller owns the transaction; nothing here commits.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timezone
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from kintsmesh.topics import changes_topic
from sinks.library.links import link_people, lock_rics, repoint_absorbed
from sinks.library.sql import bulk_upsert, ms_to_dt, text_array
from sinks.library.tables import (BOOKKEEPING, HISTORY_COLUMNS, IDENTIFIERS, JSON_COLUMNS, PERSON_ID_COLUMNS, TABLES,
                                  lock_keys)
from streams.merge.survivorship import Contribution, derive_from_ric, survive
from streams.resolve import matching
from streams.resolve.identity import BatchReport, Settlement, flagged


class Settler:
    """Settles batches into the resource library over one connection (caller commits)."""

    def __init__(self, conn: psycopg.Connection[Any], side_by_side: bool = False) -> None:
        """``side_by_side``: its transactions hold the settle lock shared (the live merge: other merge
        processes commit at the same time), so what another may touch as well is locked where it is
        touched: golden rows before they are read, the RICs and merged-away persons links look for."""
        self.conn = conn
        self.side_by_side = side_by_side
        self._start_settle(Settlement())

    def settle(self, settlement: Settlement, report: BatchReport) -> None:
        """The merge stage's work: what late matches moved is pointed at its person, then every golden
        record touched is recomputed from its contributions, references linked and changes queued."""
        self._start_settle(settlement)
        if self.side_by_side and settlement.absorbed:   # see links.checked_persons
            lock_keys(self.conn, "SELECT 'person:' || o, true FROM unnest(%s::text[]) AS o",
                      (text_array(settlement.absorbed),))
        repoint_absorbed(self.conn, settlement.absorbed, self.note_links)
        affected = settlement.records()
        for entity in TABLES:  # persons first, so the references of the others can link to them
            if affected.get(entity):
                self._recompute(entity, affected[entity], report)
        if self.side_by_side:
            lock_rics(self.conn, affected)
        link_people(self.conn, affected, sorted({row for rows in settlement.person_rows.values() for row in rows}),
                    self.note_links, side_by_side=self.side_by_side)
        self._version_links(report)
        self._queue_changes()


    def _start_settle(self, settlement: Settlement) -> None:
        self._settlement = settlement
        self._outbox_rows: list[tuple[str, str, dict[str, Any]]] = []
        # references the batch linked to a person: (entity, id) -> ({person column: its value before}, the person)
        self._relinked: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}


    def _recompute(self, entity: str, ids: set[str], report: BatchReport) -> None:
        table, id_column, columns = TABLES[entity]
        # side by side: the rows are locked before their contributions are read (another merge process may
        # be linking one of them to a person, or recomputing it after a rebalance)
        locked = f" ORDER BY {id_column} FOR UPDATE" if self.side_by_side else ""
        current = {row[0]: (row[1], row[2]) for row in self.conn.execute(
            f"SELECT {id_column}, version, to_jsonb(t) FROM {table} t WHERE {id_column} = ANY(%s::text[]){locked}",
            (text_array(ids),))}
        grouped: dict[str, list[Contribution]] = defaultdict(list)
        for cid, d, t, pk, role, record, pos, committed in self.conn.execute(
                "SELECT canonical_id, department, source_table, primary_key, role, record, position, committed_at"
                " FROM contribution WHERE entity = %s AND canonical_id = ANY(%s::text[]) AND NOT retracted",
                (entity, text_array(ids))):
            for name in IDENTIFIERS.get(entity, ()):
                if flagged(record, name):
                    record = {**record, name: None}
            grouped[cid].append(Contribution(d, t, pk, role, record, tuple(int(x) for x in pos),
                                             int(committed.timestamp() * 1000) if committed else None))
        if len(current) < len(ids):   # withdrawn earlier, or new: versions continue after the history's last
            current.update({cid: (version, None) for cid, version in self.conn.execute(
                "SELECT canonical_id, max(version) FROM golden_history WHERE entity = %s"
                " AND canonical_id = ANY(%s::text[]) GROUP BY 1", (entity, text_array(i for i in ids if i not in current)))})
        upserts: list[tuple[str, int, dict[str, Any], int | None]] = []
        history: list[tuple[Any, ...]] = []
        provenance_rows: list[tuple[Any, ...]] = []
        deleted: list[str] = []
        for cid in sorted(ids):
            contributions = grouped.get(cid, [])
            version, before = current.get(cid, (0, None))
            if not contributions:
                if before is not None:
                    deleted.append(cid)
                    cause = self._settlement.last_cause((entity, cid))
                    history.append((entity, cid, version + 1, None, ms_to_dt(cause.get("committed_at")), Jsonb(cause)))
                    self._outbox(entity, cid, version + 1, before, None, [cause] if cause else [], report)
                continue
            survived = survive(entity, contributions, list(columns))
            data = survived.data
            derived: dict[str, Any] = {}
            if entity == "person":
                derive_from_ric(data, derived)
            changed = {c for c in columns if before is None or not _same(before.get(c), data.get(c))}
            if not changed:
                continue
            causes = self._settlement.causes_of((entity, cid), survived.suppliers(changed))
            cause = causes[-1] if causes else {}
            upserts.append((cid, version + 1, data, survived.committed_ms))
            history.append((entity, cid, version + 1, Jsonb(data), ms_to_dt(survived.committed_ms), Jsonb(cause)))
            fields: dict[str, Any] = dict(derived)
            sources: list[dict[str, Any]] = []
            index: dict[tuple[str, ...], int] = {}
            for name, source in survived.sources.items():
                ref = (source.department, source.table, source.primary_key, source.role)
                if ref not in index:
                    index[ref] = len(sources)
                    sources.append({"department": source.department, "table": source.table,
                                    "primary_key": source.primary_key, "role": source.role,
                                    "position": list(source.position), "committed_at": source.committed_ms})
                conflicts = survived.conflicts.get(name, [])
                report.conflicts += len(conflicts)
                fields[name] = {"source": index[ref], "conflicts": conflicts} if conflicts else {"source": index[ref]}
            provenance_rows.append((entity, cid, Jsonb({"sources": sources, "fields": fields})))
            if before is None:
                report.new_golden += 1
            report.golden_updates += 1
            self._outbox(entity, cid, version + 1, before, {id_column: cid, **data}, causes, report)
        now = datetime.now(timezone.utc)
        if upserts:
            extra = ("name_key",) if entity == "person" else ()
            names = (id_column, *columns, *extra, "version", "source_committed_at", "updated_at")
            bulk_upsert(self.conn, table, names, [
                (cid, *(column_value(c, data.get(c)) for c in columns),
                 *([matching.name_key(data.get("name"))] if extra else []), version, ms_to_dt(committed), now)
                for cid, version, data, committed in upserts], (id_column,))
        if deleted:
            self.conn.execute(f"DELETE FROM {table} WHERE {id_column} = ANY(%s)", (deleted,))
            self.conn.execute("DELETE FROM field_provenance WHERE entity = %s AND canonical_id = ANY(%s)",
                              (entity, deleted))
        bulk_upsert(self.conn, "golden_history", HISTORY_COLUMNS, [(*h, now) for h in history])
        bulk_upsert(self.conn, "field_provenance", ("entity", "canonical_id", "fields"), provenance_rows,
                    ("entity", "canonical_id"))

    def _outbox(self, entity: str, cid: str, version: int, before: dict[str, Any] | None,
                after: dict[str, Any] | None, causes: list[dict[str, Any]], report: BatchReport) -> None:
        """A GoldenChange (schemas/avro/gov.gldm.GoldenChange.avsc) for the outbox. ``before`` is the golden row
        without its bookkeeping; ``after`` gains the person ids the batch links (``_queue_changes``); ``causes``:
        the source changes it comes from, in order (its ``cause`` is the latest)."""
        if before is not None:
            before = {c: v for c, v in before.items() if c not in BOOKKEEPING}
        cause = causes[-1] if causes else None
        change = {"entity": entity, "canonical_id": cid, "version": version,
                  "op": "DELETE" if after is None else ("CREATE" if before is None else "UPDATE"),
                  "before": before, "after": after, "cause": cause, "causes": causes,
                  "source_committed_at": cause.get("committed_at") if cause else None,
                  "merged_at": int(time.time() * 1000)}
        report.outbox[entity] += 1
        self._outbox_rows.append((changes_topic(entity), cid, change))

    def _queue_changes(self) -> None:
        """Complete the batch's golden changes and write them to the outbox: the resolved person ids (filled in
        after the recompute by ``_link_people``) join ``after``, then the fields that differ are listed (the
        record's own in order, then the person ids) and ``before``/``after`` become JSON text."""
        linked: dict[str, set[str]] = defaultdict(set)
        for _, cid, change in self._outbox_rows:
            if change["after"] is not None and change["entity"] in PERSON_ID_COLUMNS:
                linked[change["entity"]].add(cid)
        person_ids: dict[tuple[str, str], dict[str, Any]] = {}
        for entity, ids in linked.items():
            table, id_column, _ = TABLES[entity]
            columns = PERSON_ID_COLUMNS[entity]
            for cid, *values in self.conn.execute(
                    f"SELECT {id_column}, {', '.join(columns)} FROM {table} WHERE {id_column} = ANY(%s::text[])",
                    (text_array(ids),)):
                person_ids[(entity, cid)] = dict(zip(columns, values))
        rows = []
        for topic, cid, change in self._outbox_rows:
            before, after = change["before"], change["after"]
            links = PERSON_ID_COLUMNS.get(change["entity"], ())
            if after is not None and links:
                after.update(person_ids.get((change["entity"], cid), {}))
            fields = set(before or {}) | set(after or {})
            differ = [c for c in fields if not _same((before or {}).get(c), (after or {}).get(c))]
            change["changed_fields"] = sorted(c for c in differ if c not in links) + [c for c in links if c in differ]
            change["before"] = orjson.dumps(before, default=str).decode() if before is not None else None
            change["after"] = orjson.dumps(after, default=str).decode() if after is not None else None
            rows.append((topic, cid, Jsonb(change)))
        bulk_upsert(self.conn, "outbox", ("topic", "key", "value"), rows)


    def forget_links(self) -> None:
        """Links noted so far need no version of their own (their records' changes are written with them)."""
        self._relinked.clear()

    def note_links(self, entity: str, person_column: str, linked: Iterable[tuple[Any, ...]]) -> None:
        for cid, was, person in linked:
            olds, _ = self._relinked.get((entity, cid), ({}, person))
            olds.setdefault(person_column, was)   # two links of one column in a batch: the first one's before
            self._relinked[(entity, cid)] = (olds, person)

    def _version_links(self, report: BatchReport) -> None:
        """A reference linked to a person after its record merged (the person merged in a later batch, a late
        match or a review decision moved it) makes a new version of that record, so that its golden change
        names the person. The version's history keeps the record's data (nothing the sources said changed)
        and has the person's source change as its cause."""
        queued = {(change["entity"], cid) for _, cid, change in self._outbox_rows}   # their change has the link
        waiting: dict[str, dict[str, tuple[dict[str, Any], str]]] = defaultdict(dict)
        for (entity, cid), link in self._relinked.items():
            if (entity, cid) not in queued:
                waiting[entity][cid] = link
        self._relinked.clear()
        history: list[tuple[Any, ...]] = []
        now = datetime.now(timezone.utc)
        for entity, links in waiting.items():
            table, id_column, columns = TABLES[entity]
            for cid, version, committed, row in self.conn.execute(
                    f"UPDATE {table} t SET version = version + 1, updated_at = %s WHERE {id_column} = ANY(%s::text[])"
                    f" RETURNING {id_column}, version, source_committed_at, to_jsonb(t)", (now, text_array(links))):
                olds, person = links[cid]
                cause = self._settlement.last_cause(("person", person)) or self._settlement.last_cause((entity, cid))
                data = {c: row.get(c) for c in columns}
                # the history marks the version as a link (explain shows it): the cause alone is the person's
                history.append((entity, cid, version, Jsonb(data), committed, Jsonb({**cause, "linked": sorted(olds)}),
                                now))
                report.golden_updates += 1
                self._outbox(entity, cid, version, {**row, **olds}, {id_column: cid, **data}, [cause] if cause else [],
                             report)
        bulk_upsert(self.conn, "golden_history", HISTORY_COLUMNS, history)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, date):
        return a == b.isoformat()
    return bool(a == b)


def column_value(name: str, value: Any) -> Any:
    return Jsonb(value) if name in JSON_COLUMNS and value is not None else value
