"""Person matching on plain values: evidence, blocking keys, link / review / new decisions."""

from __future__ import annotations

from datetime import date

from kintsmesh.bench.resolve import pairwise
from streams.merge.survivorship import derive_from_ric
from streams.resolve.identity import block_keys, combine
from streams.resolve.matching import LINK_AT, REVIEW_AT, Mention, birth_from_ric, decide, name_key, ric_body, score

RIC = "11010519491231002X"
GOLDEN = Mention(ric=RIC, ric_valid=True, name="张伟", gender="2", birth_date=date(1949, 12, 31),
                 households=frozenset({"HH1"}), address="南山区粤海街道科技园社区科苑路1号")


def test_name_key_is_toneless_pinyin_and_ignores_the_middle_dot():
    assert name_key("张伟") == name_key("张玮") == "zhangwei"
    assert name_key("阿依古丽·买买提") == name_key("阿依古丽买买提")
    assert name_key(None) is None


def test_birth_from_ric_reads_the_date_digits_even_with_a_bad_check_character():
    assert birth_from_ric(RIC) == date(1949, 12, 31)
    assert birth_from_ric(RIC[:17] + "5") == date(1949, 12, 31)
    assert birth_from_ric("110105194913310021") is None   # month 13
    assert birth_from_ric(None) is None and ric_body("123") is None


def test_bad_check_character_plus_name_links():
    mention = Mention(ric=RIC[:17] + "3", name="张伟", gender="2")
    scored = score(mention, GOLDEN, "P1")
    assert "ric_near" in scored.evidence and scored.score >= LINK_AT
    assert decide(mention, [("P1", GOLDEN)]).outcome == "link"


def test_transposed_digits_count_as_a_near_ric():
    transposed = RIC[:8] + RIC[9] + RIC[8] + RIC[10:]
    assert "ric_near" in score(Mention(ric=transposed), GOLDEN, "P1").evidence


def test_a_different_valid_ric_is_evidence_against():
    other = Mention(ric="110105195001010015", ric_valid=True, name="张伟", gender="2", birth_date=date(1949, 12, 31))
    assert decide(other, [("P1", GOLDEN)]).outcome == "new"


def test_homophone_name_and_same_birth_date_link_without_an_id():
    mention = Mention(name="张玮", gender="2", birth_date=date(1949, 12, 31))
    decision = decide(mention, [("P1", GOLDEN)])
    assert decision.outcome == "link" and decision.canonical_id == "P1"
    assert decision.evidence == {"name_homophone": 0.3, "birth_exact": 0.35, "gender_same": 0.05}


def test_different_birth_dates_never_link_on_a_name_alone():
    mention = Mention(name="张伟", gender="2", birth_date=date(1950, 1, 1))
    assert decide(mention, [("P1", GOLDEN)]).outcome == "new"


def test_a_nameless_newborn_links_by_birth_date_gender_household_and_address():
    newborn = Mention(gender="2", birth_date=date(1949, 12, 31), households=frozenset({"HH1"}),
                      address=GOLDEN.address)
    decision = decide(newborn, [("P1", GOLDEN)])
    assert decision.outcome == "link", decision


def test_two_equally_good_candidates_go_to_review_not_a_coin_flip():
    twin = Mention(ric="110105194912310045", ric_valid=True, name="张伟", gender="2", birth_date=date(1949, 12, 31))
    mention = Mention(name="张伟", gender="2", birth_date=date(1949, 12, 31))
    decision = decide(mention, [("P1", GOLDEN), ("P2", twin)])
    assert decision.outcome == "review" and decision.canonical_id is None
    assert {c.canonical_id for c in decision.candidates} == {"P1", "P2"}


def test_two_newborns_of_one_name_and_day_are_told_apart_by_their_parents():
    mother, other_mother, father = "440304199001010028", "440305199202020046", "440304198805050013"
    born = date(2026, 11, 22)
    ours = Mention(name="林小明", gender="1", birth_date=born, mother_ric=mother, father_ric=father)
    theirs = Mention(name="林晓明", gender="1", birth_date=born, mother_ric=other_mother)
    same_family = Mention(name="林晓明", gender="1", birth_date=born, mother_ric=mother[:17] + "5")   # a typo
    assert score(ours, theirs, "P2").evidence["parent_differs"] < 0
    assert "parent_same" in score(ours, same_family, "P3").evidence
    decision = decide(ours, [("P2", theirs), ("P3", same_family)])   # without parents: a tie, for review
    assert (decision.outcome, decision.canonical_id) == ("link", "P3")
    assert decide(ours, [("P2", theirs)]).outcome == "new"               # another family's child
    # one parent in common is enough (a father's RIC missing or mistyped on one certificate)
    stepfather = Mention(name="林小明", gender="1", birth_date=born, mother_ric=mother, father_ric=other_mother)
    assert "parent_same" in score(ours, stepfather, "P4").evidence


def test_weak_evidence_makes_a_new_person():
    mention = Mention(name="张伟", gender="2")
    assert score(mention, GOLDEN, "P1").score < REVIEW_AT
    assert decide(mention, [("P1", GOLDEN)]).outcome == "new"
    assert decide(mention, []).outcome == "new"


def test_combine_keeps_the_known_valid_ric_and_fills_gaps():
    known = Mention(ric=None, name="张伟", households=frozenset({"A"}))
    other = Mention(ric=RIC, ric_valid=True, birth_date=date(1949, 12, 31), households=frozenset({"B"}),
                    mother_ric="M1")
    combined = combine(known, other)
    assert combined.ric == RIC and combined.ric_valid and combined.name == "张伟" and combined.mother_ric == "M1"
    assert combined.birth_date == date(1949, 12, 31) and combined.households == {"A", "B"}


def test_block_keys_cover_birth_name_and_ric_body():
    keys = block_keys("zhangwei", date(1949, 12, 31), RIC[:17])
    assert ("birth", date(1949, 12, 31), "zhangwei") in keys and ("name", "zhangwei") in keys
    assert ("ric", RIC[:17]) in keys
    assert block_keys(None, None, None) == []


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
