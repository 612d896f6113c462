"""References that must resolve: a record that names its person by a department's own key (an insurance
month's insured number) is not merged alone while no accepted row of that person is in the library.

A mapping says which fields must resolve (``resolves: insured_no``: the value must be the key of a person
source row whose mapping ``identifies: insured_no``; ``streams.normalize.mapping.required_references``).
A candidate whose value names no such row — none in the library, none in its batch — waits in
``held_reference`` (migration 013), one row per source row: a newer candidate of the same row replaces it
or, if it resolves, merges and ends the hold. ``ready`` hands back the held candidates whose person row
has arrived since; ``expired`` takes out those held longer than the hold time, for ``dlq.merge`` with
reason ``unresolved_reference`` (the person's row was refused, or never came). The caller owns the
transaction, as everywhere in the library writer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from sinks.dlq import DeadLetters
from sinks.library.sql import bulk_upsert, text_array
from streams.normalize.mapping import identifying_kinds, required_references
from streams.resolve.identity import Incoming, SourceRef

log = logging.getLogger("kintsmesh.merge")
UNRESOLVED = "unresolved_reference"   # the DLQ reason of an expired hold
COLUMNS = ("department", "source_table", "primary_key", "role", "entity", "field", "identifier", "value", "record",
           "source_topic", "source_partition", "source_offset", "original_key", "original_value")
KEY = ("department", "source_table", "primary_key", "role")
# the accepted person source rows that x.value names (x.identifier: what it must name; k: ``_kinds``)
_NAMED = (" JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(identifier, department, source_table, role)"
          "  ON k.identifier = x.identifier JOIN contribution c ON (c.department, c.source_table, c.primary_key, c.role)"
          "  = (k.department, k.source_table, x.value, k.role) AND NOT c.retracted")


@dataclass(frozen=True)
class Origin:
    """Where a candidate came from, for its DLQ record if its hold expires: a message's coordinates and
    bytes, or (no bytes) a T+1 batch."""
    topic: str
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    value: bytes | None = None


@dataclass(frozen=True)
class Held:
    """A held candidate taken out of the table: merged now that its person is in (``item``), or sent to
    ``dlq.merge`` (``dlq_record``) when its hold expired or it cannot be merged."""
    source: SourceRef
    entity: str
    field: str
    identifier: str
    value: str
    origin: Origin
    record: dict[str, Any]

    @property
    def item(self) -> Incoming:
        return Incoming(self.entity, self.record)

    def detail(self, held_s: float) -> str:
        kinds = ", ".join(f"{d}.{t}" for d, t, _ in identifying_kinds(self.identifier))
        return (f"{self.field} {self.value!r} names no accepted {kinds} row after {held_s:.0f} s"
                " (refused, or never sent): the record is not merged without its person")

    def dlq_record(self, reason: str, reason_detail: str) -> dict[str, Any]:
        value = self.origin.value if self.origin.value is not None else orjson.dumps(self.record)
        return {"department": "merge", "source_topic": self.origin.topic, "source_partition": self.origin.partition,
                "source_offset": self.origin.offset, "table": self.source.table, "primary_key": self.source.primary_key,
                "reason": reason, "field": self.field, "detail": reason_detail[:500],
                "original_key": self.origin.key if self.origin.key is not None else self.source.primary_key.encode(),
                "original_value": value, "rejected_at": int(time.time() * 1000)}


def send_expired(holds: Holds, dead: DeadLetters, older_than_s: float) -> list[Held]:
    """Take out the holds older than ``older_than_s`` and send each to ``dlq.merge`` (``unresolved_reference``);
    raises unless the broker has them all, and everything sent to ``dead`` before (the caller's transaction
    then rolls back: they stay held)."""
    expired = holds.expired(older_than_s)
    for held in expired:
        detail = held.detail(older_than_s)
        log.error("%s: %s: %s", held.source, UNRESOLVED, detail)
        dead.send(held.dlq_record(UNRESOLVED, detail))
    dead.flush()
    return expired


def summary(conn: psycopg.Connection[Any]) -> list[tuple[str, str, str, int, float]]:
    """(department.table, field, identifier, records held, oldest in seconds) per held kind."""
    return [tuple(r) for r in conn.execute(  # type: ignore[misc]
        "SELECT department || '.' || source_table, field, identifier, count(*),"
        " extract(epoch FROM clock_timestamp() - min(held_at))::float8 FROM held_reference GROUP BY 1, 2, 3"
        " ORDER BY 1, 2").fetchall()]


class Holds:
    """The ``held_reference`` table over one connection (the caller's transaction)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.references = required_references()

    def hold(self, items: list[Incoming], origin: Callable[[Incoming], Origin | None] | None = None) -> list[Incoming]:
        """The items to merge now; the others are held. Any item of a source row ends that row's earlier hold."""
        if not self.references or not items:
            return items
        checks: list[tuple[Incoming, str, str, str]] = []   # item, field, identifier, value
        last = {item.source: item for item in items}   # a source row's latest candidate decides for all of it
        for item in last.values():
            pairs = self.references.get(item.source.kind)
            if not pairs or item.record.get("retracted"):
                continue
            for field, identifier in pairs:
                value = item.record.get(field)
                if value is not None:
                    checks.append((item, field, identifier, str(value)))
        if not checks:
            return items
        if self.any():   # nothing held (the usual case): no earlier hold to end
            self._release_rows([i.source for i in items if i.source.kind in self.references])
        present = self._present({(identifier, value) for _, _, identifier, value in checks}, items)
        held: dict[SourceRef, tuple[Any, ...]] = {}
        for item, field, identifier, value in checks:
            if (identifier, value) in present or item.source in held:
                continue   # (a second unresolved field of a held row: the first is named)
            where = (origin(item) if origin else None) or Origin(f"extract:{item.provenance.get('batch_id') or '?'}")
            held[item.source] = (*item.source, item.entity, field, identifier, value, Jsonb(item.record), where.topic,
                                 where.partition, where.offset, where.key, where.value)
        if not held:
            return items
        bulk_upsert(self.conn, "held_reference", COLUMNS, list(held.values()), conflict=KEY)
        return [i for i in items if i.source not in held]

    def ready(self, limit: int = 5000) -> list[Held]:
        """Held candidates whose person row is in the library now, taken out of the table (to merge)."""
        return self._taken(
            "DELETE FROM held_reference h USING (SELECT DISTINCT x.department, x.source_table, x.primary_key, x.role"
            "  FROM held_reference x" + _NAMED + " LIMIT %s) r WHERE (h.department, h.source_table, h.primary_key,"
            " h.role) = (r.department, r.source_table, r.primary_key, r.role)", (*self._kinds(), limit))

    def expired(self, older_than_s: float, limit: int = 5000) -> list[Held]:
        """Holds older than ``older_than_s``, taken out of the table (for ``dlq.merge``)."""
        return self._taken(
            "DELETE FROM held_reference h WHERE (department, source_table, primary_key, role) IN ("
            " SELECT department, source_table, primary_key, role FROM held_reference"
            " WHERE held_at <= clock_timestamp() - make_interval(secs => %s) ORDER BY held_at LIMIT %s)",
            (older_than_s, limit))

    def _taken(self, delete: str, params: tuple[Any, ...]) -> list[Held]:
        rows = self.conn.execute(
            delete + " RETURNING h.department, h.source_table, h.primary_key, h.role, h.entity, h.field, h.identifier,"
            " h.value, h.record, h.source_topic, h.source_partition, h.source_offset, h.original_key,"
            " h.original_value", params).fetchall()
        return [Held(SourceRef(*r[:4]), r[4], r[5], r[6], r[7], Origin(r[9], r[10], r[11], r[12], r[13]), r[8])
                for r in rows]

    def due(self, older_than_s: float) -> bool:
        """Whether ``ready`` or ``expired(older_than_s)`` would take anything now (a read, no lock needed: a
        hold that becomes due just after is seen by the next look)."""
        return self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM held_reference x" + _NAMED + ") OR EXISTS (SELECT 1 FROM held_reference"
            " WHERE held_at <= clock_timestamp() - make_interval(secs => %s))",
            (*self._kinds(), older_than_s)).fetchone() == (True,)

    def any(self) -> bool:
        return self.conn.execute("SELECT EXISTS (SELECT 1 FROM held_reference)").fetchone() == (True,)

    def count(self) -> int:
        row = self.conn.execute("SELECT count(*) FROM held_reference").fetchone()
        return int(row[0]) if row else 0

    def _release_rows(self, sources: list[SourceRef]) -> None:
        if sources:
            self.conn.execute(
                "DELETE FROM held_reference WHERE (department, source_table, primary_key, role) IN"
                " (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[]))",
                tuple(text_array(s[i] for s in sources) for i in range(4)))

    def _present(self, wanted: set[tuple[str, str]], batch: list[Incoming]) -> set[tuple[str, str]]:
        """Which (identifier, value) name a person source row accepted: in the library, or in this batch."""
        kinds = {identifier: set(identifying_kinds(identifier)) for identifier, _ in wanted}
        present = {(identifier, item.source.primary_key) for item in batch if not item.record.get("retracted")
                   for identifier, of in kinds.items() if item.source.kind in of} & wanted
        asked = wanted - present
        if asked:
            present |= set(self.conn.execute(
                "SELECT DISTINCT x.identifier, x.value FROM unnest(%s::text[], %s::text[]) AS x(identifier, value)"
                + _NAMED,
                (text_array(i for i, _ in asked), text_array(v for _, v in asked), *self._kinds())).fetchall())
        return present

    def _kinds(self) -> tuple[str, str, str, str]:
        """Every identifier that must resolve, with the (department, table, role) of the rows it names."""
        rows = [(identifier, *kind) for identifier in sorted({i for pairs in self.references.values() for _, i in pairs})
                for kind in identifying_kinds(identifier)]
        return tuple(text_array(r[i] for r in rows) for i in range(4))  # type: ignore[return-value]
