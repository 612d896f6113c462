"""One Debezium change event -> GLDM candidates, or a rejection for the DLQ. Pure, no I/O.

``c``/``r``/``u`` yield candidates from the ``after`` image; ``d`` yields the same
candidates from the ``before`` image flagged ``retracted`` (withdraw that source
row's contribution). Anything that cannot be normalized is a ``Rejection`` carrying
the reason, the offending field and the source coordinates; nothing is dropped, and
``normalize_event`` never raises: an input nobody foresaw, or a bug of ours, is a
rejection with the reason ``internal_error`` and the exception it raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from streams.normalize.compiled import apply
from streams.normalize.mapping import Candidate, FieldRejected, SourceMapping, mappings
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

    @property
    def snapshot(self) -> bool:
        """A row Debezium read in its initial snapshot: its 'lag' is the initial load's, not live sync's."""
        return any(c.record["provenance"].get("op") == OPS["r"] for c in self.candidates)


def department_of(topic: str) -> str:
    parts = topic.split(".")
    return parts[1] if len(parts) >= 4 else "unknown"  # raw.<dept>.<schema>.<table> (benchmarks use another prefix)


AVRO_LONG = range(-(2**63), 2**63)   # what a position or a timestamp must fit in to travel as Avro


def _lsn(value: Any) -> int | None:
    try:
        lsn = int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, OverflowError):
        return None
    if lsn is not None and lsn not in AVRO_LONG:
        raise Rejected("invalid_source_position", f"LSN {value!r} is not a 64-bit number")
    return lsn


# A commit time is epoch milliseconds from 1970 to the end of year 9999: what an Avro timestamp-millis
# reader can turn back into a time (one of year 0 was written and then could not be read downstream).
COMMIT_MS = range(0, 253_402_300_800_000)


def _commit_ms(value: Any) -> int | None:
    """Debezium's ``source.ts_ms``; ``Rejected`` when it is there and not a plausible commit time."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value in COMMIT_MS:
        return value
    raise Rejected("invalid_commit_time", f"source.ts_ms {value!r:.60} is not epoch milliseconds of years 1970-9999")


def provenance(mapping: SourceMapping, row: dict[str, Any], op: str, source: dict[str, Any], captured_ms: int) -> dict[str, Any]:
    try:
        sequence = orjson.loads(source.get("sequence") or "[]")
    except (TypeError, ValueError):
        sequence = []
    if not isinstance(sequence, list):
        sequence = []
    return {
        "department": mapping.department,
        "table": mapping.table,
        "primary_key": mapping.primary_key(row),
        "op": OPS[op],
        "commit_lsn": _lsn(sequence[0]) if sequence else None,
        "change_lsn": _lsn(source.get("lsn")),
        "committed_at": _commit_ms(source.get("ts_ms")),
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
        return _normalize(department, value, captured_ms, catalog)
    except Exception as exc:  # noqa: BLE001 - nothing escapes: an unforeseen input reaches the DLQ with its cause
        return Normalized(department, rejection=Rejection(department, None, None, "internal_error", None,
                                                          f"{type(exc).__name__}: {exc}"[:300]))


def _normalize(department: str, value: bytes, captured_ms: int,
               catalog: dict[tuple[str, str], SourceMapping] | None) -> Normalized:
    try:
        event = orjson.loads(value)
        op, source = event["op"], event["source"]
        table = source["table"]
    except (ValueError, KeyError, TypeError) as exc:
        return Normalized(department, rejection=Rejection(department, None, None, "undecodable_event", None,
                                                          f"not a Debezium change event: {exc!r}"[:300]))
    if not (isinstance(op, str) and isinstance(table, str)):
        return Normalized(department, rejection=Rejection(department, None, None, "undecodable_event", None,
                                                          f"op and source.table must be text: {op!r}, {table!r}"[:300]))
    try:
        committed = _commit_ms(source.get("ts_ms"))
    except Rejected as exc:
        return Normalized(department, table, rejection=Rejection(department, table, None, exc.reason, "source.ts_ms",
                                                                 exc.detail))
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
