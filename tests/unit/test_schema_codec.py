import pytest

from kintsmesh.registry.catalog import IncompatibleSchema, SchemaCatalog, UnknownSchema, describe
from kintsmesh.registry.codec import MARKER, UndecodableMessage, decode, encode

V1 = {"type": "record", "name": "Household", "namespace": "gov.gldm",
      "fields": [{"name": "hh", "type": "string"}, {"name": "members", "type": "int"}]}
V2 = {**V1, "fields": [*V1["fields"], {"name": "district", "type": ["null", "string"], "default": None}]}


def catalog_with(*schemas):
    catalog = SchemaCatalog()
    for schema in schemas:
        catalog.apply(catalog.candidate("gov.gldm.Household", schema).record())
    return catalog


def test_fingerprint_is_the_avro_spec_crc64():
    # Avro spec / Java SchemaNormalization.parsingFingerprint64("null") = 0x63dd24e7cc258f8a, little-endian on the wire
    assert describe("s", 1, "null").fingerprint == (0x63DD24E7CC258F8A).to_bytes(8, "little")


def test_round_trip_in_single_object_encoding():
    catalog = catalog_with(V1)
    v1 = catalog.latest("gov.gldm.Household")
    data = encode(v1, {"hh": "440300000001", "members": 3})
    assert data[:2] == MARKER and data[2:10] == v1.fingerprint
    assert decode(data, catalog) == {"hh": "440300000001", "members": 3}


def test_old_data_is_read_with_the_new_schema():
    catalog = catalog_with(V1, V2)
    v1, v2 = catalog.subjects["gov.gldm.Household"]
    assert (v1.version, v2.version) == (1, 2)
    old = encode(v1, {"hh": "h1", "members": 2})
    assert decode(old, catalog, reader=v2) == {"hh": "h1", "members": 2, "district": None}


def test_catalog_refuses_an_incompatible_version():
    catalog = catalog_with(V1)
    broken = {**V1, "fields": [{"name": "hh", "type": "long"}, *V1["fields"][1:]]}
    with pytest.raises(IncompatibleSchema, match="string to long"):
        catalog.candidate("gov.gldm.Household", broken)
    assert catalog.candidate("gov.gldm.Household", broken, compatibility="NONE").version == 2


def test_replaying_a_duplicate_version_keeps_the_first():
    catalog = catalog_with(V1)
    catalog.apply(describe("gov.gldm.Household", 1, V2).record())
    assert catalog.latest("gov.gldm.Household").canonical == describe("x", 1, V1).canonical


def test_garbage_and_unknown_fingerprints_are_clear_errors():
    catalog = catalog_with(V1)
    with pytest.raises(UndecodableMessage):
        decode(b'{"json": true}', catalog)
    with pytest.raises(UnknownSchema):
        decode(MARKER + b"\x00" * 8 + b"\x02", catalog)
