"""Evidence sharing: the items file is checked as it is read, and what counts as held is the named
department's record only."""

from datetime import date

import pytest

from sinks.library.evidence import ItemError, assess, item, items, parse_items

TODAY = date(2026, 12, 5)
PARENT, CHILD = "440304199001011234", "440304202606010011"


def provenance(**fields: str) -> dict:
    """field_provenance.fields: one source per department named, each field from its department's source."""
    departments = sorted(set(fields.values()))
    return {"sources": [{"department": d, "table": f"{d}_table", "primary_key": f"{d}-1", "committed_at": 1}
                        for d in departments],
            "fields": {name: {"source": departments.index(d)} for name, d in fields.items()}}


def certificate(kind: str, number: str, issued: str, department: str, holder: str | None = None, **details: str):
    return ({"certificate_id": f"{kind}:{number}", "certificate_type": kind, "certificate_no": number,
             "holder_ric": holder, "holder_person_id": holder, "issued_date": issued, "issuer": "x",
             "details": details}, provenance(certificate_type=department))


PERSON = {"person_id": PARENT, "ric": PARENT, "household_no": "440300123456"}
BIRTH = certificate("BIRTH_MEDICAL_CERTIFICATE", "Q1", "2026-06-03", "health", CHILD, mother_ric=PARENT)
MARRIAGE = certificate("MARRIAGE", "J1", "2020-05-20", "civil_affairs", "440304198801015678", spouse_ric=PARENT)


def newborn(person=PERSON, fields=None, certificates=(BIRTH, MARRIAGE)):
    return assess(item("newborn_household_registration"), PARENT, person,
                  provenance(household_no="police") if fields is None else fields, list(certificates), TODAY)


def test_a_family_whose_departments_share_everything_presents_only_the_id_card():
    result = newborn()
    assert [h["evidence"] for h in result["held"]] == ["birth_medical_certificate", "marriage_certificate",
                                                       "household_register"]
    assert [m["evidence"] for m in result["to_present"]] == ["applicant_id_card"]
    assert result["presentations"] == 1 and result["presentations_before"] == 18
    birth = result["held"][0]
    assert birth["department"] == "health" and birth["record"] == {
        "entity": "certificate", "id": "BIRTH_MEDICAL_CERTIFICATE:Q1", "table": "health_table", "primary_key": "health-1"}
    assert birth["date"] == "2026-06-03" and birth["value"]["certificate_no"] == "Q1"
    assert result["held"][2]["value"] == "440300123456" and result["held"][2]["record"]["entity"] == "person"
    assert result["held"][2]["date"] == "1970-01-01"   # the police row's commit (epoch ms 1), as the city's date


def test_a_value_another_department_supplied_is_not_the_named_departments_evidence():
    result = newborn(fields=provenance(household_no="health"))
    assert "household_register" in [m["evidence"] for m in result["to_present"]]
    assert result["to_present"][-1]["reason"] == "not in the resource library from police"
    forged = certificate("MARRIAGE", "J2", "2021-01-01", "market", PARENT)
    assert "marriage_certificate" in [m["evidence"] for m in newborn(certificates=(BIRTH, forged))["to_present"]]


def test_a_divorce_after_the_marriage_an_old_birth_and_an_unknown_applicant_are_not_held():
    divorce = certificate("DIVORCE", "L1", "2024-02-02", "civil_affairs", "440304198801015678", spouse_ric=PARENT)
    assert newborn(certificates=(BIRTH, MARRIAGE, divorce))["presentations"] == 2
    remarried = certificate("MARRIAGE", "J3", "2025-03-03", "civil_affairs", PARENT)
    assert newborn(certificates=(BIRTH, MARRIAGE, divorce, remarried))["presentations"] == 1
    old = certificate("BIRTH_MEDICAL_CERTIFICATE", "Q0", "2020-06-03", "health", CHILD, mother_ric=PARENT)
    assert "birth_medical_certificate" in [m["evidence"] for m in newborn(certificates=(old, MARRIAGE))["to_present"]]
    unknown = newborn(person=None, fields={}, certificates=())
    assert unknown["held"] == [] and unknown["presentations"] == 4


def test_the_first_source_the_library_holds_satisfies_an_any_of():
    permit = certificate("RESIDENCE_PERMIT", "JZ1", "2025-01-01", "police", PARENT)
    senior = item("senior_card")
    migrant = {"person_id": PARENT, "ric": PARENT, "household_no": None}
    held = assess(senior, PARENT, migrant, provenance(name="police"), [permit], TODAY)["held"]
    assert [(h["evidence"], h["record"]["entity"]) for h in held] == [("residence", "certificate")]
    held = assess(senior, PARENT, PERSON, provenance(household_no="police"), [permit], TODAY)["held"]
    assert [(h["evidence"], h["record"]["entity"]) for h in held] == [("residence", "person")]


def test_the_shipped_items_read_and_every_one_names_its_evidence():
    assert {"newborn_household_registration", "school_enrolment", "senior_card", "marriage_registration"} <= set(items())
    with pytest.raises(ItemError, match="no business item 'passport'"):
        item("passport")


@pytest.mark.parametrize("evidence, message", [
    ({"name": "a", "title": "t", "department": "police", "person_fild": "household_no"}, "unknown keys"),
    ({"name": "a", "title": "t", "department": "police", "person_field": "x", "certificate": "Y"}, "exactly one"),
    ({"name": "a", "title": "t", "person_field": "x"}, "name the department"),
    ({"name": "a", "title": "t", "department": "health", "certificate": "Y", "as": "cousin"}, "as must be one of"),
    ({"name": "a", "title": "t", "department": "health", "certificate": "Y", "within_days": "a year"}, "within_days"),
    ({"name": "a", "title": "t", "present": "in_person", "department": "police"}, "has no source"),
    ({"name": "a", "title": "t", "present": "by_post"}, "present must be in_person"),
    ({"name": "a", "title": "t", "any_of": []}, "any_of is a non-empty list"),
    ({"title": "t", "present": "in_person"}, "needs a name and a title"),
])
def test_a_malformed_item_is_refused_with_the_file_item_and_evidence_named(evidence, message):
    with pytest.raises(ItemError, match=message) as raised:
        parse_items({"x": {"title": "X", "evidence": [evidence]}}, "items.yaml")
    assert str(raised.value).startswith("items.yaml: item x")
