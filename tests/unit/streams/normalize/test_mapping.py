"""Every department mapping, fed the simulator's rows as Debezium would carry them."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import date, datetime

import fastavro
import pytest

from connect.connectors import tables
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.debezium import change_event
from kintsmesh.simulate.departments import DepartmentViews, initial_rows
from streams.normalize import gldm
from streams.normalize.event import normalize_event
from streams.normalize.mapping import mappings

TODAY = date(2026, 11, 27)


def event(row, op="c"):
    return change_event(row, op)


@pytest.fixture(scope="module")
def rows():
    city = build_city(21, 1500, TODAY)
    return initial_rows(city, DepartmentViews(city, random.Random(22), dirty_rate=0.05))


def test_every_captured_table_has_a_mapping():
    settings = Settings()
    captured = {(d, t) for d in DEPARTMENTS for t in tables(settings, d)}
    assert captured == set(mappings())


def test_every_row_is_accounted_for_and_every_candidate_fits_its_avro_schema(rows):
    outcomes = Counter()
    parsed = {e: fastavro.parse_schema(gldm.schema(name)) for e, name in gldm.RECORD_NAMES.items()}
    for row in rows:
        result = normalize_event(f"raw.{row.database}.public.{row.table}", event(row), 1795800000200)
        assert (result.rejection is None) == bool(result.candidates), (row.table, result)
        outcomes["rejected" if result.rejection else "normalized"] += 1
        for candidate in result.candidates:
            assert fastavro.validation.validate(candidate.record, parsed[candidate.entity], raise_errors=True)
    assert outcomes["normalized"] + outcomes["rejected"] == len(rows)
    assert outcomes["rejected"] / len(rows) < 0.05  # dirt mostly flows, flagged; only the impossible is rejected


def test_person_from_the_police_registry(rows):
    row = next(r for r in rows if r.table == "rk_jbxx" and r.values["gmsfhm"] == r.truth["person"])
    result = normalize_event("raw.police.public.rk_jbxx", event(row), 1)
    person = next(c for c in result.candidates if c.entity == "person")
    assert person.key == row.truth["person"]
    assert person.record["birth_date"] == datetime.strptime(row.values["csrq"], "%Y%m%d").date()
    assert person.record["address"]["district"].endswith("区")
    assert person.record["provenance"]["commit_lsn"] == 123000
    assert person.record["provenance"]["change_lsn"] == 123456
    assert person.record["provenance"]["primary_key"] == row.values["rkbh"]
    # the commit time travels with the result for the commit -> raw topic lag histogram
    assert result.committed_ms == person.record["provenance"]["committed_at"] is not None


def test_dirty_ids_flow_flagged_and_keyed_by_the_source_row(rows):
    row = next(r for r in rows if r.table == "rk_jbxx")
    dirty = row.values | {"gmsfhm": row.truth["person"][:17] + ("0" if row.truth["person"][17] != "0" else "1")}
    result = normalize_event("raw.police.public.rk_jbxx", event(type(row)(row.database, row.table, dirty, row.truth)), 1)
    person = next(c for c in result.candidates if c.entity == "person")
    assert "ric:bad_check_character" in person.record["findings"]
    assert person.key.startswith("police/rk_jbxx/")


def test_delete_is_a_retraction_from_the_before_image(rows):
    row = next(r for r in rows if r.table == "fw_jbxx")
    result = normalize_event("raw.housing.public.fw_jbxx", event(row, op="d"), 1)
    assert result.retraction and result.candidates[0].record["retracted"] is True
    assert result.candidates[0].key == row.values["fwbm"]


def test_schema_drift_unknown_columns_counted_missing_required_rejected(rows):
    row = next(r for r in rows if r.table == "hy_djxx")
    added = json.loads(event(row))
    added["after"]["new_column"] = "x"
    result = normalize_event("raw.civil_affairs.public.hy_djxx", json.dumps(added).encode(), 1)
    assert result.unknown_columns == {"new_column"} and result.candidates
    dropped = json.loads(event(row))
    del dropped["after"]["nf_xm"]
    result = normalize_event("raw.civil_affairs.public.hy_djxx", json.dumps(dropped).encode(), 1)
    assert result.rejection.reason == "missing_required_column"


@pytest.mark.parametrize("value, reason", [(b"not json", "undecodable_event"), (b'{"op": "c"}', "undecodable_event")])
def test_garbage_is_rejected_not_raised(value, reason):
    assert normalize_event("raw.police.public.rk_jbxx", value, 1).rejection.reason == reason


def test_impossible_date_is_rejected_with_the_field(rows):
    row = next(r for r in rows if r.table == "rk_jbxx")
    bad = type(row)(row.database, row.table, row.values | {"csrq": "20230230"}, row.truth)
    rejection = normalize_event("raw.police.public.rk_jbxx", event(bad), 1).rejection
    assert (rejection.reason, rejection.field, rejection.primary_key) == ("impossible_date", "csrq", row.values["rkbh"])


def test_the_documented_example_mapping_loads_and_applies(tmp_path):
    import re

    from kintsmesh.settings import REPO_ROOT
    from streams.normalize.compiled import apply
    from streams.normalize.mapping import load_mapping

    guide = (REPO_ROOT / "docs" / "adding-a-department.md").read_text()
    example = re.search(r"```yaml\n(.*?)```", guide, re.S).group(1)
    path = tmp_path / "civil_affairs.sy_djxx.yaml"
    path.write_text("\n".join(line[3:] if line.startswith("   ") else line for line in example.splitlines()))
    mapping = load_mapping(path)
    applied = apply(mapping, {"djid": 1, "syr_sfzh": "11010519491231002X", "syr_xm": "王芳", "bsyr_sfzh": None,
                              "bsyr_xm": "王小宝", "djrq": "2026-01-05"}, provenance={}, retracted=False)
    (candidate,) = applied.candidates
    assert candidate.record["type"] == "PARENT_OF" and candidate.record["valid_from"] == date(2026, 1, 5)


def test_a_mapping_with_an_unknown_standardizer_or_dictionary_is_refused_at_load(tmp_path):
    from streams.normalize.mapping import MappingError, load_mapping

    for spec in ("{from: xm, as: shout}", "{from: xb, as: code, codes: colours}"):
        path = tmp_path / "police.x.yaml"
        path.write_text(f"source: {{department: police, table: x, key: [id]}}\noutputs:\n  - entity: person\n"
                        f"    fields:\n      name: {spec}\n")
        with pytest.raises(MappingError):
            load_mapping(path)


def test_a_timestamptz_becomes_the_local_date():
    from streams.normalize.mapping import STANDARDIZERS

    # born 05:30 in Shenzhen on 1 March = 21:30 UTC on 29 February, as Debezium sends TIMESTAMPTZ
    assert STANDARDIZERS["timestamp_date"]("2020-02-29T21:30:00Z").value == date(2020, 3, 1)


def test_outputs_of_one_entity_carry_distinct_roles():
    for mapping in mappings().values():
        roles = [(o.entity, o.role) for o in mapping.outputs]
        assert len(set(roles)) == len(roles), mapping.table
    marriage = mappings()[("civil_affairs", "hy_djxx")]
    assert {o.role for o in marriage.outputs if o.entity == "person"} == {"husband", "wife"}


def test_two_outputs_of_one_entity_without_roles_are_refused(tmp_path):
    from streams.normalize.mapping import MappingError, load_mapping
    path = tmp_path / "x.t.yaml"
    path.write_text("source: {department: x, table: t, key: [id]}\noutputs:\n"
                    "  - entity: person\n    fields: {name: {from: a, as: person_name}}\n"
                    "  - entity: person\n    fields: {name: {from: b, as: person_name}}\n")
    with pytest.raises(MappingError, match="distinct roles"):
        load_mapping(path)


@pytest.mark.parametrize("text, named", [
    # a key that should be a list: it loaded as the list of its characters
    ("source: {department: police, table: t, key: rkbh}\noutputs:\n  - entity: person\n    fields: {name: {from: xm}}",
     "source.key"),
    # "false" as text: it was read as true
    ("source: {department: police, table: t, key: [id]}\noutputs:\n  - entity: person\n"
     "    fields: {name: {from: xm, required: 'false'}}", "outputs.0.fields.name.required"),
    # a misspelt key: it was ignored
    ("source: {department: police, table: t, key: [id]}\noutputs:\n  - entity: person\n"
     "    fields: {name: {from: xm, requierd: true}}", "outputs.0.fields.name.requierd"),
    ("source: {department: police, table: t, key: [id]}\noutputs:\n  - entity: persn\n    fields: {name: {from: xm}}",
     "outputs.0.entity"),
    ("source: {department: police, table: t, key: [id]}\noutputs:\n  - entity: person\n    fields: {name: {as: text}}",
     "outputs.0.fields.name"),
    ("source: {department: police, table: t}\noutputs: []", "source.key"),
    ("source: {department: police, table: t, key: [id]}\noutputs: [{entity: person, fields: {name: {from: xm}}}]\n"
     "output_count: 1", "output_count"),
    ("source: [unclosed", "not YAML"),
])
def test_a_malformed_mapping_file_is_refused_naming_the_file_and_the_key(tmp_path, text, named):
    from streams.normalize.mapping import MappingError, load_mapping

    path = tmp_path / "police.t.yaml"
    path.write_text(text)
    with pytest.raises(MappingError) as refused:
        load_mapping(path)
    assert str(refused.value).startswith("police.t.yaml: ") and named in str(refused.value), str(refused.value)


def test_every_shipped_mapping_file_is_valid():
    from streams.normalize.mapping import MAPPINGS_DIR, load_mapping

    files = sorted(MAPPINGS_DIR.glob("*.yaml"))
    assert len(files) == 11
    for path in files:
        load_mapping(path)


def test_a_new_department_declares_its_own_person_identifier(tmp_path):
    """A mapping file declares an identifier (type, issuer, unique); its rows carry it (cleaned), and the
    resolver links two rows without a RIC on it, and keeps apart two of one name with two passports. (That
    the identifiers fit the Avro schema: the shipped hrss mapping declares one, checked with every row above.)"""
    from streams.normalize.compiled import apply
    from streams.normalize.mapping import MappingError, load_mapping
    from streams.resolve.memory import resolve_records

    path = tmp_path / "exit_entry.passport.yaml"
    path.write_text("source: {department: exit_entry, table: passport, key: [id]}\noutputs:\n  - entity: person\n"
                    "    identifiers:\n      - {from: hzhm, type: passport, issuer: CHN, unique: true}\n"
                    "    fields:\n      name: {from: xm, as: person_name, required: true}\n"
                    "      gender: {from: xb, as: code, codes: gender}\n")
    mapping = load_mapping(path)
    rows = [{"id": 1, "hzhm": " e１２３４５６７８ ", "xm": "张伟", "xb": "1"}, {"id": 2, "hzhm": "E12345678", "xm": "张玮"},
            {"id": 3, "hzhm": "E87654321", "xm": "张伟", "xb": "1"}]
    records = [apply(mapping, row, {"department": "exit_entry", "table": "passport", "primary_key": str(row["id"])},
                     retracted=False).candidates[0].record for row in rows]
    assert records[0]["identifiers"] == [{"type": "passport", "issuer": "CHN", "value": "E12345678", "unique": True}]
    first, second, third = resolve_records(records)
    assert second.canonical_id == first.canonical_id and "identifier:unique_exact" in second.candidates[0]["evidence"]
    assert third.canonical_id != first.canonical_id   # same name, another passport: another person
    path.write_text(path.read_text().replace("unique: true", "unique: maybe"))
    with pytest.raises(MappingError, match="unique"):
        load_mapping(path)
