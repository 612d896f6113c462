"""What the resolver reads from and writes to the resource library: a small interface, two implementations.

``IdentityStore`` is everything identity resolution needs to know or record; the resolver
(``streams.resolve.resolver``) decides in pure code over it. The resource library implements it in
PostgreSQL (``sinks.library.identity.PostgresIdentityStore``); ``streams.resolve.memory`` implements it
in memory, for unit tests and for resolving a list of records with no database at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any, Protocol

from streams.resolve import matching
from streams.resolve.identity import BlockParams, Incoming, Kind, Linked, SourceRef, State


class IdentityStore(Protocol):
    # ------------------------------------------------------------------ reads

    def contributions(self, refs: set[SourceRef]) -> dict[SourceRef, State]:
        """The merged state of each of these source rows that has one."""

    def queued_persons(self) -> set[str]:
        """Persons resolved and not merged yet (their golden record is still to be recomputed)."""

    def person_records(self, ids: set[str]) -> Iterable[tuple[str, dict[str, Any]]]:
        """(person id, GLDM record) of every live source row linked to these persons."""

    def persons_by_ric(self, rics: set[str]) -> dict[str, str]:
        """Golden persons by valid RIC."""

    def legal_entity_by_uscc(self, uscc: str) -> str | None:
        """The legal entity, golden or resolved and not merged yet, that holds this USCC."""

    def blocks(self, wanted: list[BlockParams]) -> list[dict[str, matching.Mention]]:
        """For each of ``wanted``, the golden persons in its blocks (a bounded number per block)."""

    def households(self, rics: set[str]) -> dict[str, str]:
        """The household number of each golden person with one of these RICs (those that have one)."""

    def holds_other_row(self, canonical_id: str, kind: Kind, primary_key: str) -> bool:
        """Whether the person holds a live source row of ``kind`` other than ``primary_key``."""

    def holds_other_ric(self, canonical_id: str, ric: str | None) -> bool:
        """Whether the person holds a live source row with a valid RIC other than ``ric``."""

    def orphans(self, name_key: str | None, birth: date | None, ric_body: str | None) -> set[str]:
        """Persons made without a usable RIC (P~...) of that name key and birth date (or none), or whose
        source rows carry a RIC starting with ``ric_body``."""

    def open_reviews_born_on(self, births: set[date]) -> list[tuple[int, SourceRef, dict[str, Any]]]:
        """Open review items of persons born on one of these days: (review id, source row, record)."""

    # ------------------------------------------------------------------ writes

    def write_contributions(self, writes: Iterable[tuple[Incoming, Linked]]) -> None:
        """Record each source row's latest record and link."""

    def queue_review(self, ref: SourceRef, entity: str, candidates: list[dict[str, Any]]) -> None:
        """Open (or reopen) a review item for the source row."""

    def move_person(self, orphan: str, person: str, score: float | None, evidence: dict[str, Any]) -> None:
        """A late match: every source row of ``orphan`` now belongs to ``person``."""

    def link_reviewed(self, review_id: int, ref: SourceRef, canonical_id: str, score: float | None,
                      evidence: dict[str, Any]) -> None:
        """An open review item decided again by new evidence: link its source row, close the item."""
