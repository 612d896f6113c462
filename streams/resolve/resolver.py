"""The resolve stage's decision: which golden record each candidate's source row belongs to. Pure logic
over an ``IdentityStore`` (``streams.resolve.store``): no SQL, no Kafka.

For a batch:

1. each candidate's source row (department, table, key, role) is looked up; a position the same as or
   older than the merged one is a no-op (replays and redeliveries change nothing);
2. the candidate is resolved to a canonical id: deterministic on a valid RIC / USCC / house code /
   certificate number, else the sticky earlier link, else a Fellegi–Sunter match
   (``streams.resolve.matching``) against the persons sharing a blocking key with the mention, as their
   source rows describe them; an ambiguous one waits for review;
3. every person that gained evidence in the batch is a reason to look again: persons without a valid
   RIC near it are decided again as a whole and moved into the person they now match (a late match),
   and open review items near it are decided again: evidence, not arrival order, decides identity.

``resolve`` returns the batch's report and its ``Settlement``: the golden records touched, which the
merge stage recomputes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from typing import Any

from kintsmesh import topics
from kintsmesh.errors import RejectedRecord
from streams.merge.survivorship import is_stale
from streams.resolve import matching
from streams.resolve.identity import (NO_RIC_PREFIX, BatchReport, Incoming, Kind, Linked, Settlement, SourceRef, State,
                                      candidates_of, coded_id, combine, dated, mention_of, new_person_id, own_household,
                                      short_hash, sticky)
from streams.resolve.store import Block, IdentityStore, block_of

CODED_ENTITIES = frozenset(topics.CODED_ENTITIES)   # a code in the record is their canonical id


class Resolver:
    """Resolves batches against one store."""

    def __init__(self, store: IdentityStore, one_per_person: frozenset[Kind] = frozenset(),
                 weights: matching.Weights | None = None) -> None:
        self.store = store
        self.one_per_person = one_per_person
        self.weights = weights or matching.weights()
        self._start_batch()

    def resolve(self, items: list[Incoming]) -> tuple[BatchReport, Settlement]:
        """Stale check, identity, contributions, re-examination, review queue. Writes only contributions,
        blocking keys and review items (through the store); the golden records it touched are left to the
        merge stage."""
        report, settlement = BatchReport(read=len(items)), Settlement()
        if not items:
            return report, settlement
        self._start_batch()
        state = self.store.contributions({i.source for i in items})
        by_ric = self.store.persons_by_ric(
            {i.record["ric"] for i in items if i.entity == "person" and i.record.get("ric") and not i.flagged("ric")})
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
        self.store.index(sorted(self._new_keys))
        self._forget(set(self._gained))   # described again with the batch's rows written
        if rescored := self._rescore_reviews(settlement):
            report.links["review_rescored"] += rescored
        for orphan, person in self._late_links().items():
            settlement.touch_without_change("person", orphan, settlement.last_cause(("person", person)))
            settlement.absorbed[orphan] = person
            if ("person", person) not in settlement.causes:
                settlement.touch_without_change("person", person, {})
            report.links["late_match"] += 1
        return report, settlement

    # ------------------------------------------------------------------ batch state

    def _start_batch(self) -> None:
        # persons as their stored source rows describe them, valid until the batch's own writes change them
        self._described: dict[str, matching.Mention] = {}
        self._read: set[str] = set()   # the persons whose stored rows were read (those without any too)
        self._candidates: dict[Block, list[str]] = {}
        self._name_counts: dict[str, int] = {}
        self._persons = 0
        self._household_of: dict[str, str | None] = {}
        self._batch_households: dict[str, str] = {}   # RIC -> household number, said by the batch
        self._item_mentions: dict[int, matching.Mention] = {}   # id(item) -> its mention, made once
        # persons linked or created in the batch, with what the batch says about them, and their keys
        self._batch_persons: dict[str, matching.Mention] = {}
        self._batch_keys: dict[str, set[str]] = defaultdict(set)
        self._new_keys: set[tuple[str, str]] = set()   # (key, person) to index after the batch
        self._gained: set[str] = set()                   # persons a source row joined in this batch
        # (person, one-per-person kind) -> the source row's key linked in this batch
        self._batch_rows: dict[tuple[str, Kind], str] = {}

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
        mention = self._item_mentions.pop(id(item), None) or self._mention(item.record)
        linked = self._resolve_person_id(item, mention, previous, by_ric)
        if linked.canonical_id:
            self._remember(linked.canonical_id, mention)
            if previous is None or previous[1] != linked.canonical_id:
                self._gained.add(linked.canonical_id)   # a source row new to the person: evidence to look again
            src = item.source
            if src.kind in self.one_per_person:
                self._batch_rows.setdefault((linked.canonical_id, src.kind), src.primary_key)
        return linked

    def _resolve_person_id(self, item: Incoming, mention: matching.Mention, previous: State | None,
                           by_ric: dict[str, str]) -> Linked:
        if mention.valid_ric and mention.valid_ric in by_ric:
            return Linked(by_ric[mention.valid_ric], "ric")
        if previous is not None and sticky(previous):
            return Linked(previous[1], previous[2])   # sticky: keep an earlier match or review decision
        mention = self._with_parents_households(mention, item.record)
        decision = self._decide(mention)
        candidates = candidates_of(decision)
        evidence = {"decision": decision.outcome, "evidence": decision.evidence, "candidates": candidates}
        if decision.outcome == "link" and mention.valid_ric and self._holds_other_ric(decision.canonical_id,
                                                                                        mention.valid_ric):
            decision = matching.Decision("new", candidates=decision.candidates)   # one person, one valid RIC
        if decision.outcome == "link" and self._holds_other_row(decision.canonical_id, item.source):
            decision = matching.Decision("new", candidates=decision.candidates)   # one person, one birth
        if decision.outcome == "link":
            assert decision.canonical_id is not None
            if mention.valid_ric:
                by_ric[mention.valid_ric] = decision.canonical_id
            return Linked(decision.canonical_id, "match", decision.score, evidence)
        if decision.outcome == "review" and not mention.valid_ric:
            self.store.queue_review(item.source, item.entity, candidates, matching.keys(mention))
            return Linked(None, "review", decision.score, evidence)
        new_id = mention.valid_ric or new_person_id(item.source)
        if mention.valid_ric:
            by_ric[mention.valid_ric] = new_id
        return Linked(new_id, "ric" if mention.valid_ric else "new", decision.score, evidence)

    def _decide(self, mention: matching.Mention, leave_out: str | None = None) -> matching.Decision:
        candidates = [(c, m) for c, m in self._blocks(mention) if c != leave_out]
        return matching.decide(mention, candidates, self.weights, self._name_share(mention))

    def _name_share(self, mention: matching.Mention) -> float | None:
        """The share of persons known by the mention's (rarest) name; with few persons known, the share the
        weights assume for an average name weighs in (a library of ten persons says little about names)."""
        if not mention.names:
            return None
        self._count_names(set(mention.names))
        known = min(self._name_counts[n] for n in mention.names)
        return (known + 1) / (self._persons + 1 / self.weights.u["name"]["exact"])

    def _count_names(self, names: set[str]) -> None:
        if missing := {n for n in names if n not in self._name_counts}:   # (set - keys() walks every key)
            counts, self._persons = self.store.name_counts(missing)
            self._name_counts.update({n: counts.get(n, 0) for n in missing})

    def _holds_other_row(self, canonical_id: str | None, source: SourceRef) -> bool:
        """Whether the person already holds another source row of a kind a person has one of."""
        if source.kind not in self.one_per_person or canonical_id is None:
            return False
        held = self._batch_rows.get((canonical_id, source.kind))
        if held is not None:
            return held != source.primary_key
        if canonical_id in self._read:   # its stored rows, read already (none: not described)
            row_type = matching.row_type(source.kind)
            described = self._described.get(canonical_id)
            return described is not None and any(i.type == row_type and i.value != source.primary_key
                                                 for i in described.identifiers)
        return self.store.holds_other_row(canonical_id, source.kind, source.primary_key)

    def _holds_other_ric(self, canonical_id: str | None, ric: str | None) -> bool:
        """Whether the person already has a source row with another valid RIC (a different person, then:
        two babies of one name born on one day look alike until the police register them)."""
        known = self._batch_persons.get(canonical_id or "")
        if known is not None and known.valid_ric and known.valid_ric != ric:
            return True
        return canonical_id is not None and self.store.holds_other_ric(canonical_id, ric)

    # ------------------------------------------------------------------ after the batch's candidates

    def _late_links(self) -> dict[str, str]:
        """Persons without a valid RIC (P~...) that a person who gained evidence in this batch now explains,
        or that gained evidence and now match another: arrival order must not decide identity. Each such
        person is decided again as a whole (all its source rows together) against its blocks; one that
        links is moved into the person it links to. Returns orphan id -> person id."""
        touched = set(self._gained)
        if not touched:
            return {}
        near = self._neighbours(touched)
        orphans = sorted(c for c in ({*touched, *near}) if c.startswith(NO_RIC_PREFIX))
        if not orphans:
            return {}
        self._describe(set(orphans) | {t for o in orphans for t in near.get(o, ())})

        eligible: dict[str, bool] = {}   # may_link's answers until a move changes what is described

        def may_link(orphan: str) -> bool:   # only what changed can make it link: a touched neighbour
            if orphan not in eligible:
                profile = self._described.get(orphan)
                eligible[orphan] = profile is not None and (orphan in touched or any(
                    matching.score(profile, self._described[t], t, self.weights).score >= self.weights.link_bits
                    for t in near[orphan] if t in self._described))
            return eligible[orphan]

        # one read for the blocks of those that may link now (one a move below makes eligible reads its own)
        self._read_candidates([block_of(self._described[o]) for o in orphans if may_link(o)])
        moved: dict[str, str] = {}
        for orphan in orphans:
            if orphan in moved or orphan in moved.values() or not may_link(orphan):
                continue
            profile = self._described[orphan]
            decision = self._decide(profile, leave_out=orphan)
            target = decision.canonical_id
            if decision.outcome != "link" or target is None or target in moved:
                continue
            if orphan not in touched and target not in touched:
                continue   # nothing about either changed in this batch
            other = self._described.get(target)
            if other is None or (profile.valid_ric and other.valid_ric and profile.valid_ric != other.valid_ric):
                continue
            if matching.rows_held(profile) & matching.rows_held(other):
                continue   # two birth certificates: two people
            if self._decide(other, leave_out=target).canonical_id != orphan:
                continue   # each must be the other's match: a twin's nameless certificate is not its sibling's
            self.store.move_person(orphan, target, decision.score,
                                   {"decision": "late_match", "evidence": decision.evidence, "was": orphan})
            moved[orphan] = target
            self._described[target] = combine(other, profile)
            self._described.pop(orphan, None)
            eligible.clear()
        return moved

    def _neighbours(self, persons: set[str]) -> dict[str, set[str]]:
        """The persons without a valid RIC sharing a blocking key with what the batch said about any of
        ``persons`` (the new evidence: what they were known by before found their neighbours then), each
        with those of ``persons`` it is near."""
        near: dict[str, set[str]] = defaultdict(set)
        wanted: dict[str, Block] = {   # orphans only (``may_be`` a person's id: P~ ones, and itself)
            p: (frozenset(k for k in self._batch_keys_of(p) if not k.startswith("n:")), p) for p in sorted(persons)}
        self._read_candidates(list(wanted.values()))
        for person, block in wanted.items():
            for c in self._candidates[block]:
                if c != person:
                    near[c].add(person)
        return near

    def _rescore_reviews(self, settlement: Settlement) -> int:
        """Open review items near a person that gained evidence in this batch, decided again by the rules a
        new mention meets: one that now links is linked (method ``review_rescored``) and its item closed as
        ``resolved``. Returns how many."""
        keys = set().union(*(self._batch_keys_of(p) for p in self._gained)) if self._gained else set()
        if not keys:
            return 0
        rescored = 0
        for review_id, ref, record in self.store.open_reviews(keys):
            mention = self._with_parents_households(self._mention(record), record)
            decision = self._decide(mention)
            if decision.outcome != "link" or decision.canonical_id is None:
                continue
            if self._holds_other_row(decision.canonical_id, ref) or (
                    mention.valid_ric and self._holds_other_ric(decision.canonical_id, mention.valid_ric)):
                continue
            self.store.link_reviewed(review_id, ref, decision.canonical_id, decision.score, {
                "decision": "review_rescored", "evidence": decision.evidence, "review_id": review_id,
                "candidates": candidates_of(decision)})
            self.store.index(sorted((k, decision.canonical_id) for k in matching.keys(mention)))
            settlement.person_rows[decision.canonical_id].add(ref.row)
            settlement.touch_without_change("person", decision.canonical_id, record["provenance"])
            self._forget({decision.canonical_id})
            rescored += 1
        return rescored

    def _batch_keys_of(self, pid: str) -> frozenset[str]:
        return matching.keys(self._batch_persons[pid])

    # ------------------------------------------------------------------ what matching sees

    def _mention(self, record: dict[str, Any], dating: bool = True) -> matching.Mention:
        """A person record as matching sees it. A row of a kind a person holds one of (a birth certificate)
        is also a unique identifier of its own: two such rows are two people, and what their family shares
        says nothing about which child is which."""
        mention = mention_of(record, own_household(record))
        ref = SourceRef.of(record["provenance"], "person")
        if ref.kind in self.one_per_person:
            mention = replace(mention, identifiers=mention.identifiers | {matching.Identifier(
                matching.row_type(ref.kind), ref.department, str(ref.primary_key), True)})
        return dated(mention) if dating else mention

    def _with_parents_households(self, mention: matching.Mention, record: dict[str, Any]) -> matching.Mention:
        """The mention with its parents' households too (a newborn's is its mother's)."""
        return replace(mention, households=mention.households
                       | self._households(record.get("mother_ric"), record.get("father_ric")))

    def _households(self, *rics: str | None) -> set[str]:
        wanted = [r for r in rics if r]
        self._read_households(set(wanted))
        return ({self._batch_households[r] for r in wanted if r in self._batch_households}
                | {hh for r in wanted if (hh := self._household_of[r])})

    def _read_households(self, rics: set[str]) -> None:
        """The households of these RICs, read once per batch."""
        if missing := {r for r in rics if r not in self._household_of}:
            self._household_of.update(dict.fromkeys(missing))
            self._household_of.update(self.store.households(missing))

    def _blocks(self, mention: matching.Mention) -> list[tuple[str, matching.Mention]]:
        """The persons sharing a blocking key with the mention: stored ones (as their source rows describe
        them, with what the batch adds) and those the batch made."""
        block = block_of(mention)
        if block not in self._candidates:
            self._read_candidates([block])
        stored = self._candidates[block]
        keys = block[0]
        self._describe(set(stored))
        found = {pid: self._described[pid] for pid in stored if pid in self._described}
        in_batch = {pid for pid in found if pid in self._batch_persons}
        for pid in set().union(*(self._batch_keys.get(k, set()) for k in keys)) | in_batch:
            found[pid] = combine(self._batch_persons[pid], found.get(pid))
        return sorted(found.items())

    def _read_candidates(self, wanted: list[Block]) -> None:
        wanted = [w for w in dict.fromkeys(wanted) if w not in self._candidates]
        if wanted:
            for block, ids in zip(wanted, self.store.candidate_ids(wanted)):
                self._candidates[block] = ids

    def _describe(self, ids: set[str]) -> None:
        """Read what the stored source rows of these persons say (one read for all)."""
        missing = ids - self._read
        if not missing:
            return
        self._read |= missing
        records = list(self.store.person_records(missing))
        parents = {r for _, record in records for r in (record.get("mother_ric"), record.get("father_ric")) if r}
        self._read_households(parents)
        for cid, record in records:
            mention = self._with_parents_households(self._mention(record, dating=False), record)
            known = self._described.get(cid)
            self._described[cid] = combine(known, mention) if known else mention
        for cid in (c for c in missing if c in self._described):
            self._described[cid] = dated(self._described[cid])

    def _forget(self, ids: set[str]) -> None:
        for cid in ids:
            self._described.pop(cid, None)
        self._read -= ids
        self._candidates.clear()

    def _prefetch_people(self, items: list[Incoming], state: dict[SourceRef, State], by_ric: dict[str, str]) -> None:
        """What resolving the batch's persons reads from the library, in a few reads rather than a few per
        person: the candidates of every mention that may need matching, their source rows, the households
        of the parents named, the frequencies of the names."""
        wanted: dict[Block, None] = {}   # in the batch's order
        fresh: set[str] = set()   # persons a valid RIC new to the library will make (their ids)
        parents: set[str] = set()
        names: set[str] = set()
        for item in items:
            if item.entity != "person" or item.record.get("retracted"):
                continue
            mention, previous = self._mention(item.record), state.get(item.source)
            self._item_mentions[id(item)] = mention
            if (mention.valid_ric and mention.valid_ric in by_ric) or (previous is not None and sticky(previous)):
                continue
            if mention.valid_ric:
                fresh.add(mention.valid_ric)
            wanted[block_of(mention)] = None
            names |= mention.names
            parents.update(r for r in (item.record.get("mother_ric"), item.record.get("father_ric")) if r)
        if wanted:
            self._read_candidates(list(wanted))
        self._describe(fresh | {c for block in wanted for c in self._candidates[block]})
        self._read_households(parents)
        self._count_names(names)

    def _remember(self, cid: str, mention: matching.Mention) -> None:
        combined = combine(self._batch_persons[cid], mention) if cid in self._batch_persons else mention
        self._batch_persons[cid] = combined
        for k in matching.keys(mention):
            self._batch_keys[k].add(cid)
            self._new_keys.add((k, cid))
