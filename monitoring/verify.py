"""``kintsmesh verify``: the reconciliation any operator can run at any time.

Every row of every captured department table, as it is now, must be in the resource library (a
contribution that is not retracted) or in a DLQ with its reason (``dlq.<department>`` for what
normalize or a T+1 load refused, ``dlq.merge`` for a candidate resolve or merge refused), or held for
the person it names (``held_reference``: counted apart, not missing), unless its mapping yields nothing
for it (an output whose ``when`` column is empty). A row committed within the grace period may still be
on its way: it counts as in flight, not missing. Beside that: no golden
record has a history version twice or a gap in its versions, no golden change is on ``gldm.*.changes``
twice, and no life-event id is on ``events.life.*`` twice.

``check`` gathers the facts (department databases, the library, the topics); ``Verification`` judges
and renders them, purely.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson
import psycopg
from confluent_kafka import TopicPartition
from psycopg import sql
from rich.table import Table

from kintsmesh import kafka
from kintsmesh.errors import TransientError
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import decode
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.topics import changes_topics, dlq_topic
from streams.events.rules import rules
from streams.normalize.mapping import SourceMapping, mappings
from streams.normalize.standardize import is_null

EXAMPLES = 5   # missing rows named per table
READ_TIMEOUT_S = 30.0   # a topic partition that gives nothing for this long while short of its end


@dataclass
class TableCheck:
    department: str
    table: str
    rows: int = 0
    in_library: int = 0
    in_dlq: int = 0
    held: int = 0          # waiting for the person it names (held_reference): not merged alone, not lost
    no_output: int = 0
    in_flight: int = 0
    missing: list[str] = field(default_factory=list)   # primary keys of rows found nowhere


@dataclass
class Verification:
    tables: list[TableCheck]
    history_duplicates: int = 0      # (entity, id, version) written twice
    history_gaps: int = 0            # golden records whose versions are not 1..n
    changes: int = 0
    change_duplicates: int = 0       # (entity, id, version) published twice
    events: int = 0
    event_duplicates: int = 0        # life-event ids published twice
    unattributed_dlq: int = 0        # stage DLQ records whose source row cannot be told (corrupt bytes)

    @property
    def missing(self) -> int:
        return sum(len(t.missing) for t in self.tables)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.history_duplicates or self.history_gaps or self.change_duplicates
                    or self.event_duplicates)

    def by_department(self) -> dict[str, TableCheck]:
        totals: dict[str, TableCheck] = {}
        for t in self.tables:
            total = totals.setdefault(t.department, TableCheck(t.department, ""))
            total.rows += t.rows
            total.in_library += t.in_library
            total.in_dlq += t.in_dlq
            total.held += t.held
            total.no_output += t.no_output
            total.in_flight += t.in_flight
            total.missing += t.missing
        return totals

    def render(self) -> Iterator[Any]:
        table = Table(title="every department row, as it is now: where it is", title_justify="left")
        for column in ("department", "rows", "in library", "in DLQ", "held", "no output", "in flight", "missing"):
            table.add_column(column, justify="left" if column == "department" else "right")
        for department, t in self.by_department().items():
            table.add_row(department, f"{t.rows:,}", f"{t.in_library:,}", f"{t.in_dlq:,}", f"{t.held:,}", f"{t.no_output:,}",
                          f"{t.in_flight:,}", f"[bold red]{len(t.missing):,}[/]" if t.missing else "0")
        yield table
        for t in self.tables:
            if t.missing:
                yield f"[bold red]{t.department}.{t.table}: {len(t.missing):,} rows in no library table and no DLQ," \
                      f" e.g. {', '.join(t.missing[:EXAMPLES])}[/]"
        yield (f"golden history: {self.history_duplicates} versions written twice, {self.history_gaps} records with"
               " a gap in their versions")
        yield f"golden changes: {self.changes:,} on gldm.*.changes, {self.change_duplicates} published twice"
        yield f"life events: {self.events:,} on events.life.*, {self.event_duplicates} ids published twice"
        if self.unattributed_dlq:
            yield f"{self.unattributed_dlq} stage DLQ records whose source row cannot be read (counted nowhere above)"
        yield "[green]verified: nothing lost, nothing twice[/]" if self.ok else "[bold red]NOT verified[/]"


def check(settings: Settings, grace_s: float = 60.0, departments: Iterable[str] | None = None) -> Verification:
    wanted = set(departments) if departments else None
    chosen = [m for m in mappings().values() if wanted is None or m.department in wanted]
    refused, unattributed = refused_rows(settings, sorted({m.department for m in chosen}))
    result = Verification([], unattributed_dlq=unattributed)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as library:
        for mapping in chosen:
            contributed = {pk: live for pk, live in library.execute(
                "SELECT primary_key, bool_or(NOT retracted) FROM contribution WHERE department = %s"
                " AND source_table = %s GROUP BY 1", (mapping.department, mapping.table))}
            held = {pk for pk, in library.execute(
                "SELECT primary_key FROM held_reference WHERE department = %s AND source_table = %s",
                (mapping.department, mapping.table))}
            result.tables.append(_table(settings, mapping, contributed, held, refused, grace_s))
        result.history_duplicates, result.history_gaps = library.execute(
            "SELECT count(*) FILTER (WHERE n > 1), (SELECT count(*) FROM (SELECT 1 FROM golden_history"
            " GROUP BY entity, canonical_id HAVING max(version) <> count(DISTINCT version)"
            " OR min(version) <> 1) g) FROM (SELECT count(*) AS n FROM golden_history"
            " GROUP BY entity, canonical_id, version) v").fetchone() or (0, 0)
    registry = SchemaRegistry(settings)
    changes = Counter((c["entity"], c["canonical_id"], c["version"])
                      for c in _records(settings, registry, changes_topics()))
    result.changes, result.change_duplicates = sum(changes.values()), sum(n - 1 for n in changes.values() if n > 1)
    events = Counter(e["event_id"] for e in _records(settings, registry, sorted({r.topic for r in rules().values()})))
    result.events, result.event_duplicates = sum(events.values()), sum(n - 1 for n in events.values() if n > 1)
    return result


def _table(settings: Settings, mapping: SourceMapping, contributed: dict[str, bool], held: set[str],
           refused: set[tuple[str, str, str]], grace_s: float) -> TableCheck:
    result = TableCheck(mapping.department, mapping.table)
    whens = sorted({o.when for o in mapping.outputs if o.when})
    columns = [*mapping.key, *whens]
    query = sql.SQL("SELECT {}, pg_xact_commit_timestamp(xmin) FROM {}").format(
        sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
        sql.Identifier(mapping.table))
    recent = datetime.now(timezone.utc) - timedelta(seconds=grace_s)
    with psycopg.connect(settings.dsn(mapping.department)) as conn:
        for row in conn.execute(query):
            values = dict(zip(columns, row))
            pk = mapping.primary_key(values)
            result.rows += 1
            if contributed.get(pk):
                result.in_library += 1
            elif (mapping.department, mapping.table, pk) in refused:
                result.in_dlq += 1
            elif pk in held:
                result.held += 1
            elif all(o.when and is_null(values[o.when]) for o in mapping.outputs):
                result.no_output += 1
            elif row[-1] is not None and row[-1] > recent:
                result.in_flight += 1
            else:
                result.missing.append(pk)
    return result


def refused_rows(settings: Settings, departments: list[str]) -> tuple[set[tuple[str, str, str]], int]:
    """(department, table, primary key) of every row a DLQ holds, and how many stage DLQ records name none."""
    registry = SchemaRegistry(settings)
    refused: set[tuple[str, str, str]] = set()
    unattributed = 0
    for record in _records(settings, registry, [dlq_topic(d) for d in departments]):
        if record.get("table") is not None and record.get("primary_key") is not None:
            refused.add((record["department"], record["table"], record["primary_key"]))
    for record in _records(settings, registry, [dlq_topic("merge")]):
        try:   # the candidate (or resolved record) as it was refused: its provenance names the row
            provenance = _refused_record(record["original_value"], registry)["provenance"]
            refused.add((provenance["department"], provenance["table"], provenance["primary_key"]))
        except Exception:  # noqa: BLE001 - corrupt bytes name no row
            unattributed += 1
    return refused, unattributed


def _refused_record(value: bytes, registry: SchemaRegistry) -> dict[str, Any]:
    """A ``dlq.merge`` record's original: the message's Avro bytes, or (a held T+1 record) its JSON."""
    try:
        return decode(value, registry)
    except Exception:  # noqa: BLE001 - not Avro: JSON or nothing
        found = orjson.loads(value)
        if not isinstance(found, dict):
            raise ValueError("not a record") from None
        return found


def _records(settings: Settings, registry: SchemaRegistry, topic_names: list[str]) -> Iterator[dict[str, Any]]:
    """Every message of the topics, from the start to their ends now, decoded."""
    consumer = kafka.consumer(settings, "kintsmesh-verify", enable_auto_commit=False)
    try:
        metadata = consumer.list_topics(timeout=10).topics
        ends, starts = {}, []
        for topic in topic_names:
            for partition in (metadata[topic].partitions if topic in metadata else {}):
                low, end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
                if end > low:
                    ends[(topic, partition)] = end
                    starts.append(TopicPartition(topic, partition, low))
        consumer.assign(starts)
        deadline = time.monotonic() + READ_TIMEOUT_S
        while ends:
            if time.monotonic() > deadline:
                raise TransientError(f"could not read {sorted(ends)} to their ends")
            for message in consumer.consume(2000, timeout=0.5):
                where, offset = (message.topic() or "", message.partition() or 0), message.offset()
                if message.error() or offset is None or where not in ends:
                    continue
                deadline = time.monotonic() + READ_TIMEOUT_S
                if offset + 1 >= ends[where]:
                    del ends[where]
                if offset < ends.get(where, offset + 1) and message.value():
                    try:
                        yield decode(message.value() or b"", registry)
                    except Exception:  # noqa: BLE001 - a corrupt message is the DLQ's business
                        continue
    finally:
        consumer.close()
