"""The resource library writer: resolve a batch of GLDM candidates, then merge the golden records it touched.

Used by the resolve and merge stages (Kafka, real time; ``sinks.worker``) and by ``kintsmesh batch
load`` (T+1), so both paths run exactly the same code. For a batch:

1. each candidate's source row (department, table, key, role) is looked up in
   ``contribution``; a position the same as or older than the merged one is a
   no-op (replays and redeliveries change nothing);
2. the candidate is resolved to a canonical id: deterministic on a valid RIC /
   USCC / house code / certificate number, else the sticky earlier link, else a
   fuzzy match (``streams.resolve.matching``) over the mention's blocks (golden
   persons, and persons resolved but not merged yet); an ambiguous one waits in
   ``review_queue``. ``resolve`` stops here and returns a ``Settlement``: the
   records touched, which the resolve stage queues in ``settle_queue`` for the
   merge stage that owns their canonical ids;
3. ``settle``: every golden record touched is recomputed from all its contributions by
   survivorship (``streams.merge.survivorship``); a changed one gets a new
   version in ``golden_history``, its ``field_provenance`` and a change in the
   ``outbox`` (published on ``gldm.<entity>.changes`` after commit);
4. references to people (certificate holders, relationship ends, insured
   persons) are linked to person ids, in both directions of arrival.

``merge`` does both in one transaction (T+1 loads, review decisions). ``merge_bulk``
leaves the same library, faster: a candidate that opens a new golden record of a
coded entity (its id its own code) is written set-based in SQL; the others go through
the steps above. T+1 loads use it.

The caller owns the transaction; nothing here commits.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cache, cached_property
from itertools import product
from datetime import date, datetime, timezone
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg.types.json import Jsonb, set_json_dumps, set_json_loads

from streams.merge.survivorship import EMPTY, Contribution, Position, Survived, is_stale, position, survive
from streams.resolve import matching

# Golden tables: entity -> (table, id column, data columns). Data columns are candidate fields.
TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "person": ("person", "person_id", ("ric", "name", "gender", "ethnicity", "birth_date", "marital_status",
                                       "death_date", "household_no", "address", "mother_ric", "father_ric")),
    "legal_entity": ("legal_entity", "entity_id", (
        "uscc", "registration_no", "name", "kind", "legal_representative_name", "legal_representative_ric",
        "registered_capital", "established_date", "status", "deregistered_date", "address")),
    "house": ("house", "house_id", ("building_code", "address", "floor_area", "use")),
    "certificate": ("certificate", "certificate_id", (
        "certificate_type", "certificate_no", "holder_ric", "holder_name", "issued_date", "valid_until", "issuer",
        "status", "details")),
    "relationship": ("relationship", "relationship_id", (
        "type", "subject_ric", "subject_name", "object_kind", "object_id", "object_name", "valid_from", "valid_to")),
    "social_insurance": ("social_insurance", "fact_id", (
        "person_ric", "insured_no", "month", "insurance_type", "employer_uscc", "employer_name",
        "contribution_base", "personal_amount", "employer_amount")),
}
# Entities whose canonical id is their own code (no look-up, no matching): new ones can merge set-based.
CODED = ("house", "certificate", "relationship", "social_insurance")
# Person source rows a person has at most one of: a birth certificate names one newborn (twins have two;
# a nameless certificate of one twin must not link to the other, whose certificate the library holds).
ONE_PER_PERSON = frozenset({("health", "cszm", "child")})
# Identifier fields: a value flagged by a finding (bad check character ...) never becomes the golden identifier.
IDENTIFIERS: dict[str, tuple[str, ...]] = {"person": ("ric",), "legal_entity": ("uscc",)}
JSON_COLUMNS = frozenset({"address", "details"})
# Entities that point at people, and the reference columns they resolve.
PERSON_REFS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # entity -> (person id column, RIC column, name column)
    "certificate": (("holder_person_id", "holder_ric", "holder_name"),),
    "relationship": (("subject_person_id", "subject_ric", "subject_name"), ("object_person_id", "object_id", "object_name")),
    "social_insurance": (("person_id", "person_ric", ""),),
}
# entity -> its person id columns, as golden changes carry them
PERSON_ID_COLUMNS: dict[str, tuple[str, ...]] = {e: tuple(ref[0] for ref in refs) for e, refs in PERSON_REFS.items()}


# Golden-row columns that describe the library's bookkeeping, not the subject: never part of a change.
BOOKKEEPING = frozenset({"version", "updated_at", "source_committed_at", "name_key"})

# Two advisory locks, taken first in a transaction and held to its end. RESOLVE_LOCK: one identity
# decision at a time (resolve reads the persons to match against, then writes contributions).
# SETTLE_LOCK: one writer of golden records at a time (a settle links references across records, and the
# outbox relay relies on outbox ids growing in commit order). The resolve stage takes the first, the merge
# stage the second; T+1 loads and review decisions, which do both in one transaction, take both in this
# order, so no two transactions wait for each other.
RESOLVE_LOCK = 0x4B4D5247
SETTLE_LOCK = 0x4B4D5248


def lock_resolve(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (RESOLVE_LOCK,))


def lock_settle(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SETTLE_LOCK,))


def lock_library(conn: psycopg.Connection[Any]) -> None:
    """For a transaction that resolves and settles (``Merger.merge``, ``relink``): both locks, in order."""
    lock_resolve(conn)
    lock_settle(conn)


# Session settings of a merging connection (psycopg.connect(..., options=MERGE_SESSION)): staging tables
# hold a whole chunk (8 MB of temp buffers by default spilled them to disk), and JIT compiling a
# statement over an unanalyzed staging table cost more than running it.
MERGE_SESSION = "-c jit=off -c temp_buffers=256MB"

set_json_dumps(orjson.dumps)   # jsonb in and out of the library: most of a merge's bytes
set_json_loads(orjson.loads)

CONTRIBUTION_KEY = ("department", "source_table", "primary_key", "role")
CONTRIBUTION_COLUMNS = (*CONTRIBUTION_KEY, "entity", "canonical_id", "position", "retracted", "record", "committed_at",
                        "merged_at", "method", "score", "evidence")
HISTORY_COLUMNS = ("entity", "canonical_id", "version", "data", "valid_from", "cause", "recorded_at")


def bulk_upsert(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
                conflict: tuple[str, ...] = ()) -> None:
    """COPY rows into a per-transaction staging table, then one INSERT ... ON CONFLICT DO UPDATE."""
    if not rows:
        return
    stage = f"_stage_{table}"
    cols = ", ".join(columns)
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        on_conflict = (f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET "
                       + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in conflict)) if conflict else ""
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}{on_conflict}")
        cur.execute(f"TRUNCATE {stage}")


def text_array(values: Iterable[str | None]) -> str:
    """A text[] literal for ``= ANY(%s::text[])`` (psycopg's list dumper is pure Python and showed in profiles)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def numeric_array(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def flagged(record: dict[str, Any], name: str) -> bool:
    """Whether standardizing found something wrong with the field (an upgraded 15-digit RIC is fine)."""
    return any(f.startswith(f"{name}:") and f != f"{name}:legacy_15_upgraded" for f in record.get("findings") or ())


def jsonable(value: Any) -> Any:
    """A decoded Avro / mapping value as JSON: dates as ISO text, timestamps as epoch ms."""
    kind = type(value)
    if kind is str or value is None or kind is int or kind is bool or kind is float:   # most values
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


class SourceRef(NamedTuple):   # a tuple: hashed and compared in C (a batch hashes each several times)
    department: str
    table: str
    primary_key: str
    role: str

    @property
    def row(self) -> tuple[str, str, str]:
        return (self.department, self.table, self.primary_key)

    def __str__(self) -> str:
        return f"{self.department}/{self.table}/{self.primary_key}/{self.role}"


@dataclass
class Incoming:
    """One candidate to merge, JSON-safe."""
    entity: str
    record: dict[str, Any]

    @classmethod
    def of(cls, entity: str, record: dict[str, Any]) -> Incoming:
        return cls(entity, jsonable(record))

    @property
    def provenance(self) -> dict[str, Any]:
        return self.record["provenance"]  # type: ignore[no-any-return]

    @cached_property
    def source(self) -> SourceRef:
        p = self.provenance
        return SourceRef(p["department"], p["table"], p["primary_key"], p.get("role") or self.entity)

    @property
    def position(self) -> Position:
        return position(self.provenance)

    def flagged(self, name: str) -> bool:
        return flagged(self.record, name)


@dataclass
class BatchReport:
    """What one batch did; summed into run reports and metrics."""
    read: int = 0
    merged: int = 0
    unchanged: int = 0          # stale or identical: a replay, a redelivery, a no-op update
    retracted: int = 0
    to_review: int = 0
    new_golden: int = 0
    golden_updates: int = 0
    conflicts: int = 0
    set_based: int = 0          # merged by merge_bulk's set-based path (counted in merged too)
    links: dict[str, int] = field(default_factory=lambda: defaultdict(int))   # method -> count
    outbox: Counter[str] = field(default_factory=Counter)                    # entity -> golden changes queued

    def add(self, other: BatchReport) -> None:
        for name in ("read", "merged", "unchanged", "retracted", "to_review", "new_golden", "golden_updates", "conflicts",
                     "set_based"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for method, n in other.links.items():
            self.links[method] += n
        self.outbox.update(other.outbox)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "merged": self.merged, "unchanged": self.unchanged, "retracted": self.retracted,
                "sent_to_review": self.to_review, "new_golden": self.new_golden,
                "golden_updates": self.golden_updates, "conflicts": self.conflicts, "set_based": self.set_based,
                "links": dict(self.links)}


@dataclass
class _Linked:
    canonical_id: str | None
    method: str
    score: float | None = None
    evidence: dict[str, Any] | None = None


# a source row's merged state: position, canonical id, link method, commit time (ms)
_State = tuple[Position, str | None, str, int | None]
Key = tuple[str, str]   # (entity, canonical id): one golden record


@dataclass
class Settlement:
    """What resolving leaves the merge stage to do: the golden records touched, each with the source
    changes that touched it in order (a new version's cause is chosen among them), the person source
    rows linked (what those rows name links to their person) and the persons matched late into another
    (what pointed at them points at the other). Queued in ``settle_queue`` one row per record, or
    settled in the same transaction (T+1 loads, review decisions)."""
    causes: dict[Key, dict[SourceRef, dict[str, Any]]] = field(default_factory=dict)
    fallback: dict[Key, dict[str, Any]] = field(default_factory=dict)   # a record no change of its own touched
    person_rows: dict[str, set[tuple[str, str, str]]] = field(default_factory=lambda: defaultdict(set))
    absorbed: dict[str, str] = field(default_factory=dict)              # orphan person -> the person it joined

    def touch(self, entity: str, cid: str, ref: SourceRef, provenance: dict[str, Any]) -> None:
        seen = self.causes.setdefault((entity, cid), {})
        seen.pop(ref, None)   # re-inserted: the order is the latest change's
        seen[ref] = provenance

    def touch_without_change(self, entity: str, cid: str, provenance: dict[str, Any]) -> None:
        self.fallback.setdefault((entity, cid), provenance)

    def records(self) -> dict[str, set[str]]:
        touched: dict[str, set[str]] = defaultdict(set)
        for entity, cid in (*self.causes, *self.fallback):
            touched[entity].add(cid)
        return touched

    def last_cause(self, key: Key) -> dict[str, Any]:
        seen = self.causes.get(key)
        return next(reversed(seen.values())) if seen else self.fallback.get(key, {})

    def add_queued(self, entity: str, cid: str, causes: list[list[Any]], fallback: dict[str, Any] | None,
                   person_rows: list[list[str]], absorbed_by: str | None) -> None:
        """One ``settle_queue`` row; rows of one record are added in queue order."""
        for d, t, pk, role, provenance in causes:
            self.touch(entity, cid, SourceRef(d, t, pk, role), provenance)
        if fallback is not None or not causes:
            self.touch_without_change(entity, cid, fallback or {})
        self.person_rows[cid].update((d, t, pk) for d, t, pk in person_rows)
        if absorbed_by:
            self.absorbed[cid] = absorbed_by

    def queue_rows(self) -> list[tuple[Any, ...]]:
        """The ``settle_queue`` rows: (entity, canonical_id, causes, fallback, person_rows, absorbed_by)."""
        return [(entity, cid, Jsonb([[*ref, provenance] for ref, provenance in self.causes.get((entity, cid), {}).items()]),
                 Jsonb(self.fallback[(entity, cid)]) if (entity, cid) in self.fallback else None,
                 Jsonb(sorted(self.person_rows.get(cid, ()))) if entity == "person" else Jsonb([]),
                 self.absorbed.get(cid) if entity == "person" else None)
                for entity, ids in self.records().items() for cid in sorted(ids)]


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _mention(record: dict[str, Any], flagged_ric: bool, households: frozenset[str] = frozenset()) -> matching.Mention:
    address = record.get("address")
    ric = record.get("ric")
    return matching.Mention(
        ric=ric, ric_valid=bool(ric) and not flagged_ric, name=record.get("name"), gender=record.get("gender"),
        birth_date=_as_date(record.get("birth_date")), households=households,
        address=address.get("full") if isinstance(address, dict) else None,
        mother_ric=record.get("mother_ric"), father_ric=record.get("father_ric"),
    )


def _own_household(record: dict[str, Any]) -> frozenset[str]:
    return frozenset([record["household_no"]] if record.get("household_no") else [])


def _candidates(decision: matching.Decision) -> list[dict[str, Any]]:
    """A decision's candidates as the evidence and the review queue keep them."""
    return [{"canonical_id": c.canonical_id, "score": c.score, "evidence": c.evidence} for c in decision.candidates]


BlockParams = tuple[date | None, str | None, str | None, str | None]   # birth date, name key, RIC body, RIC area


def _block_params(mention: matching.Mention) -> BlockParams:
    # a flagged RIC's birth digits still block (a bad check character rarely sits in the date)
    return (mention.birth_date or matching.birth_from_ric(mention.ric), matching.name_key(mention.name),
            matching.ric_body(mention.ric), (mention.ric or "")[:6] or None)


def _sticky(previous: _State) -> bool:
    """A source row keeps the person an earlier match or review decision linked it to."""
    return bool(previous[1]) and previous[2] not in ("ric", "review")


def _block_keys(name_key: str | None, birth: date | None, body: str | None) -> list[Any]:
    """The blocks a person is in (the same ones the golden-table query in ``_blocks`` uses)."""
    keys: list[Any] = []
    if birth is not None:
        keys.append(("birth", birth, name_key))   # (birth, name) and (birth, no name) for nameless mentions
        keys.append(("birth", birth, None))
    if name_key is not None:
        keys.append(("name", name_key))
    if body:
        keys.append(("ric", body))
    return keys


def _dated(mention: matching.Mention) -> matching.Mention:
    """A mention without a birth date dated by its valid RIC."""
    if mention.birth_date is None and mention.ric_valid:
        return replace(mention, birth_date=matching.birth_from_ric(mention.ric))
    return mention


def _combine(known: matching.Mention, other: matching.Mention | None) -> matching.Mention:
    """What two descriptions of one person say together: the known one first, gaps filled from the other."""
    if other is None:
        return known
    valid = known.ric if known.ric_valid else (other.ric if other.ric_valid else None)
    return matching.Mention(
        ric=valid or known.ric or other.ric, ric_valid=valid is not None, name=known.name or other.name,
        gender=known.gender or other.gender, birth_date=known.birth_date or other.birth_date,
        households=known.households | other.households, address=known.address or other.address,
        mother_ric=known.mother_ric or other.mother_ric, father_ric=known.father_ric or other.father_ric)


def derive_from_ric(data: dict[str, Any], fields: dict[str, Any]) -> None:
    """A golden person without a birth date or gender takes them from its RIC (GB 11643: digits 7-14, 17)."""
    ric = data.get("ric")
    if not ric:
        return
    born = matching.birth_from_ric(ric)
    if data.get("birth_date") is None and born:
        data["birth_date"] = born.isoformat()
        fields["birth_date"] = {"derived_from": "ric"}
    if data.get("gender") is None and ric[16].isdigit():
        data["gender"] = "1" if int(ric[16]) % 2 else "2"
        fields["gender"] = {"derived_from": "ric"}


class Merger:
    """Resolve + merge batches into the resource library over one connection (caller commits)."""

    def __init__(self, conn: psycopg.Connection[Any], changes_topic: str = "gldm.{entity}.changes") -> None:
        self.conn = conn
        self.changes_topic = changes_topic
        self._merged, self._analyze_at = 0, 5_000   # ANALYZE after 5k, 10k, 20k ... candidates (autovacuum lags)
        # queued persons as matching sees them: id -> (mention, block keys, RIC -> household)
        self._unsettled: dict[str, tuple[matching.Mention, list[Any], dict[str, str]]] = {}
        self._start_batch()
        self._start_settle(Settlement())

    # ------------------------------------------------------------------ public

    def merge(self, items: list[Incoming]) -> BatchReport:
        """Resolve and merge a batch in the caller's transaction (T+1 loads, review decisions, tests)."""
        report, settlement = self.resolve(items)
        self.settle(settlement, report)
        return report

    def resolve(self, items: list[Incoming]) -> tuple[BatchReport, Settlement]:
        """The resolve stage: stale check, identity, contributions, late matches, review queue. Writes only
        ``contribution`` and ``review_queue``; the golden records it touched are left to ``settle``."""
        report, settlement = BatchReport(read=len(items)), Settlement()
        if not items:
            return report, settlement
        self._start_batch()
        unsettled = self._remember_unsettled()
        state = self._contributions({i.source for i in items})
        by_ric = {**unsettled, **self._persons_by_ric(
            {i.record.get("ric") for i in items
             if i.entity == "person" and i.record.get("ric") and not i.flagged("ric")})}
        self._batch_households.update({i.record["ric"]: i.record["household_no"] for i in items
                                       if i.entity == "person" and i.record.get("ric") and i.record.get("household_no")})
        self._prefetch_people(items, state, by_ric)
        writes: dict[SourceRef, tuple[Incoming, _Linked]] = {}
        for item in items:
            ref, pos = item.source, item.position
            previous = state.get(ref)
            if previous is not None and is_stale(pos, previous[0], item.provenance.get("committed_at"), previous[3]):
                report.unchanged += 1
                continue
            if item.record.get("retracted"):
                linked = _Linked(previous[1] if previous else None, previous[2] if previous else "retracted")
                report.retracted += 1
            else:
                linked = self._resolve(item, previous, by_ric)
                if linked.method == "review":
                    report.to_review += 1
            report.merged += 1
            report.links[linked.method] += 1
            for cid in (previous[1] if previous else None, linked.canonical_id):
                if cid:
                    settlement.touch(item.entity, cid, ref, item.provenance)
                    if item.entity == "person":
                        settlement.person_rows[cid].add(ref.row)
            state[ref] = (pos, linked.canonical_id, linked.method, item.provenance.get("committed_at"))
            writes[ref] = (item, linked)
        self._write_contributions(writes.values())
        if rescored := self._rescore_reviews(settlement):
            report.links["review_rescored"] += rescored
        for orphan, person in self._late_links().items():
            settlement.touch_without_change("person", orphan, settlement.last_cause(("person", person)))
            settlement.absorbed[orphan] = person
            if ("person", person) not in settlement.causes:
                settlement.touch_without_change("person", person, {})
            report.links["late_match"] += 1
        for entity, cid in (*settlement.causes, *settlement.fallback):
            if entity == "person":
                self._unsettled.pop(cid, None)   # described again from its contributions if it stays queued
        self._grown(len(items))
        return report, settlement

    def queue(self, settlement: Settlement) -> int:
        """Queue the records ``settlement`` touched for the merge stage (``settle_queue``); returns how many."""
        rows = settlement.queue_rows()
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
        self.settle(settlement, report)
        return report, settlement

    def settle(self, settlement: Settlement, report: BatchReport) -> None:
        """The merge stage's work: what late matches moved is pointed at its person, then every golden
        record touched is recomputed from its contributions, references linked and changes queued."""
        self._start_settle(settlement)
        for orphan, person in settlement.absorbed.items():
            for entity, refs in PERSON_REFS.items():   # what pointed at the orphan now points at the person
                table, id_column, _ = TABLES[entity]
                for person_column, _, _ in refs:
                    self._note_links(entity, person_column, self.conn.execute(
                        f"UPDATE {table} SET {person_column} = %(person)s WHERE {person_column} = %(orphan)s"
                        f" RETURNING {id_column}, %(orphan)s, %(person)s", {"person": person, "orphan": orphan}))
        affected = settlement.records()
        for entity in TABLES:  # persons first, so the references of the others can link to them
            if affected.get(entity):
                self._recompute(entity, affected[entity], report)
        self._link_people(affected, sorted({row for rows in settlement.person_rows.values() for row in rows}))
        self._version_links(report)
        self._queue_changes()

    def merge_bulk(self, items: list[Incoming]) -> BatchReport:
        """``merge`` for a large batch (T+1 extracts): the library it leaves is the same, but a candidate that
        opens a new golden record of a coded entity (its id its own code, the only candidate of its source
        row and of its record in the batch, no earlier contribution, record or history) is merged set-based
        in SQL, and a replayed one is recognised set-based as unchanged; every other candidate (a person, a
        retraction, a row merged before, two rows of one record ...) goes through ``merge``."""
        return self.merge_staged(self.stage_bulk(items))

    def stage_bulk(self, items: list[Incoming]) -> BulkChunk:
        """The pure-Python half of ``merge_bulk`` (no database): which candidates may merge set-based, as the
        rows of the staging table. A loader runs it while the previous chunk is merged."""
        rows = Counter(i.source for i in items)
        coded: dict[str, dict[SourceRef, tuple[Incoming, str]]] = defaultdict(dict)
        for item in items:
            if item.entity in CODED and rows[item.source] == 1 and not item.record.get("retracted"):
                cid = self._resolve(item, None, {}).canonical_id
                assert cid is not None   # coded entities always resolve
                coded[item.entity][item.source] = (item, cid)
        staged: dict[str, dict[SourceRef, tuple[Any, ...]]] = {}
        for entity, by_ref in coded.items():
            once = Counter(cid for _, cid in by_ref.values())
            staged[entity] = {ref: _staging_row(entity, ref, item, cid)
                              for ref, (item, cid) in by_ref.items() if once[cid] == 1}
        return BulkChunk(items, staged)

    def merge_staged(self, chunk: BulkChunk) -> BatchReport:
        """The database half of ``merge_bulk``."""
        staged = {ref for rows in chunk.staged.values() for ref in rows}
        # the others first: a new certificate links to the newborn its source row names, merged among them
        report = self.merge([i for i in chunk.items if i.source not in staged])
        bulk = BatchReport()
        handed_back: set[SourceRef] = set()
        for entity, rows in chunk.staged.items():
            if rows:
                handed_back |= self._bulk_new(entity, rows, bulk)
        bulk.read = len(staged) - len(handed_back)
        self._grown(bulk.read)
        report.add(bulk)
        if handed_back:   # merged before: the ordinary merge decides (a replay, a correction)
            report.add(self.merge([i for i in chunk.items if i.source in handed_back]))
        return report

    def _bulk_new(self, entity: str, rows: dict[SourceRef, tuple[Any, ...]], report: BatchReport) -> set[SourceRef]:
        """Set-based ``merge`` of new records of one coded entity; returns the source rows it leaves to ``merge``."""
        table, id_column, _ = TABLES[entity]
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS _bulk ({', '.join(STAGING_COLUMNS)}) ON COMMIT DELETE ROWS")
        with self.conn.cursor() as cur:
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
            cur.execute(_bulk_insert_sql(entity))
            ids = {cid for (cid,) in cur.fetchall()}
            created = len(ids)
            if ids:
                self._link_people({entity: ids}, [])
                self._relinked.clear()   # new records: the set-based outbox statement publishes them with their links
                cur.execute(_bulk_outbox_sql(entity), {"topic": self.changes_topic.format(entity=entity)})
            cur.execute("TRUNCATE _bulk")
        if ids:
            report.merged += created
            report.set_based += created
            report.new_golden += created
            report.golden_updates += created
            report.links["code"] += created
            report.outbox[entity] += created
        return handed_back

    def _grown(self, merged: int) -> None:
        self._merged += merged
        if self._merged >= self._analyze_at:   # a library filling up fast outgrows its planner statistics
            self._analyze_grown_tables()
            self._analyze_at = self._merged * 2

    def _analyze_grown_tables(self) -> None:
        """ANALYZE the tables that changed by a quarter since their statistics were taken (autovacuum lags
        behind a library filling from empty); a large library's tables are left alone: analyzing them
        inside a merge transaction held a batch back for seconds."""
        tables = [*(t for t, _, _ in TABLES.values()), "contribution"]
        for (table,) in self.conn.execute(
                "SELECT relname FROM pg_stat_user_tables WHERE relname = ANY(%s)"
                " AND n_mod_since_analyze > greatest(1000, n_live_tup / 4)", (tables,)).fetchall():
            self.conn.execute(f"ANALYZE {table}")

    @staticmethod
    def new_person_id(ref: SourceRef) -> str:
        return f"P~{_short_hash(str(ref))}"

    def relink(self, ref: SourceRef, entity: str, canonical_id: str, method: str) -> BatchReport:
        """Move one source row's contribution to ``canonical_id`` (a review decision) and re-merge both sides."""
        row = self.conn.execute(
            "SELECT canonical_id, record FROM contribution WHERE department = %s AND source_table = %s"
            " AND primary_key = %s AND role = %s", (ref.department, ref.table, ref.primary_key, ref.role)).fetchone()
        if row is None:
            raise ValueError(f"{ref}: no contribution")
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
        self.settle(settlement, report)
        return report

    def _start_batch(self) -> None:
        # reads of the golden persons, valid until the batch's recompute changes them
        self._golden_blocks: dict[BlockParams, dict[str, matching.Mention]] = {}
        self._household_of: dict[str, str | None] = {}
        self._batch_households: dict[str, str] = {}   # RIC -> household number, said by the batch or unsettled
        # persons linked or created in the batch, or queued and not merged yet, with what the batch (or their
        # contributions) say about them (not in the golden table), and their block keys
        self._batch_persons: dict[str, matching.Mention] = {}
        self._batch_blocks: dict[Any, set[str]] = defaultdict(set)
        self._created_by_ric: list[str] = []    # persons created in this batch from a valid RIC
        # (person, ONE_PER_PERSON kind) -> the source row's key linked in this batch
        self._batch_rows: dict[tuple[str, tuple[str, str, str]], str] = {}

    def _start_settle(self, settlement: Settlement) -> None:
        self._settlement = settlement
        self._outbox_rows: list[tuple[str, str, dict[str, Any]]] = []
        # references the batch linked to a person: (entity, id) -> ({person column: its value before}, the person)
        self._relinked: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}

    # ------------------------------------------------------------------ reads

    def _contributions(self, refs: set[SourceRef]) -> dict[SourceRef, _State]:
        rows = self.conn.execute(
            "SELECT c.department, c.source_table, c.primary_key, c.role, c.position, c.canonical_id, c.method,"
            " (extract(epoch FROM c.committed_at) * 1000)::bigint"
            " FROM contribution c JOIN unnest(%s::text[], %s::text[], %s::text[], %s::text[]) AS k(d, t, p, r)"
            " ON c.department = k.d AND c.source_table = k.t AND c.primary_key = k.p AND c.role = k.r",
            tuple(text_array(column) for column in zip(*refs)),
        ).fetchall()
        return {SourceRef(d, t, p, r): (tuple(int(x) for x in pos), cid, method, ms)
                for d, t, p, r, pos, cid, method, ms in rows}

    def _remember_unsettled(self) -> dict[str, str]:
        """Persons resolved earlier whose merge is still queued (``settle_queue``) are not in the golden table
        yet: matching sees them through their contributions, as it sees the batch's own. Returns their valid
        RICs (RIC -> person id).

        What their contributions say is kept between batches (``_unsettled``) while they stay queued, and
        read again only for persons this merger has not described yet or has touched since (``resolve``
        drops those): a batch then costs one look at the queue's person ids, not a read of every queued
        person, which matters when the merge stage falls behind or stops."""
        queued = {cid for (cid,) in self.conn.execute(
            "SELECT DISTINCT canonical_id FROM settle_queue WHERE entity = 'person'")}
        for cid in set(self._unsettled) - queued:
            del self._unsettled[cid]
        if missing := queued - set(self._unsettled):
            described: dict[str, tuple[matching.Mention, dict[str, str]]] = {}
            for cid, record in self.conn.execute(
                    "SELECT canonical_id, record FROM contribution WHERE entity = 'person' AND NOT retracted"
                    " AND canonical_id = ANY(%s::text[])", (text_array(missing),)):
                mention = _mention(record, flagged(record, "ric"), _own_household(record))
                known, households = described.get(cid, (None, {}))
                if mention.ric_valid and mention.ric and record.get("household_no"):
                    households = {**households, mention.ric: record["household_no"]}
                described[cid] = (_combine(known, mention) if known else mention, households)
            for cid, (mention, households) in described.items():
                mention = _dated(mention)
                keys = _block_keys(matching.name_key(mention.name), mention.birth_date, matching.ric_body(mention.ric))
                self._unsettled[cid] = (mention, keys, households)
        rics: dict[str, str] = {}
        for cid, (mention, keys, households) in self._unsettled.items():
            self._batch_persons[cid] = mention
            for k in keys:
                self._batch_blocks[k].add(cid)
            self._batch_households.update(households)
            if mention.ric_valid and mention.ric:
                rics[mention.ric] = cid
        return rics

    def _persons_by_ric(self, rics: set[Any]) -> dict[str, str]:
        wanted = [r for r in rics if r]
        if not wanted:
            return {}
        return dict(self.conn.execute("SELECT ric, person_id FROM person WHERE ric = ANY(%s)", (wanted,)).fetchall())

    # ------------------------------------------------------------------ resolve

    def _resolve(self, item: Incoming, previous: _State | None,
                 by_ric: dict[str, str]) -> _Linked:
        r, src = item.record, item.source
        if item.entity == "person":
            return self._resolve_person(item, previous, by_ric)
        if item.entity == "legal_entity":
            return self._resolve_legal_entity(item)
        if item.entity == "house":
            return _Linked(r["house_code"], "code")
        if item.entity == "certificate":
            number = r.get("certificate_no") or f"{src.department}/{src.table}/{src.primary_key}"
            return _Linked(f"{r['certificate_type']}:{number}", "code")
        if item.entity == "relationship":
            subject = r.get("subject_ric") if r.get("subject_ric") and not item.flagged("subject_ric") else f"{src}:s"
            obj = r.get("object_id") if r.get("object_id") and not item.flagged("object_id") else f"{src}:o"
            return _Linked(f"{r['type']}:{subject}:{obj}", "code")
        if item.entity == "social_insurance":
            return _Linked(f"{r['insured_no']}|{r['month']}|{r['insurance_type']}", "code")
        raise ValueError(f"unknown entity {item.entity!r}")

    def _resolve_legal_entity(self, item: Incoming) -> _Linked:
        """By its registration number (deterministic whatever order the records come in), else by USCC."""
        registration = item.record.get("registration_no")
        if registration:
            return _Linked(f"E~{registration}", "registration_no")
        uscc = item.record.get("uscc") if not item.flagged("uscc") else None
        row = self.conn.execute(   # the golden one, else one queued and not merged yet
            "SELECT entity_id FROM legal_entity WHERE uscc = %(uscc)s UNION ALL"
            " SELECT c.canonical_id FROM settle_queue q JOIN contribution c USING (entity, canonical_id)"
            " WHERE q.entity = 'legal_entity' AND c.record->>'uscc' = %(uscc)s AND NOT c.retracted LIMIT 1",
            {"uscc": uscc}).fetchone() if uscc else None
        if row:
            return _Linked(row[0], "uscc")
        return _Linked(f"E~{uscc or _short_hash(str(item.source))}", "new")

    def _resolve_person(self, item: Incoming, previous: _State | None,
                        by_ric: dict[str, str]) -> _Linked:
        mention = _mention(item.record, item.flagged("ric"), _own_household(item.record))
        linked = self._resolve_person_id(item, mention, previous, by_ric)
        if linked.canonical_id:
            self._remember(linked.canonical_id, mention)
            src = item.source
            if (src.department, src.table, src.role) in ONE_PER_PERSON:
                self._batch_rows.setdefault((linked.canonical_id, (src.department, src.table, src.role)),
                                            src.primary_key)
        return linked

    def _resolve_person_id(self, item: Incoming, mention: matching.Mention, previous: _State | None,
                           by_ric: dict[str, str]) -> _Linked:
        r = item.record
        if mention.ric_valid and mention.ric in by_ric:
            return _Linked(by_ric[mention.ric], "ric")
        if previous is not None and _sticky(previous):
            return _Linked(previous[1], previous[2])   # sticky: keep an earlier match or review decision
        mention = self._with_parents_households(mention, r)
        decision = matching.decide(mention, self._blocks(mention))
        candidates = _candidates(decision)
        evidence = {"decision": decision.outcome, "evidence": decision.evidence, "candidates": candidates}
        if decision.outcome == "link" and mention.ric_valid and self._holds_other_ric(decision.canonical_id, mention.ric):
            decision = matching.Decision("new", candidates=decision.candidates)   # one person, one valid RIC
        if decision.outcome == "link" and self._holds_other_row(decision.canonical_id, item.source):
            decision = matching.Decision("new", candidates=decision.candidates)   # one person, one birth
        if decision.outcome == "link":
            assert decision.canonical_id is not None
            if mention.ric_valid:
                by_ric[mention.ric or ""] = decision.canonical_id
            return _Linked(decision.canonical_id, "match", decision.score, evidence)
        if decision.outcome == "review" and not mention.ric_valid:
            self._queue_review(item, candidates)
            return _Linked(None, "review", decision.score, evidence)
        new_id = mention.ric if mention.ric_valid and mention.ric else self.new_person_id(item.source)
        if mention.ric_valid:
            by_ric[mention.ric or ""] = new_id
            self._created_by_ric.append(new_id)
        return _Linked(new_id, "ric" if mention.ric_valid else "new", decision.score, evidence)

    def _late_links(self) -> dict[str, str]:
        """Persons made earlier from mentions without a usable ID (P~...) that this batch's new RIC
        persons explain: arrival order must not decide identity. Moves their contributions over;
        returns orphan id -> person id."""
        moved: dict[str, str] = {}
        for pid in self._created_by_ric:
            person = self._batch_persons[pid]
            key, body = matching.name_key(person.name), matching.ric_body(person.ric)
            orphans = {cid for (cid,) in self.conn.execute(
                "SELECT person_id FROM person WHERE person_id LIKE 'P~%%' AND name_key = %(key)s"
                " AND (birth_date = %(birth)s OR birth_date IS NULL)"
                " UNION SELECT canonical_id FROM contribution WHERE entity = 'person' AND canonical_id LIKE 'P~%%'"
                " AND left(record->>'ric', 17) = %(body)s",
                {"key": key, "birth": person.birth_date, "body": body})}
            orphans |= {c for c in self._batch_blocks.get(("name", key), set()) if c.startswith("P~") and c != pid}
            orphans -= set(moved)
            if not orphans:
                continue
            described: dict[str, matching.Mention] = {}
            for cid, record in self.conn.execute(
                    "SELECT canonical_id, record FROM contribution WHERE entity = 'person'"
                    " AND canonical_id = ANY(%s) AND NOT retracted", (list(orphans),)):
                m = _mention(record, flagged(record, "ric"))
                described[cid] = _combine(described[cid], m) if cid in described else m
            rivals = [(c, m) for c, m in self._blocks(person) if m.ric_valid and c != pid]
            for cid, orphan in described.items():
                decision = matching.decide(orphan, [(pid, person), *rivals])
                if decision.outcome == "link" and decision.canonical_id == pid and not orphan.ric_valid:
                    self.conn.execute(
                        "UPDATE contribution SET canonical_id = %s, method = 'late_match', score = %s, evidence = %s"
                        " WHERE entity = 'person' AND canonical_id = %s",
                        (pid, decision.score, Jsonb({"decision": "late_match", "evidence": decision.evidence,
                                                     "was": cid}), cid))
                    moved[cid] = pid
        return moved

    def _rescore_reviews(self, settlement: Settlement) -> int:
        """Open review items that a person this batch made from a valid RIC may explain, decided again by
        the rules a new mention meets (new evidence, not arrival order, decides identity): one that now
        links to that person is linked (method ``review_rescored``) and its item closed as ``resolved``.
        Returns how many."""
        births = {b for pid in self._created_by_ric if (b := self._batch_persons[pid].birth_date)}
        if not births:
            return 0
        rescored = 0
        for review_id, d, t, pk, role, record in self.conn.execute(
                "SELECT r.review_id, c.department, c.source_table, c.primary_key, c.role, c.record"
                " FROM review_queue r JOIN contribution c USING (department, source_table, primary_key, role)"
                " WHERE r.status = 'open' AND r.entity = 'person' AND c.canonical_id IS NULL AND NOT c.retracted"
                " AND c.record->>'birth_date' = ANY(%s::text[])", (text_array(b.isoformat() for b in births),)
        ).fetchall():
            mention = self._with_parents_households(_mention(record, flagged(record, "ric"), _own_household(record)),
                                                    record)
            decision = matching.decide(mention, self._blocks(mention))
            if decision.outcome != "link" or decision.canonical_id not in self._created_by_ric:
                continue
            self.conn.execute(
                "UPDATE contribution SET canonical_id = %s, method = 'review_rescored', score = %s, evidence = %s,"
                " merged_at = clock_timestamp() WHERE department = %s AND source_table = %s AND primary_key = %s"
                " AND role = %s", (decision.canonical_id, decision.score, Jsonb(
                    {"decision": "review_rescored", "evidence": decision.evidence, "review_id": review_id,
                     "candidates": _candidates(decision)}), d, t, pk, role))
            self.conn.execute("UPDATE review_queue SET status = 'resolved', decided_id = %s, decided_at = now()"
                              " WHERE review_id = %s", (decision.canonical_id, review_id))
            settlement.person_rows[decision.canonical_id].add((d, t, pk))
            settlement.touch_without_change("person", decision.canonical_id, record["provenance"])
            rescored += 1
        return rescored

    def _holds_other_row(self, canonical_id: str | None, source: SourceRef) -> bool:
        """Whether the person already holds another source row of a kind a person has one of (``ONE_PER_PERSON``)."""
        kind = (source.department, source.table, source.role)
        if kind not in ONE_PER_PERSON or canonical_id is None:
            return False
        held = self._batch_rows.get((canonical_id, kind))
        if held is not None:
            return held != source.primary_key
        row = self.conn.execute(
            "SELECT 1 FROM contribution WHERE entity = 'person' AND canonical_id = %s AND department = %s"
            " AND source_table = %s AND role = %s AND primary_key <> %s AND NOT retracted LIMIT 1",
            (canonical_id, *kind, source.primary_key)).fetchone()
        return row is not None

    def _holds_other_ric(self, canonical_id: str | None, ric: str | None) -> bool:
        """Whether the person already has a source row with another valid RIC (a different person, then:
        two babies of one name born on one day look alike until the police register them)."""
        known = self._batch_persons.get(canonical_id or "")
        if known is not None and known.ric_valid and known.ric != ric:
            return True
        row = self.conn.execute(
            "SELECT 1 FROM contribution WHERE entity = 'person' AND canonical_id = %s AND NOT retracted"
            " AND record->>'ric' <> %s AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(record->'findings') f"
            "  WHERE f LIKE 'ric:%%' AND f <> 'ric:legacy_15_upgraded') LIMIT 1",   # the rule of flagged()
            (canonical_id, ric)).fetchone()
        return row is not None

    def _with_parents_households(self, mention: matching.Mention, record: dict[str, Any]) -> matching.Mention:
        """The mention with its parents' households too (a newborn's is its mother's)."""
        return replace(mention, households=mention.households
                       | self._households(record.get("mother_ric"), record.get("father_ric")))

    def _households(self, *rics: str | None) -> set[str]:
        wanted = [r for r in rics if r]
        if missing := {r for r in wanted if r not in self._household_of}:
            self._read_households(missing)
        return ({self._batch_households[r] for r in wanted if r in self._batch_households}
                | {hh for r in wanted if (hh := self._household_of[r])})

    def _blocks(self, mention: matching.Mention) -> list[tuple[str, matching.Mention]]:
        """Golden persons sharing a block with the mention, plus persons created earlier in this batch."""
        params = _block_params(mention)
        if params not in self._golden_blocks:
            self._read_blocks([params])
        found = dict(self._golden_blocks[params])
        birth, key, body, _ = params
        in_batch = set().union(*(self._batch_blocks.get(k, set()) for k in _block_keys(key, birth, body)))
        for pid in in_batch | (set(found) & set(self._batch_persons)):
            found[pid] = _combine(self._batch_persons[pid], found.get(pid))
        return list(found.items())

    def _read_blocks(self, wanted: list[BlockParams]) -> None:
        """The golden persons in the blocks of each of ``wanted``, in one statement: per mention, one index
        look-up per block (an OR of them would not use the indexes well), at most 50 persons each."""
        rows = self.conn.execute(
            "SELECT m.i, p.person_id, p.ric, p.name, p.gender, p.birth_date, p.address->>'full',"
            " array_remove(ARRAY[p.household_no, mo.household_no, fa.household_no], NULL), p.mother_ric, p.father_ric"
            " FROM unnest(%s::int[], %s::date[], %s::text[], %s::text[], %s::text[]) AS m(i, birth, key, body, area)"
            " CROSS JOIN LATERAL ("
            "  (SELECT person_id FROM person WHERE m.birth IS NOT NULL AND m.key IS NOT NULL"
            "    AND birth_date = m.birth AND name_key = m.key LIMIT 50)"
            "  UNION (SELECT person_id FROM person WHERE m.birth IS NOT NULL AND m.key IS NULL"
            "    AND birth_date = m.birth LIMIT 50)"
            "  UNION (SELECT person_id FROM person WHERE m.key IS NOT NULL AND m.birth IS NULL AND name_key = m.key LIMIT 50)"
            # a typo in a flagged RIC's date: its area and the name still block
            "  UNION (SELECT person_id FROM person WHERE m.key IS NOT NULL AND m.area IS NOT NULL"
            "    AND name_key = m.key AND left(ric, 6) = m.area LIMIT 50)"
            "  UNION (SELECT person_id FROM person WHERE m.body IS NOT NULL AND left(ric, 17) = m.body LIMIT 50)) c"
            " JOIN person p USING (person_id)"
            " LEFT JOIN person mo ON mo.ric = p.mother_ric LEFT JOIN person fa ON fa.ric = p.father_ric",
            (list(range(len(wanted))), *(list(column) for column in zip(*wanted)))).fetchall()
        for params in wanted:
            self._golden_blocks[params] = {}
        for i, pid, ric, name, gender, birth, addr, households, mother, father in rows:
            self._golden_blocks[wanted[i]][pid] = matching.Mention(ric, bool(ric), name, gender, birth,
                                                                   frozenset(households), addr, mother, father)

    def _prefetch_people(self, items: list[Incoming], state: dict[SourceRef, _State], by_ric: dict[str, str]) -> None:
        """What resolving the batch's persons reads from the library, in two statements rather than two per
        person: the blocks of every mention that may need matching, and the households of the parents
        named. The golden persons do not change before the batch's recompute, so the reads serve it all."""
        wanted: dict[BlockParams, None] = {}
        parents: set[str] = set()
        for item in items:
            if item.entity != "person" or item.record.get("retracted"):
                continue
            mention, previous = _mention(item.record, item.flagged("ric")), state.get(item.source)
            if (mention.ric_valid and mention.ric in by_ric) or (previous is not None and _sticky(previous)):
                continue
            wanted[_block_params(mention)] = None
            parents.update(r for r in (item.record.get("mother_ric"), item.record.get("father_ric")) if r)
        if wanted:
            self._read_blocks(list(wanted))
        if parents:
            self._read_households(parents)

    def _read_households(self, rics: set[str]) -> None:
        self._household_of.update(dict.fromkeys(rics))
        self._household_of.update(self.conn.execute(
            "SELECT ric, household_no FROM person WHERE ric = ANY(%s::text[]) AND household_no IS NOT NULL",
            (text_array(rics),)))

    def _remember(self, cid: str, mention: matching.Mention) -> None:
        mention = _dated(mention)
        combined = _combine(self._batch_persons[cid], mention) if cid in self._batch_persons else mention
        self._batch_persons[cid] = combined
        for k in _block_keys(matching.name_key(combined.name), combined.birth_date, matching.ric_body(combined.ric)):
            self._batch_blocks[k].add(cid)

    def _queue_review(self, item: Incoming, candidates: list[dict[str, Any]]) -> None:
        src = item.source
        self.conn.execute(
            "INSERT INTO review_queue (department, source_table, primary_key, role, entity, candidates)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (department, source_table, primary_key, role)"
            " DO UPDATE SET candidates = EXCLUDED.candidates, status = 'open', decided_id = NULL, decided_at = NULL",
            (src.department, src.table, src.primary_key, src.role, item.entity, Jsonb(candidates)))

    # ------------------------------------------------------------------ writes

    def _write_contributions(self, writes: Iterable[tuple[Incoming, _Linked]]) -> None:
        now = datetime.now(timezone.utc)
        rows = []
        for item, linked in writes:
            src, prov = item.source, item.provenance
            rows.append((src.department, src.table, src.primary_key, src.role, item.entity, linked.canonical_id,
                         numeric_array(item.position), bool(item.record.get("retracted")), Jsonb(item.record),
                         _ms_to_dt(prov.get("committed_at")), now, linked.method, linked.score,
                         Jsonb(linked.evidence) if linked.evidence else None))
        bulk_upsert(self.conn, "contribution", CONTRIBUTION_COLUMNS, rows, CONTRIBUTION_KEY)

    def _recompute(self, entity: str, ids: set[str], report: BatchReport) -> None:
        table, id_column, columns = TABLES[entity]
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
        current = {row[0]: (row[1], row[2]) for row in self.conn.execute(
            f"SELECT {id_column}, version, to_jsonb(t) FROM {table} t WHERE {id_column} = ANY(%s::text[])",
            (text_array(ids),))}
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
                    history.append((entity, cid, version + 1, None, _ms_to_dt(cause.get("committed_at")), Jsonb(cause)))
                    self._outbox(entity, cid, version + 1, before, None, cause, report)
                continue
            survived = survive(entity, contributions, list(columns))
            data = survived.data
            derived: dict[str, Any] = {}
            if entity == "person":
                derive_from_ric(data, derived)
            changed = {c for c in columns if before is None or not _same(before.get(c), data.get(c))}
            if not changed:
                continue
            cause = self._cause(entity, cid, survived, changed)
            upserts.append((cid, version + 1, data, survived.committed_ms))
            history.append((entity, cid, version + 1, Jsonb(data), _ms_to_dt(survived.committed_ms), Jsonb(cause)))
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
            self._outbox(entity, cid, version + 1, before, {id_column: cid, **data}, cause, report)
        now = datetime.now(timezone.utc)
        if upserts:
            extra = ("name_key",) if entity == "person" else ()
            names = (id_column, *columns, *extra, "version", "source_committed_at", "updated_at")
            bulk_upsert(self.conn, table, names, [
                (cid, *(_column(c, data.get(c)) for c in columns),
                 *([matching.name_key(data.get("name"))] if extra else []), version, _ms_to_dt(committed), now)
                for cid, version, data, committed in upserts], (id_column,))
        if deleted:
            self.conn.execute(f"DELETE FROM {table} WHERE {id_column} = ANY(%s)", (deleted,))
            self.conn.execute("DELETE FROM field_provenance WHERE entity = %s AND canonical_id = ANY(%s)",
                              (entity, deleted))
        bulk_upsert(self.conn, "golden_history", HISTORY_COLUMNS, [(*h, now) for h in history])
        bulk_upsert(self.conn, "field_provenance", ("entity", "canonical_id", "fields"), provenance_rows,
                    ("entity", "canonical_id"))

    def _cause(self, entity: str, cid: str, survived: Survived, changed: set[str]) -> dict[str, Any]:
        """The source change a new version is said to come from: of the batch's changes to the record, the
        latest whose source row supplies a field that changed — a move merged in one batch with a marriage
        registration of the same person is the police's move, not the registration (which would hide the
        RESIDENCE_CHANGED it raises); else the batch's latest change to it."""
        suppliers = {(s.department, s.table, s.primary_key, s.role) for c, s in survived.sources.items() if c in changed}
        seen = self._settlement.causes.get((entity, cid), {})
        return next((seen[ref] for ref in reversed(seen) if ref in suppliers), self._settlement.last_cause((entity, cid)))

    def _outbox(self, entity: str, cid: str, version: int, before: dict[str, Any] | None,
                after: dict[str, Any] | None, cause: dict[str, Any], report: BatchReport) -> None:
        """A GoldenChange (schemas/avro/gov.gldm.GoldenChange.avsc) for the outbox. ``before`` is the golden row
        without its bookkeeping; ``after`` gains the person ids the batch links (``_queue_changes``)."""
        if before is not None:
            before = {c: v for c, v in before.items() if c not in BOOKKEEPING}
        change = {"entity": entity, "canonical_id": cid, "version": version,
                  "op": "DELETE" if after is None else ("CREATE" if before is None else "UPDATE"),
                  "before": before, "after": after,
                  "cause": cause or None, "source_committed_at": cause.get("committed_at") if cause else None,
                  "merged_at": int(time.time() * 1000)}
        report.outbox[entity] += 1
        self._outbox_rows.append((self.changes_topic.format(entity=entity), cid, change))

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

    # ------------------------------------------------------------------ references to people

    def _link_people(self, affected: dict[str, set[str]], person_rows: list[tuple[str, str, str]]) -> None:
        """Fill person ids in certificates, relationships and insurance facts that refer to people —
        those merged now, and earlier ones that were waiting for a person merged now — noting each link
        made (``_version_links``). Each direction is its own statement so that every one runs on an
        index, whatever the library's size; the previous value is read through a self-join (``o``),
        which sees the row as it was before the update."""
        persons = list(affected.get("person", set()))
        rows = ([r[0] for r in person_rows], [r[1] for r in person_rows], [r[2] for r in person_rows])
        insured = [pk for _, table, pk in person_rows if table == "sb_cbry"]

        def run(entity: str, column: str, sql: str, params: tuple[Any, ...]) -> None:
            self._note_links(entity, column, self.conn.execute(sql, params))

        for entity, refs in PERSON_REFS.items():
            table, id_column, _ = TABLES[entity]
            ids = list(affected.get(entity, set()))
            for person_column, ric_column, name_column in refs:
                kind = "AND g.object_kind = 'PERSON'" if person_column == "object_person_id" else ""
                by_ric = (f"UPDATE {table} g SET {person_column} = p.person_id FROM person p, {table} o"
                          f" WHERE o.{id_column} = g.{id_column} AND p.ric = g.{ric_column} {kind}"
                          f" AND g.{person_column} IS DISTINCT FROM p.person_id")
                returning = f" RETURNING g.{id_column}, o.{person_column}, p.person_id"
                if ids:
                    run(entity, person_column, by_ric + f" AND g.{id_column} = ANY(%s::text[])" + returning,
                        (text_array(ids),))
                if persons:
                    run(entity, person_column, by_ric + " AND p.person_id = ANY(%s::text[])" + returning,
                        (text_array(persons),))
                if not name_column:
                    continue
                # no usable RIC: the person of the same source row with the same name (a newborn, a spouse)
                same_row = (f"UPDATE {table} g SET {person_column} = pc.canonical_id"
                            f" FROM contribution gc JOIN contribution pc ON pc.department = gc.department"
                            f"  AND pc.source_table = gc.source_table AND pc.primary_key = gc.primary_key"
                            f"  AND pc.entity = 'person' AND pc.canonical_id IS NOT NULL"
                            f" WHERE gc.entity = %s AND gc.canonical_id = g.{id_column} AND NOT gc.retracted"
                            f"  AND g.{person_column} IS NULL {kind} AND pc.record->>'name' = g.{name_column}")
                returning = f" RETURNING g.{id_column}, NULL, pc.canonical_id"
                if ids:
                    run(entity, person_column, same_row + f" AND g.{id_column} = ANY(%s::text[])" + returning,
                        (entity, text_array(ids)))
                if person_rows:
                    run(entity, person_column, same_row + " AND (pc.department, pc.source_table, pc.primary_key)"
                        " IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))" + returning,
                        (entity, *(text_array(column) for column in rows)))
        # insured persons: an insurance fact names its person through the insured number
        by_insured = ("UPDATE social_insurance s SET person_id = c.canonical_id FROM contribution c, social_insurance o"
                      " WHERE o.fact_id = s.fact_id AND c.department = 'hrss' AND c.source_table = 'sb_cbry'"
                      " AND c.role = 'person' AND c.primary_key = s.insured_no AND c.canonical_id IS NOT NULL"
                      " AND s.person_id IS DISTINCT FROM c.canonical_id")
        returning = " RETURNING s.fact_id, o.person_id, c.canonical_id"
        facts = list(affected.get("social_insurance", set()))
        if facts:
            run("social_insurance", "person_id", by_insured + " AND s.fact_id = ANY(%s::text[])" + returning,
                (text_array(facts),))
        if insured:
            run("social_insurance", "person_id", by_insured + " AND c.primary_key = ANY(%s::text[])" + returning,
                (text_array(insured),))

    def _note_links(self, entity: str, person_column: str, linked: Iterable[tuple[Any, ...]]) -> None:
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
                self._outbox(entity, cid, version, {**row, **olds}, {id_column: cid, **data}, cause, report)
        bulk_upsert(self.conn, "golden_history", HISTORY_COLUMNS, history)


