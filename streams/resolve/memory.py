"""Identity resolution with no database: the ``IdentityStore`` in memory, and ``resolve_records``.

``resolve_records`` resolves a list of GLDM records (person, legal entity or coded ones) exactly as the
resolve stage does — the same ``Resolver``, the same blocks, guards, late matches and review rules — and
returns, for each record, its canonical id and the decision (method, score, candidates). Use it to try
matching rules on a data set, to compare with another linker, or in unit tests.

Persons are matched on what their source rows say, as in the stage; no golden record is derived (that is
the merge stage's survivorship). Review items stay open (``InMemoryIdentityStore.reviews``) unless new
evidence decides them: nobody decides them by hand here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Set
from dataclasses import dataclass
from typing import Any

from streams.normalize.mapping import one_per_person_kinds
from streams.resolve import matching
from streams.resolve.identity import Incoming, Kind, Linked, SourceRef, State, flagged
from streams.resolve.resolver import Resolver
from streams.resolve.store import Block, may_be


@dataclass
class Row:
    """One source row's contribution: its latest record and where it is linked."""
    item: Incoming
    linked: Linked
    state: State

    @property
    def live_person(self) -> bool:
        return self.item.entity == "person" and not self.item.record.get("retracted")

    @property
    def valid_ric(self) -> str | None:
        ric = self.item.record.get("ric")
        return ric if ric and not flagged(self.item.record, "ric") else None


@dataclass
class ReviewItem:
    ref: SourceRef
    entity: str
    candidates: list[dict[str, Any]]
    keys: set[str]
    status: str = "open"
    decided_id: str | None = None


