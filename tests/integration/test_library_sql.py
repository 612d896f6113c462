"""``sinks.library.sql.bulk_upsert`` on the stack's PostgreSQL: a live stage's small batch (one INSERT ...
VALUES) and a T+1 chunk (COPY into a staging table, moved by the INSERT) write alike, insert and update."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Jsonb

from kintsmesh.bench.resolve import scratch_library
from sinks.library.sql import SMALL_BATCH, bulk_upsert

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("rows", [3, SMALL_BATCH + 250])
def test_small_and_large_batches_upsert_alike_twice_in_one_transaction(settings, rows):
    with psycopg.connect(scratch_library(settings, "kintsmesh_test_library_sql")) as conn:
        columns, key = ("entity", "canonical_id", "fields"), ("entity", "canonical_id")
        with conn.transaction():
            bulk_upsert(conn, "field_provenance", columns, [("person", f"P{i}", Jsonb({"v": 1})) for i in range(rows)], key)
            bulk_upsert(conn, "field_provenance", columns,   # the second upsert of the transaction updates half
                        [("person", f"P{i}", Jsonb({"v": 2})) for i in range(rows // 2)], key)
        found = dict(conn.execute("SELECT canonical_id, fields->>'v' FROM field_provenance").fetchall())
    assert len(found) == rows
    assert sum(v == "2" for v in found.values()) == rows // 2 and found["P0"] == "2" and found[f"P{rows - 1}"] == "1"
