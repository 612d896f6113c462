"""Domain validation as data: lengths before normalization, invisible characters, wrong types, months,
bounded amounts and areas, plausible date windows, identifiers in ASCII only."""

import os
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.normalize import mapping as mapping_module
from streams.normalize import standardize as std
from streams.normalize.mapping import DEFAULT_LIMITS, FieldRejected, MappingError, _rule, _value, load_mapping, mappings
from streams.normalize.mapping_file import FieldSpec


def value(spec: dict, raw, findings=None):
    rule = _rule("target", FieldSpec.model_validate({"from": "col", **spec}))
    return _value(rule, {"col": raw}, findings if findings is not None else [])


def rejected(spec: dict, raw) -> str:
    with pytest.raises(FieldRejected) as caught:
        value(spec, raw)
    assert caught.value.column == "col"
    return caught.value.reason


@pytest.mark.parametrize("raw, month", [("202411", "202411"), ("2024-11", "202411"), ("2024年11月", "202411"),
                                         (202411, "202411")])
def test_months_are_yyyymm(raw, month):
    assert value({"as": "month"}, raw) == month


@pytest.mark.parametrize("raw", ["999999", "000000", "202413", "194912", "2024", "2024-1", "٢٠٢٤١١"])
def test_impossible_months_are_refused(raw):
    assert rejected({"as": "month"}, raw) == "invalid_month"


def test_the_contribution_mapping_bounds_its_amounts_and_months():
    rules = {r.target: r for r in mappings()[("hrss", "sb_jfmx")].outputs[0].fields}
    assert rules["month"].standardizer == "month"
    for target in ("contribution_base", "personal_amount", "employer_amount"):
        rule = rules[target]
        for bad in ("9999999999.99", "-9999999999.99", "-0.01"):
            with pytest.raises(FieldRejected):
                _value(rule, {rule.source: bad}, [])
        assert _value(rule, {rule.source: "1,234.50"}, []) == "1234.50"


@pytest.mark.parametrize("raw, reason", [("-12.5", "out_of_range"), ("0", "out_of_range"), ("250000", "out_of_range"),
                                         ("1E+999999999", "out_of_range"), ("NaN", "not_a_number"),
                                         ("Infinity", "not_a_number"), ("十二", "not_a_number")])
def test_floor_areas_are_positive_and_bounded(raw, reason):
    assert rejected({"as": "area"}, raw) == reason


def test_a_field_may_narrow_the_range_and_dates_have_windows():
    assert rejected({"as": "amount", "max": 100}, "100.01") == "out_of_range"
    assert value({"as": "amount", "min": -5}, "-5") == "-5"
    assert rejected({"as": "timestamp_date"}, "0001-01-01T00:00:00Z") == "out_of_range"
    findings: list[str] = []
    assert value({"as": "timestamp_date"}, "9999-12-31T23:59:59Z", findings) is None   # "no end"
    assert findings == ["target:open_ended"]
    assert rejected({"as": "date", "min": date(2000, 1, 1)}, "1999-12-31") == "out_of_range"


def test_digits_alone_are_a_date_only_as_yyyymmdd():
    assert rejected({"as": "date"}, "201211") == "invalid_date"
    assert rejected({"as": "date"}, "2012-11") == "invalid_date"
    assert rejected({"as": "date"}, "20230230") == "impossible_date"
    assert value({"as": "date"}, "20121101") == date(2012, 11, 1)


def test_identifiers_are_ascii_after_folding_full_width_forms():
    ric = "440305199001011234"
    body = ric[:17] + std.mod_11_2.calc_check_digit(ric[:17])
    assert std.resident_id(body).value == body
    assert std.resident_id(body.translate(str.maketrans("0123456789", "０１２３４５６７８９"))).value == body
    arabic = body[:17].translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")) + body[17]
    assert std.resident_id(arabic) == std.Standardized(None, ("malformed",))
    assert std.social_credit_code("٩" * 18).value is None


@pytest.mark.parametrize("raw", ["王\u200b伟", "王\u202e伟", "王\x00伟", "\ufeff王伟", "王\u2066伟\u2069"])
def test_invisible_characters_are_stripped_with_a_finding_or_refused_where_the_field_says(raw):
    findings: list[str] = []
    assert value({"as": "person_name"}, raw, findings) == "王伟"
    assert findings == ["target:invisible_stripped"]
    assert rejected({"as": "person_name", "invisible": "reject"}, raw) == "invisible_character"
    assert value({"as": "person_name"}, "王伟", findings := []) == "王伟" and findings == []


