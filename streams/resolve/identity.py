"""What the resolve stage decides about, as plain values: a candidate (``Incoming``) and its source row
(``SourceRef``), the link it gets (``Linked``), the batch's report and the records it touched
(``Settlement``), and the pure helpers that turn a GLDM person record into a matching ``Mention`` and
its blocks. No I/O.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from functools import cached_property
from typing import Any, NamedTuple

from kintsmesh.errors import RejectedRecord
from streams.merge.survivorship import Position, position
from streams.resolve import matching

# A kind of source row: (department, table, role). The kinds a person holds at most one of (a birth
# certificate's newborn) are declared by the mappings (``one_per_person``, streams/normalize/mapping.py).
Kind = tuple[str, str, str]
NO_RIC_PREFIX = "P~"   # the ids of persons first seen without a usable RIC (``new_person_id``)


def flagged(record: dict[str, Any], name: str) -> bool:
    """Whether standardizing found something wrong with the field (an upgraded 15-digit RIC is fine)."""
    findings = record.get("findings")
    if not findings:
        return False
    prefix, fine = f"{name}:", f"{name}:legacy_15_upgraded"
    return any(f.startswith(prefix) and f != fine for f in findings)


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

    @property
    def kind(self) -> Kind:
        return (self.department, self.table, self.role)

    def __str__(self) -> str:
        return f"{self.department}/{self.table}/{self.primary_key}/{self.role}"

    @classmethod
    def of(cls, provenance: dict[str, Any], entity: str) -> SourceRef:
        """The source row a record's provenance names (its role defaults to the entity)."""
        p = provenance
        return cls(p["department"], p["table"], p["primary_key"], p.get("role") or entity)


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
        return SourceRef.of(self.provenance, self.entity)

    @property
    def position(self) -> Position:
        return position(self.provenance)

    def flagged(self, name: str) -> bool:
        return flagged(self.record, name)


@dataclass
class Linked:
    """Where a candidate's source row goes: its canonical id (None: waiting for review), how, and why."""
    canonical_id: str | None
    method: str
    score: float | None = None
    evidence: dict[str, Any] | None = None


