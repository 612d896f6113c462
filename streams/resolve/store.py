"""What the resolver reads from and writes to the resource library: a small interface, two implementations.

``IdentityStore`` is everything identity resolution needs to know or record; the resolver
(``streams.resolve.resolver``) decides in pure code over it. The resource library implements it in
PostgreSQL (``sinks.library.identity.PostgresIdentityStore``); ``streams.resolve.memory`` implements it
in memory, for unit tests and for resolving a list of records with no database at all.

Persons are matched on what their source rows say (their contributions), not on the golden records the
merge stage derives from them: a person resolved a moment ago is as findable as one merged last year.
The store keeps each person's blocking keys (``matching.keys`` of every row linked to it) and each open
review item's.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import Any, Protocol

from streams.resolve import matching
from streams.resolve.identity import NO_RIC_PREFIX, Incoming, Kind, Linked, SourceRef, State

Block = tuple[frozenset[str], "str | None"]
"""What the resolver asks the store for: blocking keys, and the valid RIC or person id the block is for
(None: a mention without a valid RIC, which any person may be)."""


def block_of(mention: matching.Mention) -> Block:
    return matching.keys(mention), mention.valid_ric


def may_be(ric: str | None, person_id: str) -> bool:
    """Whether a stored person may be the person of this valid RIC or id (None: of a mention without a
    valid RIC): a person made from another valid RIC (its id is that RIC) is not, and is no candidate."""
    return ric is None or person_id.startswith(NO_RIC_PREFIX) or person_id == ric


class IdentityStore(Protocol):
    # ------------------------------------------------------------------ reads

    def contributions(self, refs: set[SourceRef]) -> dict[SourceRef, State]:
        """The merged state of each of these source rows that has one."""

    def person_records(self, ids: set[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        """(person id, GLDM record) of every live source row linked to these persons."""

    def persons_by_ric(self, rics: set[str]) -> dict[str, str]:
        """Persons by valid RIC (a source row linked to the person carries it, and no finding)."""

    def households(self, rics: set[str]) -> dict[str, str]:
        """The household number a source row gives for each of these valid RICs."""

    def legal_entity_by_uscc(self, uscc: str) -> str | None:
        """The legal entity, golden or resolved and not merged yet, that holds this USCC."""

    def candidate_ids(self, wanted: list[Block]) -> list[list[str]]:
        """For each block, the persons indexed under its keys that ``may_be`` its RIC's: at most
        ``matching.BLOCK_LIMIT``, those sharing the most keys first, then in ``matching.rank`` order
        (deterministic); a name key (``matching.is_name_key``) is left out when more than
        ``matching.COMMON_NAME_KEY`` persons share it."""

    def name_counts(self, names: set[str]) -> tuple[dict[str, int], int]:
        """How many persons are known by each of these names, and how many persons there are."""

    def holds_other_row(self, canonical_id: str, kind: Kind, primary_key: str) -> bool:
        """Whether the person already holds a live source row of ``kind`` other than ``primary_key``."""

    def holds_other_ric(self, canonical_id: str, ric: str | None) -> bool:
        """Whether the person has a live source row with a valid RIC other than ``ric``."""

    def open_reviews(self, keys: set[str]) -> list[tuple[int, SourceRef, dict[str, Any]]]:
        """Open review items of persons sharing one of ``keys``: (review id, source row, record)."""

    # ------------------------------------------------------------------ writes

    def write_contributions(self, writes: Iterable[tuple[Incoming, Linked]]) -> None:
        """Record each source row's latest record and link."""

    def index(self, entries: Iterable[tuple[str, str]]) -> None:
        """Index persons under blocking keys: (key, person id) pairs."""

    def queue_review(self, ref: SourceRef, entity: str, candidates: list[dict[str, Any]], keys: Set[str]) -> None:
        """Open (or reopen) a review item for the source row, findable by its keys."""

    def move_person(self, orphan: str, person: str, score: float | None, evidence: dict[str, Any]) -> None:
        """A late match: every source row of ``orphan`` now belongs to ``person`` (and its keys too)."""

    def link_reviewed(self, review_id: int, ref: SourceRef, canonical_id: str, score: float | None,
                      evidence: dict[str, Any]) -> None:
        """An open review item decided again by new evidence: link its source row, close the item."""
