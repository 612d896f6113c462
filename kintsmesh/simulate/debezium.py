"""Simulator rows as Debezium change events (JsonConverter, schemas off, decimal.handling.mode=string).

For tests and benchmarks of the normalize stage that need raw events without
running capture; the integration tests check the real thing.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from kintsmesh.simulate.departments import Row


def debezium_value(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo:
            return value.isoformat()  # TIMESTAMPTZ: ISO text
        return int((value - datetime(1970, 1, 1)).total_seconds() * 1_000_000)  # TIMESTAMP: epoch micros
    if isinstance(value, date):
        return (value - date(1970, 1, 1)).days  # DATE: days since epoch
    if isinstance(value, (float, Decimal)):
        return str(value)
    return value


def change_event(row: Row, op: str = "c", lsn: int = 123456, commit_ms: int = 1795800000000) -> bytes:
    image = {k: debezium_value(v) for k, v in row.values.items()}
    return json.dumps({
        "before": image if op == "d" else None,
        "after": None if op == "d" else image,
        "source": {"db": row.database, "schema": "public", "table": row.table, "ts_ms": commit_ms,
                   "lsn": lsn, "sequence": f'["{lsn - 456}","{lsn}"]', "snapshot": "false"},
        "op": op, "ts_ms": commit_ms + 100,
    }, ensure_ascii=False).encode()
