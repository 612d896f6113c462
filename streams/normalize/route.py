"""Where one raw change event goes: its candidates' Avro messages, or one DLQ record. Never raises.

``route`` is the normalize agent's whole per-event decision, without Faust or a broker: it normalizes
(``normalize_event``), encodes every candidate with its registered schema, and when anything about the
event cannot be carried on (a rejection, a candidate its schema cannot hold, a bug of ours) it sends the
original event to ``dlq.<dept>`` with the reason instead. Whatever the input, exactly one of these
happens: the event is skipped as a tombstone, its candidates are sent, or its DLQ record is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.codec import UnencodableRecord, encode
from streams.normalize.event import Normalized, Rejection, normalize_event

Send = tuple[str, bytes | None, bytes]   # topic, key, value


@dataclass
class Routed:
    result: Normalized
    sends: list[Send] = field(default_factory=list)

    @property
    def rejection(self) -> Rejection | None:
        return self.result.rejection


def _text(value: Any, limit: int = 500) -> str:
    return (value if isinstance(value, str) else repr(value))[:limit]


def rejected_record(rejection: Rejection, topic: str, partition: int, offset: int,
                    key: bytes | None, value: bytes | None) -> dict[str, Any]:
    """A RejectedRecord (schemas/avro/gov.gldm.RejectedRecord.avsc): every text field is text, whatever the
    event carried (a table name that is a number, a key that is a list), so the DLQ record always encodes."""
    return {
        "department": _text(rejection.department), "source_topic": topic, "source_partition": partition,
        "source_offset": offset, "table": None if rejection.table is None else _text(rejection.table),
        "primary_key": None if rejection.primary_key is None else _text(rejection.primary_key),
        "reason": _text(rejection.reason), "field": None if rejection.field is None else _text(rejection.field),
        "detail": _text(rejection.detail), "original_key": key, "original_value": value,
        "rejected_at": int(time.time() * 1000),
    }


def route(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, captured_ms: int,
          versions: dict[str, SchemaVersion], outputs: dict[str, str], dlq: dict[str, str]) -> Routed:
    """The messages to send for one raw event: ``outputs`` maps an entity to its candidates topic, ``dlq``
    a department to its DLQ topic; ``versions`` holds each entity's schema and ``rejected``'s."""
    result = normalize_event(topic, value, captured_ms)
    routed = Routed(result)
    if result.skipped:
        return routed
    if result.rejection is None:
        try:
            routed.sends = [(outputs[c.entity], c.key.encode(), encode(versions[c.entity], c.record))
                            for c in result.candidates]
            return routed
        except UnencodableRecord as exc:
            result.rejection = Rejection(result.department, result.table, None, "unencodable_candidate", None, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug of ours must reach the DLQ, not stop the agent
            result.rejection = Rejection(result.department, result.table, None, "internal_error", None,
                                         f"{type(exc).__name__}: {exc}")
        result.candidates = []
    assert result.rejection is not None
    record = rejected_record(result.rejection, topic, partition, offset, key, value)
    routed.sends = [(dlq[result.department], key, encode(versions["rejected"], record))]
    return routed