@pytest.mark.parametrize("raw", [["a", "b"], {"a": 1}, [[[]]]])
def test_a_list_or_object_is_not_a_value(raw):
    assert rejected({"as": "text"}, raw) == "wrong_type"


def test_lengths_are_checked_before_any_normalization_so_hostile_values_cost_nothing(monkeypatch):
    # no standardizer, not even the invisible-character scan, sees a value past its length (was a 50 ms
    # time limit, which a loaded CI host once missed)
    def untouched(*_args):
        raise AssertionError("a value past its length reached normalization")
    monkeypatch.setattr(std, "strip_invisible", untouched)
    for name in mapping_module.STANDARDIZERS:
        monkeypatch.setitem(mapping_module.STANDARDIZERS, name, untouched)
    assert rejected({"as": "person_name"}, "王" + "\u0301" * 16_000) == "value_too_long"
    assert rejected({"as": "text"}, "x" * 1_000_000) == "value_too_long"
    assert rejected({"as": "resident_id"}, "4" * 33) == "value_too_long"
    assert rejected({"as": "text", "max_length": 4}, "12345") == "value_too_long"
    monkeypatch.undo()
    assert value({"as": "text"}, "x" * 256) == "x" * 256


def test_a_mapping_file_with_a_bad_bound_or_policy_names_the_key(tmp_path: Path):
    path = tmp_path / "police.bad.yaml"
    path.write_text("source: {department: police, table: bad, key: [id]}\noutputs:\n  - entity: house\n"
                    "    fields:\n      floor_area: {from: mj, as: area, max: lots, invisible: maybe}\n")
    with pytest.raises(MappingError) as caught:
        load_mapping(path)
    assert "police.bad.yaml" in str(caught.value) and "floor_area.max" in str(caught.value)
    assert "floor_area.invisible" in str(caught.value)


def test_an_insurance_month_must_name_an_insured_person_row():
    from streams.normalize.mapping import identifying_kinds, required_references

    assert required_references()[("hrss", "sb_jfmx", "social_insurance")] == (("insured_no", "insured_no"),)
    assert identifying_kinds("insured_no") == (("hrss", "sb_cbry", "person"),)


def test_a_reference_to_an_identifier_no_person_row_declares_is_a_mapping_error(monkeypatch, tmp_path: Path):
    from streams.normalize import mapping

    path = tmp_path / "hrss.t.yaml"
    path.write_text("source: {department: hrss, table: t, key: [id]}\noutputs:\n  - entity: social_insurance\n"
                    "    fields:\n      insured_no: {from: grbh, resolves: passport_no}\n")
    loaded = load_mapping(path)
    assert loaded.outputs[0].fields[0].resolves == "passport_no"
    monkeypatch.setattr(mapping, "mappings", lambda: {("hrss", "t"): loaded})
    mapping.required_references.cache_clear()
    mapping.identifying_kinds.cache_clear()
    try:
        with pytest.raises(MappingError, match="hrss.t.yaml: field insured_no resolves 'passport_no'"):
            mapping.required_references()
    finally:
        monkeypatch.undo()
        mapping.required_references.cache_clear()
        mapping.identifying_kinds.cache_clear()


EXAMPLES = int(os.environ.get("KINTSMESH_FUZZ_EXAMPLES", "300"))
STANDARDIZERS = sorted(set(DEFAULT_LIMITS) - {"code"})
hostile_text = st.text(st.characters(codec="utf-8"), max_size=400) | st.sampled_from(
    ["9999-12-31", "0001-01-01", "1E+999999", "-0", "201211", "٢٠٢٤١١", "\u202e", "王" + "\u0301" * 300])
hostile = st.none() | st.booleans() | st.integers(-(2**80), 2**80) | st.floats() | hostile_text | \
    st.lists(st.integers(), max_size=3) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=3)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(STANDARDIZERS), hostile, st.booleans())
def test_every_field_value_is_standardized_or_refused_with_a_reason_nothing_else(standardizer, raw, reject_invisible):
    spec = {"as": standardizer, "invisible": "reject" if reject_invisible else "strip"}
    try:
        result = value(spec, raw)
    except FieldRejected as exc:
        assert exc.reason and exc.column == "col"
        return
    if isinstance(result, str):
        assert std.strip_invisible(result) == result and len(result) <= 400
