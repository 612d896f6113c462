"""The generated Avro writers (``kintsmesh.registry.writer``) write the bytes fastavro writes, and where they do
not take a record, ``codec.encode`` gives fastavro's bytes or fastavro's refusal. Held on every GLDM schema over
records fastavro's own generator draws, over the normalize stage's candidates of simulated department rows,
and over records with one value swapped for a value of another kind."""

from __future__ import annotations

import io
import json
import random
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kintsmesh.registry.catalog import describe
from kintsmesh.registry.codec import HEADER, MAGIC, UnencodableRecord, encode
from kintsmesh.registry.writer import compile_writer
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.departments import DepartmentViews, initial_rows
from kintsmesh.topics import raw_topic
from streams.normalize import gldm
from streams.normalize.event import normalize_event

SCHEMAS = Path(__file__).resolve().parents[4] / "schemas" / "avro"
VERSIONS = {name: describe(f"{name}-value", 1, 40 + i, gldm.schema(name)) for i, name in
            enumerate(sorted(p.name.removesuffix(".avsc") for p in SCHEMAS.glob("*.avsc")))}
# the schemas a message is written with (the others are parts of them, named inside)
TOP = sorted(name for name, v in VERSIONS.items() if name not in ("gov.gldm.Address", "gov.gldm.Provenance"))


def fastavro_outcome(name: str, record: Any) -> Any:
    out = io.BytesIO()
    out.write(HEADER.pack(MAGIC, VERSIONS[name].id))
    try:
        fastavro.schemaless_writer(out, VERSIONS[name].parsed, record)
    except Exception as exc:  # noqa: BLE001 - fastavro's refusals are of many kinds
        return ("refused", type(exc).__name__)
    return out.getvalue()


def assert_as_fastavro(name: str, record: Any) -> Any:
    expected = fastavro_outcome(name, record)
    try:
        got = encode(VERSIONS[name], record)
    except UnencodableRecord as exc:
        assert isinstance(expected, tuple), (name, record, exc)
        assert type(exc.__cause__).__name__ == expected[1]
        return expected
    assert got == expected, (name, record)
    return got


def test_every_gldm_schema_gets_a_generated_writer() -> None:
    for name in TOP:
        assert compile_writer(VERSIONS[name].parsed, b"") is not None, name


@pytest.mark.parametrize("name", TOP)
def test_fastavros_generated_records_are_written_as_fastavro_writes_them(name: str) -> None:
    writer = compile_writer(VERSIONS[name].parsed, HEADER.pack(MAGIC, VERSIONS[name].id))
    assert writer is not None
    for record in generate_many(VERSIONS[name].schema, 300):
        # fastavro's generator draws timestamps as datetimes and dates as dates: both kinds are written here
        expected = fastavro_outcome(name, record)
        assert isinstance(expected, bytes)
        assert encode(VERSIONS[name], record) == expected
        if not any(isinstance(v, datetime) for v in _values(record)):
            assert writer(record) == expected   # written by the generated writer itself, not handed over


def _values(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in _values(v)]
    if isinstance(value, list):
        return [x for v in value for x in _values(v)]
    return [value]


def simulated_candidates(seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The normalize stage's candidates of a simulated city's department rows (a fifth dirty): (record name, record)."""
    city = build_city(seed, 200, date(2026, 6, 1))
    found = []
    for row in initial_rows(city, DepartmentViews(city, random.Random(seed + 1), 0.2)):
        event = {"op": "c", "source": {"table": row.table, "ts_ms": 1_700_000_000_000, "lsn": 5, "sequence": "[\"4\", \"5\"]"},
                 "before": None, "after": row.values}
        result = normalize_event(raw_topic(row.database, row.table), json.dumps(event, default=str).encode(), 1_700_000_000_100)
        found += [(gldm.RECORD_NAMES[c.entity], c.record) for c in result.candidates]
    assert len(found) > 1000
    return found


def test_the_normalize_stages_candidates_are_written_by_the_generated_writers_as_fastavro_writes_them() -> None:
    for name, record in simulated_candidates(21):
        writer = compile_writer(VERSIONS[name].parsed, HEADER.pack(MAGIC, VERSIONS[name].id))
        assert writer is not None and writer(record) == fastavro_outcome(name, record)


OTHER = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=5)
         | st.sampled_from(["\ud800", Decimal("1.5"), date(2020, 1, 1), datetime(2020, 1, 1, tzinfo=timezone.utc), b"x",
                            (1, 2), ["a"], {"a": "b"}, {"detail": "d", "full": "f"}, "CREATE"]))


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TOP), st.integers(0, 10_000), st.data())
def test_a_record_with_a_value_of_another_kind_is_written_or_refused_as_fastavro_does(name: str, seed: int,
                                                                                     data: st.DataObject) -> None:
    record = next(iter(generate_many(VERSIONS[name].schema, 1)))
    target, key = _somewhere(record, random.Random(seed))
    if key is None:
        return
    if data.draw(st.booleans()):
        target[key] = data.draw(OTHER)
    else:
        del target[key]   # a missing field: its default, or fastavro's refusal
    assert_as_fastavro(name, record)


def _somewhere(record: dict[str, Any], rng: random.Random) -> tuple[dict[str, Any], str | None]:
    """A dict inside the record (the record itself, a nested record or map) and one of its keys."""
    dicts = [record]
    stack: list[Any] = [record]
    while stack:
        value = stack.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        for child in children:
            if isinstance(child, dict):
                dicts.append(child)
            if isinstance(child, (dict, list)):
                stack.append(child)
    target = rng.choice(dicts)
    return target, rng.choice(sorted(target)) if target else None
