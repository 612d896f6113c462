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

from streams.resolve.identity import Incoming, Kind, Linked, SourceRef, State


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

    def candidate_ids(self, wanted: list[frozenset[str]]) -> list[list[str]]:
        """For each set of blocking keys, the persons indexed under them: at most ``matching.BLOCK_LIMIT``,
        those sharing the most keys first, then in ``matching.rank`` order (deterministic); a name key
        (``matching.is_name_key``) is left out when more than ``matching.COMMON_NAME_KEY`` persons share it."""

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
