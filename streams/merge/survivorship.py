"""Survivorship and source positions: a golden record from its contributions. Pure, no I/O.

A *contribution* is the latest GLDM candidate of one source row (and role) linked
to a golden record. ``survive`` picks each field's value by the authority declared
in ``authority.yaml``, then recency, and reports the values that lost (conflicts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from streams.resolve.matching import birth_from_ric

HERE = Path(__file__).resolve().parent
# Per entity: the candidate field that dates the fact itself (later facts win ties of authority).
EFFECTIVE_FIELD: dict[str, str] = {
    "relationship": "valid_from", "certificate": "issued_date", "legal_entity": "established_date",
}

Position = tuple[int, ...]
EMPTY: tuple[Any, ...] = (None, "", {}, [])   # "no value" in any source


@cache
def authority() -> dict[str, dict[str, tuple[str, ...]]]:
    raw = yaml.safe_load((HERE / "authority.yaml").read_text())
    return {entity: {f: tuple(depts) for f, depts in (fields or {}).items()} for entity, fields in raw.items()}


def position(provenance: dict[str, Any]) -> Position:
    """A source row's position in its own change stream: (commit LSN, change LSN) for CDC,
    (batch date, line) for a T+1 row. Comparable only within one source row."""
    if provenance.get("batch_id"):
        batch_date = int("".join(ch for ch in str(provenance["batch_id"]) if ch.isdigit())[:8] or 0)
        return (1, batch_date, int(provenance.get("line") or 0))
    change = int(provenance.get("change_lsn") or 0)
    commit = int(provenance.get("commit_lsn") or change)
    return (0, commit, change)


def is_stale(incoming: Position, merged: Position | None,
             incoming_ms: int | None = None, merged_ms: int | None = None) -> bool:
    """The same or an older position than what was merged: a replay or a redelivery, a no-op.

    Between a CDC position and a T+1 one (a row captured live and also delivered in an
    extract) LSNs and lines do not compare; the commit time and the extract's cut-off do."""
    if merged is None:
        return False
    if incoming[0] == merged[0]:
        return tuple(incoming) <= tuple(merged)
    return incoming_ms is not None and merged_ms is not None and incoming_ms <= merged_ms


@dataclass(frozen=True)
class Contribution:
    department: str
    table: str
    primary_key: str
    role: str
    record: dict[str, Any]
    position: Position
    committed_ms: int | None = None   # source commit time, epoch ms

    def value(self, name: str) -> Any:
        return self.record.get(name)


@dataclass
class Survived:
    data: dict[str, Any]
    sources: dict[str, Contribution]                     # field -> the contribution its value came from
    conflicts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    committed_ms: int | None = None   # the newest source commit among the contributions

    def suppliers(self, fields: set[str]) -> set[tuple[str, str, str, str]]:
        """The source rows (department, table, key, role) whose values these fields survived from."""
        return {(s.department, s.table, s.primary_key, s.role) for name, s in self.sources.items() if name in fields}


def _rank(entity: str, name: str, department: str) -> int:
    fields = authority().get(entity, {})
    order = fields.get(name) or fields.get("*") or ()
    return order.index(department) if department in order else len(order)


def _recency(entity: str, c: Contribution) -> tuple[Any, ...]:
    effective = c.record.get(EFFECTIVE_FIELD.get(entity, ""))
    return (str(effective or ""), c.committed_ms or 0, c.position)   # effective dates are ISO text


def survive(entity: str, contributions: list[Contribution], fields: list[str]) -> Survived:
    """Each field's surviving value: best authority, then the most recent fact; losers are conflicts."""
    if len(contributions) == 1:   # the common case: one source, nothing to decide
        only = contributions[0]
        values = {name: only.value(name) for name in fields}
        return Survived({n: (None if v in EMPTY else v) for n, v in values.items()},
                        {n: only for n, v in values.items() if v not in EMPTY}, {}, only.committed_ms)
    data: dict[str, Any] = {}
    sources: dict[str, Contribution] = {}
    conflicts: dict[str, list[dict[str, Any]]] = {}
    ordered = sorted(contributions, key=lambda c: _recency(entity, c), reverse=True)
    for name in fields:
        having = [c for c in ordered if c.value(name) not in EMPTY]
        if not having:
            data[name] = None
            continue
        winner = min(having, key=lambda c: _rank(entity, name, c.department))  # min is stable: most recent first
        data[name], sources[name] = winner.value(name), winner
        losers = [{"department": c.department, "table": c.table, "primary_key": c.primary_key, "value": c.value(name)}
                  for c in having if c.value(name) != winner.value(name)]
        if losers:
            conflicts[name] = losers
    committed = [c.committed_ms for c in contributions if c.committed_ms is not None]
    return Survived(data, sources, conflicts, max(committed) if committed else None)


def derive_from_ric(data: dict[str, Any], fields: dict[str, Any]) -> None:
    """A golden person without a birth date or gender takes them from its RIC (GB 11643: digits 7-14, 17)."""
    ric = data.get("ric")
    if not ric:
        return
    born = birth_from_ric(ric)
    if data.get("birth_date") is None and born:
        data["birth_date"] = born.isoformat()
        fields["birth_date"] = {"derived_from": "ric"}
    if data.get("gender") is None and ric[16].isdigit():
        data["gender"] = "1" if int(ric[16]) % 2 else "2"
        fields["gender"] = {"derived_from": "ric"}
