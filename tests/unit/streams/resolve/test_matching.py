"""Person matching on plain values: graded comparisons, Fellegi–Sunter weights, blocking keys, decisions.

Decisions are checked with the shipped weights (``streams/resolve/weights.json``): what runs is what is tested."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest

from kintsmesh.bench.resolve import pairwise
from streams.merge.survivorship import derive_from_ric
from streams.resolve.identity import combine, mention_of
from streams.resolve.matching import (LEVELS, WEIGHTS_FILE, Mention, Weights, address_level, birth_from_ric, birth_level,
                                      compare, decide, keys, name_key, name_level, relatives, ric_body, score,
                                      similar_shape, weights)

RIC = "11010519491231002X"
ADDRESS = {"district": "南山区", "street": "粤海街道", "community": "科技园社区", "full": "南山区粤海街道科技园社区科苑路1号"}


def person(**fields: Any) -> Mention:
    findings = fields.pop("findings", [])
    return mention_of({**fields, "findings": findings}, frozenset([fields["household_no"]])
                      if fields.get("household_no") else frozenset())


GOLDEN = person(ric=RIC, name="张伟", gender="2", birth_date="1949-12-31", household_no="HH1", address=ADDRESS)


def test_name_key_is_toneless_pinyin_and_ignores_the_middle_dot():
    assert name_key("张伟") == name_key("张玮") == "zhangwei"
    assert name_key("阿依古丽·买买提") == name_key("阿依古丽买买提")
    assert name_key(None) is None


def test_birth_from_ric_reads_the_date_digits_even_with_a_bad_check_character():
    assert birth_from_ric(RIC) == date(1949, 12, 31)
    assert birth_from_ric(RIC[:17] + "5") == date(1949, 12, 31)
    assert birth_from_ric("110105194913310021") is None   # month 13
    assert birth_from_ric(None) is None and ric_body("123") is None


@pytest.mark.parametrize("a, b, level", [
    ("张伟", "张伟", "exact"), ("张伟", "张玮", "pinyin"), ("张晓辉", "张晓晖", "pinyin"), ("王玉兰", "王王兰", "shape"),
    ("李晴", "李睛", "shape"), ("王秀英", "陈王秀英", "one_edit"), ("陈莉琳", "陈琳", "one_edit"),
    ("李子轩", "李子涵", "substitution"), ("张伟", "李娜", "different"), ("买买提·艾力", "买买提艾力", "exact"),
])
def test_names_are_compared_in_grades(a: str, b: str, level: str) -> None:
    assert name_level(a, b) == level


def test_similar_shapes_come_from_four_corner_codes_and_components():
    assert similar_shape("未", "末") and similar_shape("娟", "绢") and similar_shape("己", "已")
    assert not similar_shape("轩", "涵") and not similar_shape("伟", "强")


def test_birth_dates_and_addresses_are_compared_in_grades():
    assert birth_level(date(1985, 3, 12), date(1985, 3, 12)) == "exact"
    assert birth_level(date(1985, 3, 12), date(1958, 3, 12)) == "transposed"
    assert birth_level(date(1985, 3, 12), date(1985, 12, 3)) == "transposed"   # month and day swapped
    assert birth_level(date(1985, 3, 12), date(1985, 3, 19)) == "one_digit"
    assert birth_level(date(1985, 3, 12), date(1985, 3, 28)) == "year_month"
    assert birth_level(date(1985, 3, 12), date(1990, 7, 1)) == "different"
    a = next(iter(GOLDEN.addresses))
    b = next(iter(person(address={**ADDRESS, "full": "南山区粤海街道科技园社区高新南一道9号"}).addresses))
    c = next(iter(person(address={"district": "南山区", "street": "蛇口街道", "community": None,
                                  "full": "南山区蛇口街道工业一路1号"}).addresses))
    assert (address_level(a, a), address_level(a, b), address_level(a, c)) == ("exact", "community", "district")


def test_a_bad_check_character_plus_name_and_birth_links():
    mention = person(ric=RIC[:17] + "3", findings=["ric:bad_check_character"], name="张伟", gender="2",
                     birth_date="1949-12-31")
    assert mention.valid_ric is None
    assert compare(mention, GOLDEN)["ric"] == "near"
    assert decide(mention, [("P1", GOLDEN)]).outcome == "link"


def test_a_different_valid_ric_is_evidence_against():
    other = person(ric="110105195001010015", name="张伟", gender="2", birth_date="1949-12-31")
    assert decide(other, [("P1", GOLDEN)]).outcome != "link"


def test_one_small_slip_no_longer_outweighs_everything():
    for name in ("张玮", "张伟伟"):
        mention = person(name=name, gender="2", birth_date="1949-12-31", address=ADDRESS)
        assert decide(mention, [("P1", GOLDEN)]).canonical_id == "P1", name
    transposed = person(name="张伟", gender="2", birth_date="1949-12-13", address=ADDRESS)
    assert decide(transposed, [("P1", GOLDEN)]).outcome == "link"
    wrong_gender = person(name="张伟", gender="1", birth_date="1949-12-31", address=ADDRESS)
    assert decide(wrong_gender, [("P1", GOLDEN)]).outcome == "link"


def test_different_birth_dates_and_no_address_never_link_on_a_name_alone():
    mention = person(name="张伟", gender="2", birth_date="1950-01-01")
    assert decide(mention, [("P1", GOLDEN)]).outcome == "new"
    assert decide(person(name="张伟", gender="2"), [("P1", GOLDEN)]).outcome == "new"
    assert decide(person(name="张伟"), []).outcome == "new"


def test_a_nameless_newborn_links_by_birth_date_gender_household_and_address():
    newborn = person(gender="2", birth_date="1949-12-31", household_no="HH1", address=ADDRESS)
    assert decide(newborn, [("P1", GOLDEN)]).outcome == "link"


def test_two_equally_good_candidates_go_to_review_not_a_coin_flip():
    twin = person(ric="110105194912310045", name="张伟", gender="2", birth_date="1949-12-31")
    mention = person(name="张伟", gender="2", birth_date="1949-12-31")
    decision = decide(mention, [("P1", GOLDEN), ("P2", twin)])
    assert decision.outcome == "review" and decision.canonical_id is None
    assert {c.canonical_id for c in decision.candidates} == {"P1", "P2"}


def test_a_sibling_is_not_linked_on_what_the_family_shares():
    """Twins share birth date, household, address and parents; a name that differs by another character
    makes the family evidence say nothing."""
    mother = "440304199001010028"
    born, home = "2026-11-22", {**ADDRESS, "full": "南山区粤海街道科技园社区科苑路8号"}
    ours = person(name="林子轩", gender="1", birth_date=born, household_no="H9", address=home, mother_ric=mother)
    sibling = person(name="林子涵", gender="1", birth_date=born, household_no="H9", address=home, mother_ric=mother)
    assert relatives(compare(ours, sibling)) and compare(ours, sibling)["name"] == "substitution"
    assert not {"household", "address", "parent"} & {e.split(":")[0] for e in score(ours, sibling, "P2").evidence}
    assert decide(ours, [("P2", sibling)]).outcome == "new"


def test_two_newborns_of_one_name_and_day_are_told_apart_by_their_parents():
    mother, other_mother = "440304199001010028", "440305199202020046"
    ours = person(name="林小明", gender="1", birth_date="2026-11-22", mother_ric=mother)
    theirs = person(name="林小明", gender="1", birth_date="2026-11-22", mother_ric=other_mother)
    same_family = person(name="林小明", gender="1", birth_date="2026-11-22", mother_ric=mother[:17] + "5")   # typo
    assert compare(ours, theirs)["parent"] == "different" and compare(ours, same_family)["parent"] == "same"
    decision = decide(ours, [("P2", theirs), ("P3", same_family)])
    assert (decision.outcome, decision.canonical_id) == ("link", "P3")


def test_a_common_name_weighs_less_than_a_rare_one():
    mention = person(name="张伟", gender="2", birth_date="1949-12-31")
    rare, common = score(mention, GOLDEN, "P1", name_share=1e-6), score(mention, GOLDEN, "P1", name_share=0.01)
    assert rare.evidence["name:exact"] > common.evidence["name:exact"] and rare.score > common.score


def test_declared_identifiers_are_evidence_and_keys():
    def insured(value: str, unique: bool = True) -> Mention:
        return person(name="张伟", identifiers=[{"type": "social_insurance_no", "issuer": "hrss", "value": value,
                                                "unique": unique}])
    assert compare(insured("SI1"), insured("SI1"))["identifier"] == "unique_exact"
    assert compare(insured("SI1"), insured("SI2"))["identifier"] == "unique_different"
    assert "identifier" not in compare(insured("P1", unique=False), insured("P2", unique=False))
    assert "i:social_insurance_no:hrss:SI1" in keys(insured("SI1"))
    assert decide(insured("SI1"), [("P1", insured("SI1"))]).outcome == "link"


def test_blocking_keys_survive_a_typo_in_any_one_field():
    exact = keys(GOLDEN)
    slip = keys(person(name="张玮", gender="2", birth_date="1949-12-31"))            # homophone: pinyin key
    day = keys(person(name="张伟", gender="2", birth_date="1949-12-13"))             # a day typo: pinyin and year
    styled = keys(person(name="李张伟", gender="2", birth_date="1949-12-31"))         # 冠夫姓: last character and date
    shape = keys(person(name="张讳", gender="2", birth_date="1949-12-31"))           # a given name's character masked
    no_birth = keys(person(name="张伟", address=ADDRESS))                            # name and district
    for other in (slip, day, styled, shape, no_birth):
        assert (exact & other) - {"n:张伟"}, other
    assert f"r:{RIC[:17]}" in exact and f"rb:{RIC[:14]}" in exact


def test_combine_unions_what_two_descriptions_say():
    known = person(name="张伟", household_no="A")
    other = person(ric=RIC, birth_date="1949-12-31", household_no="B", mother_ric="M1")
    combined = combine(known, other)
    assert combined.valid_ric == RIC and combined.name == "张伟" and combined.mothers == {"M1"}
    assert combined.birth_date == date(1949, 12, 31) and combined.households == {"A", "B"}


def test_the_shipped_weights_load_and_round_trip():
    shipped = weights()
    assert Weights.from_json(json.loads(json.dumps(shipped.as_json()))) == shipped
    assert shipped.bits("name", "exact") > 0 > shipped.bits("name", "different")
    broken = json.loads(WEIGHTS_FILE.read_text())
    del broken["m"]["name"]["shape"]
    with pytest.raises(ValueError, match="shape"):
        Weights.from_json(broken)


def test_birth_date_and_gender_derived_from_the_ric_when_no_source_gives_them():
    data = {"ric": RIC, "birth_date": None, "gender": None}
    fields: dict = {}
    derive_from_ric(data, fields)
    assert data == {"ric": RIC, "birth_date": "1949-12-31", "gender": "2"}
    assert fields == {"birth_date": {"derived_from": "ric"}, "gender": {"derived_from": "ric"}}


def test_pairwise_precision_and_recall():
    truth = {1: "a", 2: "a", 3: "b", 4: "b"}
    assert pairwise({1: "x", 2: "x", 3: "y", 4: "y"}, truth)["f1"] == 1.0
    merged = pairwise({1: "x", 2: "x", 3: "x", 4: "x"}, truth)
    assert merged["recall"] == 1.0 and merged["precision"] == round(2 / 6, 5)
    split = pairwise({1: "x", 2: None, 3: "y", 4: "y"}, truth)
    assert split["precision"] == 1.0 and split["recall"] == 0.5


def test_the_evidence_table_holds_every_level_s_bits_as_score_reports_them():
    w = weights()
    assert set(w.evidence_bits) == {(c, level) for c, levels in LEVELS.items() for level in levels}
    for (c, level), (name, bits) in w.evidence_bits.items():
        assert (name, bits) == (f"{c}:{level}", round(w.bits(c, level), 2))
