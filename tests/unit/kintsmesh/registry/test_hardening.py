"""The registry refuses what the Avro specification refuses, resolves what it resolves, and never lets an
unknown level or a poison record turn its checks off."""

import json
import time

import fastavro
import pytest

from kintsmesh.registry.catalog import InvalidSchema, SchemaCatalog, load, problems_at
from kintsmesh.registry.compatibility import backward_incompatibilities

RECORD = {"type": "record", "name": "Person", "namespace": "gov.gldm",
          "fields": [{"name": "ric", "type": "string"},
                     {"name": "hash", "type": {"type": "fixed", "name": "Md5", "size": 16}}]}


def test_a_namespace_only_change_resolves_as_the_spec_says_and_fastavro_reads_it():
    moved = {**RECORD, "namespace": "city.gldm"}
    assert backward_incompatibilities(moved, RECORD) == []
    written = fastavro.parse_schema(RECORD)
    import io
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, written, {"ric": "x", "hash": b"0" * 16})
    buffer.seek(0)
    assert fastavro.schemaless_reader(buffer, written, fastavro.parse_schema(moved))["ric"] == "x"


def test_renaming_a_fixed_type_is_refused():
    renamed = json.loads(json.dumps(RECORD).replace('"Md5"', '"Digest"'))
    assert any("fixed renamed from" in p for p in backward_incompatibilities(renamed, RECORD))
    aliased = json.loads(json.dumps(RECORD).replace('"name": "Md5"', '"name": "Digest", "aliases": ["Md5"]'))
    assert backward_incompatibilities(aliased, RECORD) == []


def test_a_large_enum_is_checked_in_milliseconds():
    symbols = [f"S{i}" for i in range(20_000)]
    old = {"type": "enum", "name": "Code", "symbols": symbols}
    new = {"type": "enum", "name": "Code", "symbols": symbols[:-1]}
    started = time.perf_counter()
    problems = backward_incompatibilities(new, old)
    assert problems and "S19999" in problems[0]
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize("schema, why", [
    ({"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "string"}]}, "twice"),
    ({"type": "record", "name": "R", "namespace": "gov-gldm", "fields": []}, "invalid namespace"),
    ({"type": "record", "name": "my-record", "fields": []}, "invalid name"),
    ({"type": "record", "name": "R", "fields": [{"name": "a-b", "type": "int"}]}, "invalid field name"),
    ({"type": "enum", "name": "E", "symbols": ["A", "A"]}, "repeats a symbol"),
    ({"type": "enum", "name": "E", "symbols": ["A", "b c"]}, "invalid symbol"),
])
def test_invalid_avro_is_refused(schema, why):
    with pytest.raises(InvalidSchema) as caught:
        load(json.dumps(schema))
    assert why in str(caught.value)


def test_deep_or_huge_schemas_are_refused_before_anything_recurses_over_them():
    deep = "string"
    for _ in range(200):
        deep = {"type": "array", "items": deep}
    with pytest.raises(InvalidSchema, match="nested deeper"):
        load(json.dumps(deep))
    with pytest.raises(InvalidSchema, match="nested too deep|not a valid"):
        load("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidSchema, match="characters"):
        load(json.dumps({"type": "enum", "name": "E", "symbols": ["S" * 10] * 100_000}))


def test_an_unknown_level_never_reads_as_no_checks():
    catalog = SchemaCatalog()
    with pytest.raises(InvalidSchema):
        catalog.apply({"kind": "config", "subject": None, "compatibility": "LAX"})
    assert catalog.level("any") == "BACKWARD"
    with pytest.raises(InvalidSchema):
        problems_at("LAX", RECORD, [])