class InMemoryIdentityStore:
    """Contributions, blocking keys and review items in dicts (``streams.resolve.store``), indexed the way
    the library's tables are, so a run of a few hundred thousand records stays linear."""

    def __init__(self) -> None:
        self.rows: dict[SourceRef, Row] = {}
        self.reviews: dict[int, ReviewItem] = {}
        self._review_of: dict[SourceRef, int] = {}
        self._review_keys: dict[str, set[int]] = defaultdict(set)
        self._by_person: dict[str, set[SourceRef]] = defaultdict(set)   # person rows by canonical id
        self._persons = 0                                               # persons holding a row
        self._by_ric: dict[str, set[SourceRef]] = defaultdict(set)      # person rows by valid RIC
        self._keys: dict[str, set[str]] = defaultdict(set)              # blocking key -> persons
        self._keys_of: dict[str, set[str]] = defaultdict(set)           # person -> blocking keys

    def _live_rows(self, pid: str) -> list[Row]:
        return [row for ref in sorted(self._by_person.get(pid, ())) if (row := self.rows[ref]).live_person]

    # ------------------------------------------------------------------ reads

    def contributions(self, refs: set[SourceRef]) -> dict[SourceRef, State]:
        return {ref: self.rows[ref].state for ref in refs if ref in self.rows}

    def person_records(self, ids: set[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        return [(pid, row.item.record) for pid in sorted(ids) for row in self._live_rows(pid)]

    def persons_by_ric(self, rics: set[str]) -> dict[str, str]:
        found = {}
        for ric in rics:
            persons = sorted(cid for ref in self._by_ric.get(ric, ()) if (row := self.rows[ref]).live_person
                             and (cid := row.linked.canonical_id))
            if persons:
                found[ric] = persons[0]
        return found

    def households(self, rics: set[str]) -> dict[str, str]:
        found = {}
        for ric in rics:
            held = sorted(hh for ref in self._by_ric.get(ric, ()) if (row := self.rows[ref]).live_person
                          and (hh := row.item.record.get("household_no")))
            if held:
                found[ric] = held[0]
        return found

    def legal_entity_by_uscc(self, uscc: str) -> str | None:
        return next((r.linked.canonical_id for r in self.rows.values()
                     if r.item.entity == "legal_entity" and r.item.record.get("uscc") == uscc
                     and not r.item.record.get("retracted") and r.linked.canonical_id), None)

    def candidate_ids(self, wanted: list[Block]) -> list[list[str]]:
        found = []
        for keys, ric in wanted:
            shared: Counter[str] = Counter()
            for key in keys:
                persons = self._keys.get(key, ())
                if matching.is_name_key(key) and len(persons) > matching.COMMON_NAME_KEY:
                    continue
                shared.update(p for p in persons if may_be(ric, p))
            found.append(sorted(shared, key=lambda p: (-shared[p], matching.rank(p)))[:matching.BLOCK_LIMIT])
        return found

    def name_counts(self, names: set[str]) -> tuple[dict[str, int], int]:
        return {n: len(self._keys.get(matching.name_only_key(n), ())) for n in names}, self._persons

    def holds_other_row(self, canonical_id: str, kind: Kind, primary_key: str) -> bool:
        return any(r.item.source.kind == kind and r.item.source.primary_key != primary_key
                   for r in self._live_rows(canonical_id))

    def holds_other_ric(self, canonical_id: str, ric: str | None) -> bool:
        return ric is not None and any(r.valid_ric not in (None, ric) for r in self._live_rows(canonical_id))

    def open_reviews(self, keys: set[str]) -> list[tuple[int, SourceRef, dict[str, Any]]]:
        found = []
        for review_id in sorted(set().union(*(self._review_keys.get(k, set()) for k in keys))):
            review = self.reviews[review_id]
            row = self.rows.get(review.ref)
            if (review.status == "open" and row is not None and row.linked.canonical_id is None
                    and not row.item.record.get("retracted")):
                found.append((review_id, review.ref, row.item.record))
        return found

    # ------------------------------------------------------------------ writes

    def write_contributions(self, writes: Iterable[tuple[Incoming, Linked]]) -> None:
        for item, linked in writes:
            old = self.rows.get(item.source)
            if old is not None:
                self._unlink(old)
            row = Row(item, linked, (item.position, linked.canonical_id, linked.method,
                                     item.provenance.get("committed_at")))
            self.rows[item.source] = row
            self._link(row)

    def _link(self, row: Row) -> None:
        if row.item.entity != "person":
            return
        if row.linked.canonical_id:
            held = self._by_person[row.linked.canonical_id]
            self._persons += not held
            held.add(row.item.source)
        if row.valid_ric:
            self._by_ric[row.valid_ric].add(row.item.source)

    def _unlink(self, row: Row) -> None:
        if row.item.entity != "person":
            return
        if row.linked.canonical_id:
            held = self._by_person[row.linked.canonical_id]
            held.discard(row.item.source)
            self._persons -= not held
        if row.valid_ric:
            self._by_ric[row.valid_ric].discard(row.item.source)

    def index(self, entries: Iterable[tuple[str, str]]) -> None:
        for key, pid in entries:
            self._keys[key].add(pid)
            self._keys_of[pid].add(key)

    def queue_review(self, ref: SourceRef, entity: str, candidates: list[dict[str, Any]], keys: Set[str]) -> None:
        review_id = self._review_of.get(ref)
        if review_id is None:
            review_id = self._review_of[ref] = len(self.reviews) + 1
            self.reviews[review_id] = ReviewItem(ref, entity, candidates, set(keys))
        review = self.reviews[review_id]
        review.candidates, review.status, review.decided_id, review.keys = candidates, "open", None, set(keys)
        for key in keys:
            self._review_keys[key].add(review_id)

    def move_person(self, orphan: str, person: str, score: float | None, evidence: dict[str, Any]) -> None:
        for ref in sorted(self._by_person.get(orphan, ())):
            self._relink(ref, person, "late_match", score, evidence)
        self.index((key, person) for key in self._keys_of.pop(orphan, set()))
        for persons in (self._keys[k] for k in self._keys_of[person]):
            persons.discard(orphan)

    def link_reviewed(self, review_id: int, ref: SourceRef, canonical_id: str, score: float | None,
                      evidence: dict[str, Any]) -> None:
        self._relink(ref, canonical_id, "review_rescored", score, evidence)
        review = self.reviews[review_id]
        review.status, review.decided_id = "resolved", canonical_id

    def _relink(self, ref: SourceRef, canonical_id: str, method: str, score: float | None,
                evidence: dict[str, Any]) -> None:
        row = self.rows[ref]
        self._unlink(row)
        row.linked = Linked(canonical_id, method, score, evidence)
        row.state = (row.state[0], canonical_id, method, row.state[3])
        self._link(row)


@dataclass(frozen=True)
class Resolution:
    """Where one input record went: its canonical id (None while it waits for review) and why."""
    index: int                       # the record's place in the input
    entity: str
    canonical_id: str | None
    method: str                      # ric, match, new, review, code, uscc, registration_no, late_match ...
    score: float | None
    candidates: tuple[dict[str, Any], ...]   # the scored golden records it was compared with (persons)


def resolve_records(records: Iterable[dict[str, Any] | tuple[str, dict[str, Any]]], batch_size: int = 500,
                    store: InMemoryIdentityStore | None = None,
                    one_per_person: frozenset[Kind] | None = None,
                    weights: matching.Weights | None = None) -> list[Resolution]:
    """Resolve GLDM records in memory, ``batch_size`` at a time, in order; returns one ``Resolution`` per record.

    A record is a GLDM person (a dict with ``ric``, ``name``, ``gender``, ``birth_date`` ... as
    ``normalize`` produces them), or ``(entity, record)`` for another entity. A record without a
    ``provenance`` is its own source row (``memory/records/<index>``). The final canonical ids account
    for late matches made by later batches. ``one_per_person``: the source-row kinds a person holds one
    of (default: those the department mappings declare). ``weights``: the Fellegi–Sunter parameters (default:
the shipped ``weights.json``)."""
    store = store or InMemoryIdentityStore()
    resolver = Resolver(store, one_per_person_kinds() if one_per_person is None else one_per_person, weights)
    items: list[Incoming] = []
    for index, entry in enumerate(records):
        entity, record = entry if isinstance(entry, tuple) else ("person", entry)
        if "provenance" not in record:
            record = {**record, "provenance": {"department": "memory", "table": "records", "primary_key": str(index),
                                               "role": entity}}
        items.append(Incoming.of(entity, record))
    for start in range(0, len(items), batch_size):
        resolver.resolve(items[start:start + batch_size])
    results = []
    for index, item in enumerate(items):
        row = store.rows.get(item.source)
        linked = row.linked if row is not None else Linked(None, "unchanged")
        candidates = tuple((linked.evidence or {}).get("candidates") or ())
        results.append(Resolution(index, item.entity, linked.canonical_id, linked.method, linked.score, candidates))
    return results