# a source row's merged state: position, canonical id, link method, commit time (ms)
State = tuple[Position, str | None, str, int | None]
Key = tuple[str, str]   # (entity, canonical id): one golden record


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
    held: int = 0               # not merged: a person reference that does not resolve yet (sinks.library.held)
    links: dict[str, int] = field(default_factory=lambda: defaultdict(int))   # method -> count
    outbox: Counter[str] = field(default_factory=Counter)                    # entity -> golden changes queued

    def add(self, other: BatchReport) -> None:
        for name in ("read", "merged", "unchanged", "retracted", "to_review", "new_golden", "golden_updates", "conflicts",
                     "set_based", "held"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for method, n in other.links.items():
            self.links[method] += n
        self.outbox.update(other.outbox)

    def as_dict(self) -> dict[str, Any]:
        return {"read": self.read, "merged": self.merged, "unchanged": self.unchanged, "retracted": self.retracted,
                "sent_to_review": self.to_review, "new_golden": self.new_golden,
                "golden_updates": self.golden_updates, "conflicts": self.conflicts, "set_based": self.set_based,
                "held": self.held, "links": dict(self.links)}


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

    def add_causes(self, other: Settlement) -> None:
        """``other``'s causes beside these (what the merge stage's metrics read of a settlement)."""
        for key, causes in other.causes.items():
            self.causes.setdefault(key, {}).update(causes)

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

    def causes_of(self, key: Key, suppliers: set[tuple[str, str, str, str]]) -> list[dict[str, Any]]:
        """The source changes a new version of the record comes from, in order: those merged into it whose
        source row supplies a field that changed (``suppliers``), else the latest change to it. A move merged
        in one batch with a marriage registration of the same person comes from both: the police's move and
        the registration (its ``cause``, the latest, alone would hide the RESIDENCE_CHANGED the move raises)."""
        seen = self.causes.get(key, {})
        found = [seen[ref] for ref in seen if ref in suppliers]
        if found:
            return found
        last = self.last_cause(key)
        return [last] if last else []

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

    def queued(self) -> list[tuple[str, str, list[list[Any]], dict[str, Any] | None, list[tuple[str, str, str]], str | None]]:
        """One ``settle_queue`` row per record: (entity, canonical_id, causes, fallback, person_rows, absorbed_by)."""
        return [(entity, cid, [[*ref, provenance] for ref, provenance in self.causes.get((entity, cid), {}).items()],
                 self.fallback.get((entity, cid)),
                 sorted(self.person_rows.get(cid, ())) if entity == "person" else [],
                 self.absorbed.get(cid) if entity == "person" else None)
                for entity, ids in self.records().items() for cid in sorted(ids)]


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def new_person_id(ref: SourceRef) -> str:
    """The id of a person first seen in ``ref`` without a usable RIC."""
    return f"{NO_RIC_PREFIX}{short_hash(str(ref))}"


def coded_id(item: Incoming) -> str:
    """The canonical id of a record of a coded entity: its own code (no look-up, no matching)."""
    r, src = item.record, item.source
    if item.entity == "house":
        return r["house_code"]  # type: ignore[no-any-return]
    if item.entity == "certificate":
        number = r.get("certificate_no") or f"{src.department}/{src.table}/{src.primary_key}"
        return f"{r['certificate_type']}:{number}"
    if item.entity == "relationship":
        subject = r.get("subject_ric") if r.get("subject_ric") and not item.flagged("subject_ric") else f"{src}:s"
        obj = r.get("object_id") if r.get("object_id") and not item.flagged("object_id") else f"{src}:o"
        return f"{r['type']}:{subject}:{obj}"
    if item.entity == "social_insurance":
        return f"{r['insured_no']}|{r['month']}|{r['insurance_type']}"
    raise RejectedRecord(f"{item.entity!r} is not a coded entity")


def as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def mention_of(record: dict[str, Any], households: frozenset[str] = frozenset()) -> matching.Mention:
    """What a GLDM person record says, as matching sees it (a flagged RIC is kept, not trusted)."""
    address = record.get("address")
    ric, name, gender, birth = record.get("ric"), record.get("name"), record.get("gender"), as_date(record.get("birth_date"))
    valid = ric if ric and not flagged(record, "ric") else None
    return matching.Mention(
        rics=frozenset([ric] if ric else ()), valid_ric=valid, names=frozenset([name] if name else ()),
        genders=frozenset([gender] if gender in ("1", "2") else ()), births=frozenset([birth] if birth else ()),
        households=households,
        addresses=frozenset([matching.Address(address.get("district"), address.get("street"), address.get("community"),
                                              address["full"])] if isinstance(address, dict) and address.get("full")
                            else ()),
        mothers=frozenset([record["mother_ric"]] if record.get("mother_ric") else ()),
        fathers=frozenset([record["father_ric"]] if record.get("father_ric") else ()),
        identifiers=frozenset(matching.Identifier(i["type"], i["issuer"], i["value"], bool(i["unique"]))
                              for i in record.get("identifiers") or ()))


def own_household(record: dict[str, Any]) -> frozenset[str]:
    return frozenset([record["household_no"]] if record.get("household_no") else [])


def candidates_of(decision: matching.Decision) -> list[dict[str, Any]]:
    """A decision's candidates as the evidence and the review queue keep them."""
    return [{"canonical_id": c.canonical_id, "score": c.score, "evidence": c.evidence} for c in decision.candidates]


def sticky(previous: State) -> bool:
    """A source row keeps the person an earlier match or review decision linked it to."""
    return bool(previous[1]) and previous[2] not in ("ric", "review")


def dated(mention: matching.Mention) -> matching.Mention:
    """A mention without a birth date dated by its valid RIC."""
    if not mention.births and mention.valid_ric and (birth := matching.birth_from_ric(mention.valid_ric)):
        return replace(mention, births=frozenset([birth]))
    return mention


def combine(known: matching.Mention, other: matching.Mention | None) -> matching.Mention:
    """What two descriptions of one person say together."""
    return known if other is None else known | other
