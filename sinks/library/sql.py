"""Small SQL helpers of the library writers: bulk upserts through COPY, array literals, timestamps."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

import psycopg


def bulk_upsert(conn: psycopg.Connection[Any], table: str, columns: tuple[str, ...], rows: list[tuple[Any, ...]],
                conflict: tuple[str, ...] = ()) -> None:
    """COPY rows into a per-transaction staging table, then one INSERT ... ON CONFLICT DO UPDATE."""
    if not rows:
        return
    stage = f"_stage_{table}"
    cols = ", ".join(columns)
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
    with conn.cursor() as cur:
        with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        on_conflict = (f" ON CONFLICT ({', '.join(conflict)}) DO UPDATE SET "
                       + ", ".join(f"{c} = EXCLUDED.{c}" for c in columns if c not in conflict)) if conflict else ""
        cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage}{on_conflict}")
        cur.execute(f"TRUNCATE {stage}")


def text_array(values: Iterable[str | None]) -> str:
    """A text[] literal for ``= ANY(%s::text[])`` (psycopg's list dumper is pure Python and showed in profiles)."""
    return "{" + ",".join("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
                          for v in values) + "}"


def numeric_array(values: Iterable[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def ms_to_dt(ms: Any) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc) if isinstance(ms, (int, float)) else None
