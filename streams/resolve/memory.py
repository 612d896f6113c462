"""Identity resolution with no database: the ``IdentityStore`` in memory, and ``resolve_records``.

``resolve_records`` resolves a list of GLDM records (person, legal entity or coded ones) exactly as the
resolve stage does — the same ``Resolver``, the same blocks, guards, late matches and review rules — and
returns, for each record, its canonical id and the decision (method, score, candidates). Use it to try
matching rules on a data set, to compare with another linker, or in unit tests.

What it does not do is survivorship: the "golden person" that later records are matched against is
what all the person's source rows say together (``identity.combine``: the first value of each field,
a valid RIC over an invalid one), refreshed after every batch, as the merge stage would refresh the
library. Review items stay open (``InMemoryIdentityStore.reviews``): nobody decides them here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from streams.normalize.mapping import one_per_person_kinds
from streams.resolve import matching
from streams.resolve.identity import (BlockParams, Incoming, Kind, Linked, Settlement, SourceRef, State, combine, dated,
                                      flagged, mention_of, own_household)
from streams.resolve.resolver import Resolver

BLOCK_LIMIT = 50   # golden persons per block, as the library reads them (sinks.library.identity)


@dataclass
class Row:
    """One source row's contribution: its latest record and where it is linked."""
    item: Incoming
    linked: Linked
    state: State


@dataclass
class ReviewItem:
    ref: SourceRef
    entity: str
    candidates: list[dict[str, Any]]
    status: str = "open"
    decided_id: str | None = None


