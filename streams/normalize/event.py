"""One Debezium change event -> GLDM candidates, or a rejection for the DLQ. Pure, no I/O.

``c``/``r``/``u`` yield candidates from the ``after`` image; ``d`` yields the same
candidates from the ``before`` image flagged ``retracted`` (withdraw that source
row's contribution). Anything that cannot be normalized is a ``Rejection`` carrying
the reason, the offending field and the source coordinates; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.normalize.mapping import Candidate, FieldRejected, SourceMapping, apply, mappings
from streams.normalize.standardize import Rejected

OPS = {"c": "CREATE", "u": "UPDATE", "d": "DELETE", "r": "SNAPSHOT"}


@dataclass(frozen=True)
class Rejection:
    department: str
    table: str | None
    primary_key: str | None
    reason: str
    field: str | None
    detail: str


@dataclass
class Normalized:
    department: str
    table: str | None = None
    candidates: list[Candidate] = field(default_factory=list)
    retraction: bool = False
    rejection: Rejection | None = None
    unknown_columns: frozenset[str] = frozenset()
    skipped: str | None = None   # e.g. "tombstone": not a change, accounted separately
    committed_ms: int | None = None  # source.ts_ms: the commit in the department database (sync lag)


def department_of(topic: str) -> str:
    parts = topic.split(".")
    return parts[1] if len(parts) >= 4 else "unknown"  # raw.<dept>.<schema>.<table> (benchmarks use another prefix)


def _lsn(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def provenance(mapping: SourceMapping, row: dict[str, Any], op: str, source: dict[str, Any], captured_ms: int) -> dict[str, Any]:
    try:
        sequence = orjson.loads(source.get("sequence") or "[]")
    except (TypeError, ValueError):
        sequence = []
    return {
        "department": mapping.department,
        "table": mapping.table,
        "primary_key": mapping.primary_key(row),
        "op": OPS[op],
        "commit_lsn": _lsn(sequence[0]) if sequence else None,
        "change_lsn": _lsn(source.get("lsn")),
        "committed_at": source.get("ts_ms"),
        "batch_id": None,
        "line": None,
        "captured_at": captured_ms,
    }


def normalize_event(topic: str, value: bytes | None, captured_ms: int,
                    catalog: dict[tuple[str, str], SourceMapping] | None = None) -> Normalized:
    department = department_of(topic)
    if value is None:
        return Normalized(department, skipped="tombstone")
    try:
        event = orjson.loads(value)
        op, source = event["op"], event["source"]
        table = source["table"]
    except (ValueError, KeyError, TypeError) as exc:
        return Normalized(department, rejection=Rejection(department, None, None, "undecodable_event", None,
                                                          f"not a Debezium change event: {exc!r}"[:300]))
    committed = source.get("ts_ms")
    mapping = (catalog or mappings()).get((department, table))
    if mapping is None:
        return Normalized(department, table, committed_ms=committed, rejection=Rejection(
            department, table, None, "no_mapping", None, f"no mapping for {department}.{table} (streams/normalize/mappings)"))
    if op not in OPS:
        return Normalized(department, table, committed_ms=committed, rejection=Rejection(
            department, table, None, "unknown_op", "op", f"Debezium op {op!r} is not c/r/u/d"))
    row = event.get("before") if op == "d" else event.get("after")
    if not isinstance(row, dict):
        return Normalized(department, table, committed_ms=committed, rejection=Rejection(
            department, table, None, "missing_row_image", "before" if op == "d" else "after",
            "the change event carries no row image (REPLICA IDENTITY?)"))
    pk = mapping.primary_key(row)
    try:
        applied = apply(mapping, row, provenance(mapping, row, op, source, captured_ms), retracted=op == "d")
    except FieldRejected as exc:
        return Normalized(department, table, committed_ms=committed,
                          rejection=Rejection(department, table, pk, exc.reason, exc.column, exc.detail))
    except Rejected as exc:
        return Normalized(department, table, committed_ms=committed,
                          rejection=Rejection(department, table, pk, exc.reason, None, exc.detail))
    return Normalized(department, table, applied.candidates, retraction=op == "d", unknown_columns=applied.unknown_columns,
                      committed_ms=committed)
