import json

import pytest

from kintsmesh.registry.catalog import (IncompatibleSchema, InvalidSchema, SchemaCatalog, UnknownSchema, config_record,
                                        describe, load)
from kintsmesh.registry.codec import UndecodableMessage, decode, encode

SUBJECT = "gldm.household.candidates-value"
V1 = {"type": "record", "name": "Household", "namespace": "gov.gldm",
      "fields": [{"name": "hh", "type": "string"}, {"name": "members", "type": "int"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "district", "type": ["null", "string"], "default": None}]}
V3_NO_DEFAULT = {**V1, "fields": [*V2["fields"], {"name": "street", "type": "string"}]}


def catalog_with(*schemas, subject=SUBJECT):
    catalog = SchemaCatalog()
    for schema in schemas:
        catalog.apply(catalog.candidate(subject, schema).record())
    return catalog


def test_round_trip_in_the_confluent_wire_format():
    catalog = catalog_with(V1)
    v1 = catalog.latest(SUBJECT)
    data = encode(v1, {"hh": "440300000001", "members": 3})
    assert data[0] == 0 and int.from_bytes(data[1:5], "big") == v1.id == 1
    assert data[5:] == b"\x18440300000001\x06"   # Avro binary: zig-zag length 12, the string, zig-zag 3
    assert decode(data, catalog) == {"hh": "440300000001", "members": 3}


def test_old_data_is_read_with_the_new_schema():
    catalog = catalog_with(V1, V2)
    v1, v2 = catalog.subjects[SUBJECT]
    assert (v1.version, v2.version, v1.id, v2.id) == (1, 2, 1, 2)
    old = encode(v1, {"hh": "h1", "members": 2})
    assert decode(old, catalog, reader=v2) == {"hh": "h1", "members": 2, "district": None}


def test_one_schema_one_id_across_subjects_and_registering_twice_is_the_same_version():
    catalog = catalog_with(V1, V2)
    catalog.apply(catalog.candidate("other-value", {**V1, "fields": list(reversed(V1["fields"]))}).record())
    catalog.apply(catalog.candidate("copy-value", json.loads(json.dumps(V2, indent=4))).record())
    assert catalog.latest("copy-value").id == 2                  # same schema, key order and whitespace aside
    assert catalog.latest("other-value").id == 3                 # field order matters in Avro
    assert catalog.candidate(SUBJECT, V1) == catalog.version(SUBJECT, 1)   # an older version: found, not re-added


def test_levels_backward_forward_full_and_transitive():
    catalog = catalog_with(V1)
    with pytest.raises(IncompatibleSchema, match="BACKWARD"):
        catalog.candidate(SUBJECT, V3_NO_DEFAULT)                # new readers cannot read old data
    catalog.apply(config_record(SUBJECT, "FORWARD")[1])
    assert catalog.candidate(SUBJECT, V3_NO_DEFAULT).version == 2   # old readers ignore the new fields
    catalog.apply(config_record(SUBJECT, "FULL")[1])
    with pytest.raises(IncompatibleSchema, match="FULL"):
        catalog.candidate(SUBJECT, V3_NO_DEFAULT)
    catalog.apply(config_record(SUBJECT, "NONE")[1])
    assert catalog.candidate(SUBJECT, {**V1, "fields": [{"name": "hh", "type": "long"}]}).version == 2
    catalog.apply(config_record(SUBJECT, None)[1])               # back to the global level
    assert catalog.level(SUBJECT) == "BACKWARD"
    catalog.apply(config_record(None, "NONE")[1])
    assert catalog.level(SUBJECT) == "NONE" and catalog.level("anything") == "NONE"
    with pytest.raises(InvalidSchema):
        config_record(SUBJECT, "SIDEWAYS")


def test_transitive_checks_every_version_not_only_the_latest():
    # v1 has street (string); v2 drops it; v3 brings it back as an int: fine against v2, not against v1
    base = {"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}]}
    with_street = {**base, "fields": [*base["fields"], {"name": "street", "type": "string", "default": ""}]}
    back_as_int = {**base, "fields": [*base["fields"], {"name": "street", "type": "int", "default": 0}]}
    catalog = catalog_with(with_street, base)
    assert catalog.candidate(SUBJECT, back_as_int).version == 3
    catalog.apply(config_record(SUBJECT, "BACKWARD_TRANSITIVE")[1])
    with pytest.raises(IncompatibleSchema, match="version 1"):
        catalog.candidate(SUBJECT, back_as_int)


def test_replaying_a_duplicate_version_keeps_the_first():
    catalog = catalog_with(V1)
    catalog.apply(describe(SUBJECT, 1, 9, V2).record())
    assert catalog.latest(SUBJECT).schema == V1 and 9 not in catalog.by_id


def test_invalid_schemas_garbage_and_unknown_ids_are_clear_errors():
    with pytest.raises(InvalidSchema, match="not a valid Avro schema"):
        load('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "strnig"}]}')
    assert load('"string"') == "string"
    catalog = catalog_with(V1)
    with pytest.raises(UndecodableMessage, match="Confluent wire format"):
        decode(b'{"json": true}', catalog)
    with pytest.raises(UnknownSchema, match="id 7"):
        decode(b"\x00\x00\x00\x00\x07\x02", catalog)


class FlakyRegistry:
    """Confluent's client as the worker sees it while the registry restarts: two refused connections."""

    def __init__(self, schema_str: str) -> None:
        self.calls = 0
        self.schema_str = schema_str

    def get_schema(self, schema_id):
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        self.calls += 1
        if self.calls <= 2:
            raise ConnectionError("connection refused")
        if schema_id != 1:
            raise SchemaRegistryError(404, 40403, "Schema not found")
        return type("Schema", (), {"schema_str": self.schema_str})()


def test_a_worker_waits_out_a_registry_restart_and_names_an_unknown_id(monkeypatch, tmp_path):
    from kintsmesh.registry import client as client_module
    from kintsmesh.settings import Settings

    monkeypatch.setattr(client_module.time, "sleep", lambda s: None)
    registry = client_module.SchemaRegistry(Settings(stack_dir=tmp_path, registry_url="http://registry.invalid"))
    registry.client = FlakyRegistry(json.dumps(V1))
    data = encode(describe(SUBJECT, 1, 1, V1), {"hh": "h1", "members": 2})
    assert decode(data, registry) == {"hh": "h1", "members": 2} and registry.client.calls == 3
    assert decode(data, registry) and registry.client.calls == 3    # cached: one request per id
    with pytest.raises(UnknownSchema, match="id 9"):
        registry.schema(9)