class InMemoryIdentityStore:
    """Contributions, review items and the golden persons' descriptions in dicts (``streams.resolve.store``)."""

    def __init__(self) -> None:
        self.rows: dict[SourceRef, Row] = {}
        self.reviews: dict[int, ReviewItem] = {}
        self.persons: dict[str, matching.Mention] = {}      # settled ("golden") persons
        self.household: dict[str, str] = {}                 # settled person -> own household number
        self.queued: set[str] = set()                       # persons resolved and not settled yet
        self._blocks: dict[Any, set[str]] = defaultdict(set)

    # ------------------------------------------------------------------ settling (the merge stage's part)

    def settle(self, settlement: Settlement) -> None:
        """Describe every person the settlement touched again from its live source rows."""
        for pid in settlement.records().get("person", set()):
            self._describe(pid)
        self.queued.clear()

    def _live_person_rows(self, pid: str) -> list[Row]:
        return sorted((r for r in self.rows.values() if r.item.entity == "person" and r.linked.canonical_id == pid
                       and not r.item.record.get("retracted")), key=lambda r: r.item.source)

    def _describe(self, pid: str) -> None:
        for keys in self._block_entries(pid):
            self._blocks[keys].discard(pid)
        self.persons.pop(pid, None)
        self.household.pop(pid, None)
        described: matching.Mention | None = None
        for row in self._live_person_rows(pid):
            mention = mention_of(row.item.record, own_household(row.item.record))
            described = combine(described, mention) if described else mention
            if row.item.record.get("household_no") and pid not in self.household:
                self.household[pid] = row.item.record["household_no"]
        if described is None:
            return
        # the library's golden RIC is a valid one only (an identifier with a finding never becomes golden)
        self.persons[pid] = dated(described) if described.ric_valid else replace(described, ric=None)
        for keys in self._block_entries(pid):
            self._blocks[keys].add(pid)

    def _block_entries(self, pid: str) -> list[Any]:
        """The index entries of a settled person, one per kind of block the library queries."""
        person = self.persons.get(pid)
        if person is None:
            return []
        key, birth, ric = matching.name_key(person.name), person.birth_date, person.ric
        entries: list[Any] = []
        if birth is not None:
            entries += [("birth", birth), ("birth+name", birth, key)]
        if key is not None:
            entries.append(("name", key))
            if ric:
                entries.append(("name+area", key, ric[:6]))
        if ric:
            entries.append(("ric", ric[:17]))
        return entries

    # ------------------------------------------------------------------ reads

    def contributions(self, refs: set[SourceRef]) -> dict[SourceRef, State]:
        return {ref: self.rows[ref].state for ref in refs if ref in self.rows}

    def queued_persons(self) -> set[str]:
        return set(self.queued)

    def person_records(self, ids: set[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        return [(r.linked.canonical_id or "", r.item.record) for r in self.rows.values()
                if r.item.entity == "person" and r.linked.canonical_id in ids and not r.item.record.get("retracted")]

    def persons_by_ric(self, rics: set[str]) -> dict[str, str]:
        return {m.ric: pid for pid, m in self.persons.items() if m.ric_valid and m.ric in rics and m.ric is not None}

    def legal_entity_by_uscc(self, uscc: str) -> str | None:
        return next((r.linked.canonical_id for r in self.rows.values()
                     if r.item.entity == "legal_entity" and r.item.record.get("uscc") == uscc
                     and not r.item.record.get("retracted") and r.linked.canonical_id), None)

    def blocks(self, wanted: list[BlockParams]) -> list[dict[str, matching.Mention]]:
        found = []
        for birth, key, body, area in wanted:
            ids: set[str] = set()
            for entry in (("birth+name", birth, key) if birth is not None and key is not None else None,
                          ("birth", birth) if birth is not None and key is None else None,
                          ("name", key) if key is not None and birth is None else None,
                          ("name+area", key, area) if key is not None and area is not None else None,
                          ("ric", body) if body is not None else None):
                if entry is not None:
                    ids |= set(sorted(self._blocks.get(entry, ()))[:BLOCK_LIMIT])
            found.append({pid: self._with_households(pid) for pid in sorted(ids)})
        return found

    def _with_households(self, pid: str) -> matching.Mention:
        """A golden person as the library's block query describes it: its own and its parents' households."""
        person = self.persons[pid]
        by_ric = self.persons_by_ric({r for r in (person.mother_ric, person.father_ric) if r})
        own = {self.household[pid]} if pid in self.household else set()
        return matching.Mention(person.ric, bool(person.ric), person.name, person.gender, person.birth_date,
                                frozenset(own | {self.household[p] for p in by_ric.values() if p in self.household}),
                                person.address, person.mother_ric, person.father_ric)

    def households(self, rics: set[str]) -> dict[str, str]:
        return {ric: self.household[pid] for ric, pid in self.persons_by_ric(rics).items() if pid in self.household}

    def holds_other_row(self, canonical_id: str, kind: Kind, primary_key: str) -> bool:
        return any(r.item.source.kind == kind and r.item.source.primary_key != primary_key
                   for r in self._live_person_rows(canonical_id))

    def holds_other_ric(self, canonical_id: str, ric: str | None) -> bool:
        return any(ric is not None and r.item.record.get("ric") not in (None, ric) and not flagged(r.item.record, "ric")
                   for r in self._live_person_rows(canonical_id))

    def orphans(self, name_key: str | None, birth: date | None, ric_body: str | None) -> set[str]:
        named = {pid for pid, m in self.persons.items() if pid.startswith("P~") and name_key is not None
                 and matching.name_key(m.name) == name_key and (m.birth_date is None or m.birth_date == birth)}
        by_ric = {r.linked.canonical_id or "" for r in self.rows.values()
                  if r.item.entity == "person" and (r.linked.canonical_id or "").startswith("P~") and ric_body
                  and (r.item.record.get("ric") or "")[:17] == ric_body}
        return named | by_ric

    def open_reviews_born_on(self, births: set[date]) -> list[tuple[int, SourceRef, dict[str, Any]]]:
        days = {b.isoformat() for b in births}
        found = []
        for review_id, review in self.reviews.items():
            row = self.rows.get(review.ref)
            if (review.status == "open" and review.entity == "person" and row is not None
                    and row.linked.canonical_id is None and not row.item.record.get("retracted")
                    and row.item.record.get("birth_date") in days):
                found.append((review_id, review.ref, row.item.record))
        return found

    # ------------------------------------------------------------------ writes

    def write_contributions(self, writes: Iterable[tuple[Incoming, Linked]]) -> None:
        for item, linked in writes:
            self.rows[item.source] = Row(item, linked, (item.position, linked.canonical_id, linked.method,
                                                        item.provenance.get("committed_at")))
            if item.entity == "person" and linked.canonical_id:
                self.queued.add(linked.canonical_id)

    def queue_review(self, ref: SourceRef, entity: str, candidates: list[dict[str, Any]]) -> None:
        for review in self.reviews.values():
            if review.ref == ref:
                review.candidates, review.status, review.decided_id = candidates, "open", None
                return
        self.reviews[len(self.reviews) + 1] = ReviewItem(ref, entity, candidates)

    def move_person(self, orphan: str, person: str, score: float | None, evidence: dict[str, Any]) -> None:
        for ref, row in self.rows.items():
            if row.item.entity == "person" and row.linked.canonical_id == orphan:
                self._relink(ref, person, "late_match", score, evidence)
        self.queued |= {orphan, person}

    def link_reviewed(self, review_id: int, ref: SourceRef, canonical_id: str, score: float | None,
                      evidence: dict[str, Any]) -> None:
        self._relink(ref, canonical_id, "review_rescored", score, evidence)
        review = self.reviews[review_id]
        review.status, review.decided_id = "resolved", canonical_id
        self.queued.add(canonical_id)

    def _relink(self, ref: SourceRef, canonical_id: str, method: str, score: float | None,
                evidence: dict[str, Any]) -> None:
        row = self.rows[ref]
        row.linked = Linked(canonical_id, method, score, evidence)
        row.state = (row.state[0], canonical_id, method, row.state[3])


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
                    one_per_person: frozenset[Kind] | None = None) -> list[Resolution]:
    """Resolve GLDM records in memory, ``batch_size`` at a time, in order; returns one ``Resolution`` per record.

    A record is a GLDM person (a dict with ``ric``, ``name``, ``gender``, ``birth_date`` ... as
    ``normalize`` produces them), or ``(entity, record)`` for another entity. A record without a
    ``provenance`` is its own source row (``memory/records/<index>``). The final canonical ids account
    for late matches made by later batches. ``one_per_person``: the source-row kinds a person holds one
    of (default: those the department mappings declare)."""
    store = store or InMemoryIdentityStore()
    resolver = Resolver(store, one_per_person_kinds() if one_per_person is None else one_per_person)
    items: list[Incoming] = []
    for index, entry in enumerate(records):
        entity, record = entry if isinstance(entry, tuple) else ("person", entry)
        if "provenance" not in record:
            record = {**record, "provenance": {"department": "memory", "table": "records", "primary_key": str(index),
                                               "role": entity}}
        items.append(Incoming.of(entity, record))
    for start in range(0, len(items), batch_size):
        _, settlement = resolver.resolve(items[start:start + batch_size])
        store.settle(settlement)
    results = []
    for index, item in enumerate(items):
        row = store.rows.get(item.source)
        linked = row.linked if row is not None else Linked(None, "unchanged")
        candidates = tuple((linked.evidence or {}).get("candidates") or ())
        results.append(Resolution(index, item.entity, linked.canonical_id, linked.method, linked.score, candidates))
    return results
