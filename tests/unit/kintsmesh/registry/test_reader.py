"""The generated Avro readers (``kintsmesh.registry.reader``) read what fastavro reads, and where they give a
message up, ``codec.decode`` gives fastavro's record or fastavro's refusal. Held on every GLDM schema over
records fastavro's own generator draws, over the normalize stage's candidates of simulated department rows,
over messages cut, grown or with a byte changed, and over another writer's sized array blocks."""

from __future__ import annotations

import io
import random
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kintsmesh.registry.codec import HEADER, MAGIC, UndecodableMessage, decode
from kintsmesh.registry.generated import NotMine
from kintsmesh.registry.reader import compile_reader, long_at
from kintsmesh.registry.writer import varint
from tests.unit.kintsmesh.registry.test_writer import TOP, VERSIONS, simulated_candidates


class Registry:
    def schema(self, schema_id: int) -> Any:
        return next(v for v in VERSIONS.values() if v.id == schema_id)


def message(name: str, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(HEADER.pack(MAGIC, VERSIONS[name].id))
    fastavro.schemaless_writer(out, VERSIONS[name].parsed, record)
    return out.getvalue()


def fastavro_outcome(name: str, data: bytes) -> Any:
    try:
        return fastavro.schemaless_reader(io.BytesIO(data[HEADER.size:]), VERSIONS[name].parsed, None)
    except Exception as exc:  # noqa: BLE001 - fastavro's refusals are of many kinds
        return ("refused", type(exc).__name__)


def assert_read_as_fastavro(name: str, data: bytes) -> None:
    expected = fastavro_outcome(name, data)
    try:
        got = decode(data, Registry())
    except UndecodableMessage as exc:
        assert isinstance(expected, tuple), (name, data, exc)
        assert type(exc.__cause__).__name__ == expected[1]
        return
    assert got == expected, (name, data)


def test_every_gldm_schema_gets_a_generated_reader() -> None:
    for name in TOP:
        assert compile_reader(VERSIONS[name].parsed) is not None, name


@pytest.mark.parametrize("name", TOP)
def test_fastavros_generated_records_are_read_as_fastavro_reads_them(name: str) -> None:
    reader = compile_reader(VERSIONS[name].parsed)
    assert reader is not None
    for record in generate_many(VERSIONS[name].schema, 300):
        data = message(name, record)
        expected = fastavro_outcome(name, data)
        assert reader(data, HEADER.size) == expected   # read by the generated reader itself, not handed over
        assert decode(data, Registry()) == expected


def test_the_normalize_stages_candidates_are_read_by_the_generated_readers_as_fastavro_reads_them() -> None:
    for name, record in simulated_candidates(23):
        data = message(name, record)
        reader = compile_reader(VERSIONS[name].parsed)
        assert reader is not None and reader(data, HEADER.size) == fastavro_outcome(name, data)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(TOP), st.integers(0, 10_000), st.data())
def test_a_cut_grown_or_changed_message_is_read_or_refused_as_fastavro_does(name: str, seed: int,
                                                                          data: st.DataObject) -> None:
    record = next(iter(generate_many(VERSIONS[name].schema, 1)))
    body = bytearray(message(name, record))
    rng = random.Random(seed)
    how = data.draw(st.sampled_from(["cut", "grow", "byte", "bytes"]))
    if how == "cut":
        del body[rng.randrange(HEADER.size, len(body) + 1):]
    elif how == "grow":
        body += bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=8)))
    else:
        for _ in range(1 if how == "byte" else rng.randint(2, 6)):
            if len(body) > HEADER.size:
                body[rng.randrange(HEADER.size, len(body))] = data.draw(st.integers(0, 255))
    assert_read_as_fastavro(name, bytes(body))


def test_another_writers_sized_array_blocks_are_read_by_fastavro() -> None:
    """The Avro spec lets a writer give a block's count negated, followed by its size in bytes (Java's
    buffered writers do): the generated reader leaves such a message to fastavro, which reads it."""
    name = "gov.gldm.Person"
    record = {**next(iter(generate_many(VERSIONS[name].schema, 1))), "findings": ["ric_check_digit", "name_trimmed"]}
    plain, one = message(name, {**record, "findings": []}), message(name, {**record, "findings": ["x"]})
    start = next(i for i, (a, b) in enumerate(zip(plain, one)) if a != b)   # where the findings are written
    assert plain[start] == 0   # an empty array: its end marker alone
    items = b"".join(varint(len(f.encode())) + f.encode() for f in record["findings"])
    data = plain[:start] + varint(-len(record["findings"])) + varint(len(items)) + items + b"\x00" + plain[start + 1:]
    reader = compile_reader(VERSIONS[name].parsed)
    assert reader is not None
    with pytest.raises(Exception):
        reader(data, HEADER.size)
    read = decode(data, Registry())
    assert read == fastavro_outcome(name, data) and read["findings"] == record["findings"]


@pytest.mark.parametrize("name", TOP)
def test_messages_with_bytes_changed_at_random_are_read_or_refused_as_fastavro_does(name: str) -> None:
    """Seeded, so that every run covers the same 1,000 messages per schema (the hypothesis test above draws
    new ones each run: it found a ten-byte long beyond 64 bits, which fastavro cuts to its low 64 bits)."""
    rng = random.Random(name)
    for record in generate_many(VERSIONS[name].schema, 1000):
        body = bytearray(message(name, record))
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(HEADER.size, len(body))] = rng.randrange(256)
        assert_read_as_fastavro(name, bytes(body))


def test_a_long_beyond_64_bits_is_left_to_fastavro() -> None:
    for extreme in (2**63 - 1, -(2**63)):   # the largest and smallest longs: read here
        assert long_at(varint(extreme), 0) == (extreme, 10)
    with pytest.raises(NotMine):
        long_at(bytes([0xFF] * 9 + [0x7F]), 0)
