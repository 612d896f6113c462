"""The resolve stage's decision: which golden record each candidate's source row belongs to. Pure logic
over an ``IdentityStore`` (``streams.resolve.store``): no SQL, no Kafka.

For a batch:

1. each candidate's source row (department, table, key, role) is looked up; a position the same as or
   older than the merged one is a no-op (replays and redeliveries change nothing);
2. the candidate is resolved to a canonical id: deterministic on a valid RIC / USCC / house code /
   certificate number, else the sticky earlier link, else a fuzzy match (``streams.resolve.matching``)
   over the mention's blocks (golden persons, and persons resolved but not merged yet); an ambiguous
   one waits for review;
3. persons made earlier without a usable ID that a new RIC person explains are matched late, and open
   review items it explains are decided again: new evidence, not arrival order, decides identity.

``resolve`` returns the batch's report and its ``Settlement``: the golden records touched, which the
merge stage recomputes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from kintsmesh.errors import RejectedRecord
from streams.merge.survivorship import is_stale
from streams.resolve import matching
from streams.resolve.identity import (BatchReport, BlockParams, Incoming, Kind, Linked, Settlement, SourceRef, State,
                                      block_keys, block_params, candidates_of, coded_id, combine, dated, mention_keys,
                                      mention_of, new_person_id, own_household, short_hash, sticky)
from streams.resolve.store import IdentityStore

CODED_ENTITIES = frozenset({"house", "certificate", "relationship", "social_insurance"})
Described = tuple[matching.Mention, list[Any], dict[str, str]]   # mention, block keys, RIC -> household


class Resolver:
    """Resolves batches against one store; keeps, between batches, what it has read about queued persons."""

    def __init__(self, store: IdentityStore, one_per_person: frozenset[Kind] = frozenset()) -> None:
        self.store = store
        self.one_per_person = one_per_person
        # queued persons as matching sees them: id -> (mention, block keys, RIC -> household)
        self.unsettled: dict[str, Described] = {}
        self._start_batch()

    def resolve(self, items: list[Incoming]) -> tuple[BatchReport, Settlement]:
        """Stale check, identity, contributions, late matches, review queue. Writes only contributions and
        review items (through the store); the golden records it touched are left to the merge stage."""
        report, settlement = BatchReport(read=len(items)), Settlement()
        if not items:
            return report, settlement
        self._start_batch()
        unsettled = self._remember_unsettled()
        state = self.store.contributions({i.source for i in items})
        by_ric = {**unsettled, **self.store.persons_by_ric(
            {i.record["ric"] for i in items
             if i.entity == "person" and i.record.get("ric") and not i.flagged("ric")})}
        self._batch_households.update({i.record["ric"]: i.record["household_no"] for i in items
                                       if i.entity == "person" and i.record.get("ric") and i.record.get("household_no")})
        self._prefetch_people(items, state, by_ric)
        writes: dict[SourceRef, tuple[Incoming, Linked]] = {}
        for item in items:
            ref, pos = item.source, item.position
            previous = state.get(ref)
            if previous is not None and is_stale(pos, previous[0], item.provenance.get("committed_at"), previous[3]):
                report.unchanged += 1
                continue
            if item.record.get("retracted"):
                linked = Linked(previous[1] if previous else None, previous[2] if previous else "retracted")
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
        self.store.write_contributions(writes.values())
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
                self.unsettled.pop(cid, None)   # described again from its contributions if it stays queued
        return report, settlement

    # ------------------------------------------------------------------ batch state

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
        # (person, one-per-person kind) -> the source row's key linked in this batch
        self._batch_rows: dict[tuple[str, Kind], str] = {}

    def _remember_unsettled(self) -> dict[str, str]:
        """Persons resolved earlier whose merge is still queued are not golden yet: matching sees them
        through their contributions, as it sees the batch's own. Returns their valid RICs (RIC -> id).

        What their contributions say is kept between batches (``unsettled``) while they stay queued, and
        read again only for persons this resolver has not described yet or has touched since (``resolve``
        drops those): a batch then costs one look at the queue's person ids, not a read of every queued
        person, which matters when the merge stage falls behind or stops."""
        queued = self.store.queued_persons()
        for cid in set(self.unsettled) - queued:
            del self.unsettled[cid]
        if missing := queued - set(self.unsettled):
            described: dict[str, tuple[matching.Mention, dict[str, str]]] = {}
            for cid, record in self.store.person_records(missing):
                mention = mention_of(record, own_household(record))
                known, households = described.get(cid, (None, {}))
                if mention.ric_valid and mention.ric and record.get("household_no"):
                    households = {**households, mention.ric: record["household_no"]}
                described[cid] = (combine(known, mention) if known else mention, households)
            for cid, (mention, households) in described.items():
                mention = dated(mention)
                self.unsettled[cid] = (mention, mention_keys(mention), households)
        rics: dict[str, str] = {}
        for cid, (mention, keys, households) in self.unsettled.items():
            self._batch_persons[cid] = mention
            for k in keys:
                self._batch_blocks[k].add(cid)
            self._batch_households.update(households)
            if mention.ric_valid and mention.ric:
                rics[mention.ric] = cid
        return rics

    # ------------------------------------------------------------------ one candidate

    def _resolve(self, item: Incoming, previous: State | None, by_ric: dict[str, str]) -> Linked:
        if item.entity == "person":
            return self._resolve_person(item, previous, by_ric)
        if item.entity == "legal_entity":
            return self._resolve_legal_entity(item)
        if item.entity in CODED_ENTITIES:
            return Linked(coded_id(item), "code")
        raise RejectedRecord(f"unknown entity {item.entity!r}")

    def _resolve_legal_entity(self, item: Incoming) -> Linked:
        """By its registration number (deterministic whatever order the records come in), else by USCC."""
        registration = item.record.get("registration_no")
        if registration:
            return Linked(f"E~{registration}", "registration_no")
        uscc = item.record.get("uscc") if not item.flagged("uscc") else None
        known = self.store.legal_entity_by_uscc(uscc) if uscc else None
        if known:
            return Linked(known, "uscc")
        return Linked(f"E~{uscc or short_hash(str(item.source))}", "new")

    def _resolve_person(self, item: Incoming, previous: State | None, by_ric: dict[str, str]) -> Linked:
        mention = mention_of(item.record, own_household(item.record))
        linked = self._resolve_person_id(item, mention, previous, by_ric)
        if linked.canonical_id:
            self._remember(linked.canonical_id, mention)
            src = item.source
            if src.kind in self.one_per_person:
                self._batch_rows.setdefault((linked.canonical_id, src.kind), src.primary_key)
        return linked

    def _resolve_person_id(self, item: Incoming, mention: matching.Mention, previous: State | None,
                           by_ric: dict[str, str]) -> Linked:
        if mention.ric_valid and mention.ric in by_ric:
            return Linked(by_ric[mention.ric], "ric")
        if previous is not None and sticky(previous):
            return Linked(previous[1], previous[2])   # sticky: keep an earlier match or review decision
        mention = self._with_parents_households(mention, item.record)
        decision = matching.decide(mention, self._blocks(mention))
        candidates = candidates_of(decision)
        evidence = {"decision": decision.outcome, "evidence": decision.evidence, "candidates": candidates}
        if decision.outcome == "link" and mention.ric_valid and self._holds_other_ric(decision.canonical_id, mention.ric):
            decision = matching.Decision("new", candidates=decision.candidates)   # one person, one valid RIC
        if decision.outcome == "link" and self._holds_other_row(decision.canonical_id, item.source):
            decision = matching.Decision("new", candidates=decision.candidates)   # one person, one birth
        if decision.outcome == "link":
            assert decision.canonical_id is not None
            if mention.ric_valid:
                by_ric[mention.ric or ""] = decision.canonical_id
            return Linked(decision.canonical_id, "match", decision.score, evidence)
        if decision.outcome == "review" and not mention.ric_valid:
            self.store.queue_review(item.source, item.entity, candidates)
            return Linked(None, "review", decision.score, evidence)
        new_id = mention.ric if mention.ric_valid and mention.ric else new_person_id(item.source)
        if mention.ric_valid:
            by_ric[mention.ric or ""] = new_id
            self._created_by_ric.append(new_id)
        return Linked(new_id, "ric" if mention.ric_valid else "new", decision.score, evidence)

    def _holds_other_row(self, canonical_id: str | None, source: SourceRef) -> bool:
        """Whether the person already holds another source row of a kind a person has one of."""
        if source.kind not in self.one_per_person or canonical_id is None:
            return False
        held = self._batch_rows.get((canonical_id, source.kind))
        if held is not None:
            return held != source.primary_key
        return self.store.holds_other_row(canonical_id, source.kind, source.primary_key)

    def _holds_other_ric(self, canonical_id: str | None, ric: str | None) -> bool:
        """Whether the person already has a source row with another valid RIC (a different person, then:
        two babies of one name born on one day look alike until the police register them)."""
        known = self._batch_persons.get(canonical_id or "")
        if known is not None and known.ric_valid and known.ric != ric:
            return True
        return canonical_id is not None and self.store.holds_other_ric(canonical_id, ric)

    # ------------------------------------------------------------------ after the batch's candidates

    def _late_links(self) -> dict[str, str]:
        """Persons made earlier from mentions without a usable ID (P~...) that this batch's new RIC
        persons explain: arrival order must not decide identity. Moves their contributions over;
        returns orphan id -> person id."""
        moved: dict[str, str] = {}
        for pid in self._created_by_ric:
            person = self._batch_persons[pid]
            key = matching.name_key(person.name)
            orphans = self.store.orphans(key, person.birth_date, matching.ric_body(person.ric))
            orphans |= {c for c in self._batch_blocks.get(("name", key), set()) if c.startswith("P~") and c != pid}
            orphans -= set(moved)
            if not orphans:
                continue
            described: dict[str, matching.Mention] = {}
            for cid, record in self.store.person_records(orphans):
                m = mention_of(record)
                described[cid] = combine(described[cid], m) if cid in described else m
            rivals = [(c, m) for c, m in self._blocks(person) if m.ric_valid and c != pid]
            for cid, orphan in described.items():
                decision = matching.decide(orphan, [(pid, person), *rivals])
                if decision.outcome == "link" and decision.canonical_id == pid and not orphan.ric_valid:
                    self.store.move_person(cid, pid, decision.score,
                                           {"decision": "late_match", "evidence": decision.evidence, "was": cid})
                    moved[cid] = pid
        return moved

    def _rescore_reviews(self, settlement: Settlement) -> int:
        """Open review items that a person this batch made from a valid RIC may explain, decided again by
        the rules a new mention meets: one that now links to that person is linked (method
        ``review_rescored``) and its item closed as ``resolved``. Returns how many."""
        births = {b for pid in self._created_by_ric if (b := self._batch_persons[pid].birth_date)}
        if not births:
            return 0
        rescored = 0
        for review_id, ref, record in self.store.open_reviews_born_on(births):
            mention = self._with_parents_households(mention_of(record, own_household(record)), record)
            decision = matching.decide(mention, self._blocks(mention))
            if decision.outcome != "link" or decision.canonical_id not in self._created_by_ric:
                continue
            assert decision.canonical_id is not None
            self.store.link_reviewed(review_id, ref, decision.canonical_id, decision.score, {
                "decision": "review_rescored", "evidence": decision.evidence, "review_id": review_id,
                "candidates": candidates_of(decision)})
            settlement.person_rows[decision.canonical_id].add(ref.row)
            settlement.touch_without_change("person", decision.canonical_id, record["provenance"])
            rescored += 1
        return rescored

    # ------------------------------------------------------------------ what matching sees

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

    def _read_households(self, rics: set[str]) -> None:
        self._household_of.update(dict.fromkeys(rics))
        self._household_of.update(self.store.households(rics))

    def _blocks(self, mention: matching.Mention) -> list[tuple[str, matching.Mention]]:
        """Golden persons sharing a block with the mention, plus persons created earlier in this batch."""
        params = block_params(mention)
        if params not in self._golden_blocks:
            self._read_blocks([params])
        found = dict(self._golden_blocks[params])
        birth, key, body, _ = params
        in_batch = set().union(*(self._batch_blocks.get(k, set()) for k in block_keys(key, birth, body)))
        for pid in in_batch | (set(found) & set(self._batch_persons)):
            found[pid] = combine(self._batch_persons[pid], found.get(pid))
        return list(found.items())

    def _read_blocks(self, wanted: list[BlockParams]) -> None:
        for params, persons in zip(wanted, self.store.blocks(wanted)):
            self._golden_blocks[params] = persons

    def _prefetch_people(self, items: list[Incoming], state: dict[SourceRef, State], by_ric: dict[str, str]) -> None:
        """What resolving the batch's persons reads from the library, in two reads rather than two per
        person: the blocks of every mention that may need matching, and the households of the parents
        named. The golden persons do not change before the batch is merged, so the reads serve it all."""
        wanted: dict[BlockParams, None] = {}
        parents: set[str] = set()
        for item in items:
            if item.entity != "person" or item.record.get("retracted"):
                continue
            mention, previous = mention_of(item.record), state.get(item.source)
            if (mention.ric_valid and mention.ric in by_ric) or (previous is not None and sticky(previous)):
                continue
            wanted[block_params(mention)] = None
            parents.update(r for r in (item.record.get("mother_ric"), item.record.get("father_ric")) if r)
        if wanted:
            self._read_blocks(list(wanted))
        if parents:
            self._read_households(parents)

    def _remember(self, cid: str, mention: matching.Mention) -> None:
        mention = dated(mention)
        combined = combine(self._batch_persons[cid], mention) if cid in self._batch_persons else mention
        self._batch_persons[cid] = combined
        for k in mention_keys(combined):
            self._batch_blocks[k].add(cid)
