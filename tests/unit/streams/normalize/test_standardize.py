from datetime import date, datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.normalize import standardize as s

RIC = "11010519491231002X"


@pytest.mark.parametrize("raw", [RIC, f" {RIC}  ", "11010519491231002x", "１１０１０５１９４９１２３１００２Ｘ",
                                 "110105 1949 1231 002X", "11010519491231002X\u3000"])
def test_resident_id_cleans_whitespace_width_and_case(raw):
    assert s.resident_id(raw) == s.Standardized(RIC, ())


def test_legacy_15_digit_ids_are_upgraded():
    assert s.resident_id("110105491231002") == s.Standardized(RIC, ("legacy_15_upgraded",))


def test_bad_check_character_is_a_finding_not_a_rejection():
    result = s.resident_id("110105194912310021")
    assert result.value == "110105194912310021" and result.findings == ("bad_check_character",)


@pytest.mark.parametrize("raw", ["", None, "无", "-", "NULL", " null "])
def test_null_conventions(raw):
    assert s.resident_id(raw) == s.Standardized(None, ("missing",))
    assert s.person_name(raw).value is None


def test_malformed_ids_flow_without_a_value():
    assert s.resident_id("ABC123") == s.Standardized(None, ("malformed",))


def test_uscc():
    assert s.social_credit_code("91110000600037341L").value == "91110000600037341L"
    assert s.social_credit_code("91110000600037341A").findings == ("bad_check_character",)
    assert s.social_credit_code("") == s.Standardized(None, ("missing",))


@pytest.mark.parametrize("raw, expected", [
    ("  王小明 ", "王小明"), ("王\u3000小明", "王小明"), ("艾力•阿卜杜", "艾力·阿卜杜"),
    ("艾力．阿卜杜", "艾力·阿卜杜"), ("艾力・阿卜杜", "艾力·阿卜杜"), ("ＬＩ　Ｌｅｉ", "LI Lei"),
])
def test_person_names(raw, expected):
    assert s.person_name(raw).value == expected


@pytest.mark.parametrize("raw", ["20180615", "2018-06-15", "2018/06/15", "2018.06.15", "2018年6月15日",
                                 date(2018, 6, 15), datetime(2018, 6, 15, 9, 30), 17697])
def test_dates_in_every_department_format(raw):
    assert s.calendar_date(raw).value == date(2018, 6, 15)


@pytest.mark.parametrize("raw, reason", [("20230230", "impossible_date"), ("2023-13-01", "impossible_date"),
                                         ("yesterday", "invalid_date"), ("18000101", "date_out_of_range")])
def test_impossible_dates_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(s.Rejected) as exc:
        s.calendar_date(raw)
    assert exc.value.reason == reason


def test_timestamps_from_debezium():
    micros = 1528997400000000  # 2018-06-14T17:30:00 as a department's zoneless TIMESTAMP
    assert s.timestamp(micros).value == datetime(2018, 6, 14, 17, 30, tzinfo=s.CITY_TZ)
    assert s.timestamp("2018-06-14T09:30:00Z").value == datetime(2018, 6, 14, 9, 30, tzinfo=timezone.utc)


def test_codes_through_a_dictionary():
    genders = {"1": "1", "2": "2", "男": "1", "女": "2", "M": "1", "F": "2"}
    assert s.coded(" m ", genders, "gender").value == "1"
    assert s.coded("女", genders, "gender").value == "2"
    with pytest.raises(s.Rejected, match="unknown_gender_code"):
        s.coded("X", genders, "gender")


@pytest.mark.parametrize("raw, prefixed", [
    ("广东省深圳市福田区园岭街道园东社区红荔路12号百花花园3栋1203", True),
    ("福田区园岭街道园东社区红荔路12号百花花园3栋1203", False),
    ("深圳市福田区园岭街道园东社区红荔路12号百花花园3栋1203", True),
])
def test_addresses_split_and_lose_the_prefix(raw, prefixed):
    result = s.address(raw)
    assert result.value == s.Address("福田区", "园岭街道", "园东社区", "红荔路12号百花花园3栋1203",
                                     "福田区园岭街道园东社区红荔路12号百花花园3栋1203")
    assert ("prefix_stripped" in result.findings) == prefixed


STANDARDIZERS = [s.resident_id, s.social_credit_code, s.person_name, s.calendar_date, s.timestamp, s.address,
                 lambda raw: s.coded(raw, {"1": "1"}, "gender")]


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(), st.integers(), st.none(), st.dates(), st.booleans()),
       index=st.integers(0, len(STANDARDIZERS) - 1))
def test_standardizers_never_raise_anything_but_a_rejection(raw, index):
    try:
        result = STANDARDIZERS[index](raw)
    except s.Rejected as exc:
        assert exc.reason
    else:
        assert isinstance(result, s.Standardized)


def test_address_parser_accuracy_on_the_simulated_city():
    import random

    from kintsmesh.simulate.city import City, CityBuilder

    builder = CityBuilder(City(seed=1, today=date(2026, 11, 27)), random.Random(1))
    samples = [builder.address() for _ in range(2000)]
    correct = 0
    for i, truth in enumerate(samples):
        parsed = s.address(truth.text(with_prefix=i % 2 == 0)).value
        correct += (parsed.district, parsed.street, parsed.community) == (truth.district, truth.street, truth.community)
    assert correct / len(samples) >= 0.99