@dataclass
class BulkChunk:
    """A chunk of candidates as ``Merger.stage_bulk`` split it: per coded entity, the staging rows of those
    that may open a new record set-based; the other candidates merge one by one."""
    items: list[Incoming]
    staged: dict[str, dict[SourceRef, tuple[Any, ...]]]


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
            _ms_to_dt(item.provenance.get("committed_at")), orjson.dumps(data).decode(), *_described(entity, present))


@cache
def _bulk_insert_sql(entity: str) -> str:
    """One statement writing what ``_recompute`` writes for a new single-source record, for every row of
    ``_bulk``: contribution, golden row (version 1), history and field provenance."""
    table, id_column, columns = TABLES[entity]
    return f"""
        WITH contributed AS (
            INSERT INTO contribution ({", ".join(CONTRIBUTION_COLUMNS)})
            SELECT department, source_table, primary_key, role, entity, canonical_id, position, false, record,
                   committed_at, now(), 'code', NULL, NULL FROM _bulk),
        golden AS (
            INSERT INTO {table} ({id_column}, {", ".join(columns)}, version, source_committed_at, updated_at)
            SELECT b.canonical_id, {", ".join(f"r.{c}" for c in columns)}, 1, b.committed_at, now()
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
            'cause', b.record->'provenance', 'source_committed_at', b.record->'provenance'->'committed_at',
            'merged_at', (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
        FROM (SELECT s.*{probes} FROM _bulk s OFFSET 0) b"""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, date):
        return a == b.isoformat()
    return bool(a == b)


def _column(name: str, value: Any) -> Any:
    return Jsonb(value) if name in JSON_COLUMNS and value is not None else value


def _ms_to_dt(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if isinstance(ms, (int, float)) else None

