from datetime import date

from sinks.library.dossier import minimised, no_data, of_school_age
from streams.events.enrolment import verdict

ENROLMENT = {"level": "primary", "year": 2027, "age": 6, "insured_months_window": 24}


def full(born: str, **child: object) -> dict:
    dossier = {
        "child": {"person_id": "P1", "ric": "440305202011036718", "name": "魏健", "gender": "1", "birth_date": born,
                  "death_date": None, "household_no": None, "address": {"full": "宝安区…", "district": "宝安区"},
                  "mother_ric": "440305199001011234", "father_ric": None, **child},
        "guardians": [{"ric": "440305199001011234", "name": "李娜", "relation": "mother", "household_no": None,
                       "address": None, "district": "宝安区", "insured_months": 14, "latest_insured_month": "2026-11",
                       "rental_filings": [{"certificate_no": "ZL0000000001", "house_code": "H1", "from": "2025-01-01",
                                           "until": "2027-01-01", "status": "ACTIVE"}]}],
        "birth_certificate": {"certificate_no": "Q870000001", "issued_date": "2020-11-05", "issuer": "医院",
                              "mother_ric": "440305199001011234", "father_ric": None, "born_at": "医院"},
        "enrolment": ENROLMENT,
    }
    dossier["verdict"] = verdict(dossier, "primary", 2027)
    return dossier


def test_the_school_gets_the_child_and_only_the_facts_the_verdict_weighs_of_the_adults():
    judged = full("2020-11-03")
    assert of_school_age(judged) and judged["verdict"]["verdict"] == "ELIGIBLE"
    shown = minimised(judged)
    text = repr(shown)
    assert "440305199001011234" not in text and "李娜" not in text and "ZL0000000001" not in text
    assert "Q870000001" not in text and "H1" not in text
    assert shown["guardians"] == [{"relation": "mother", "district": "宝安区", "resides_in_city": True,
                                   "household_registered": False, "insured_months": 14,
                                   "rental_filing_until": "2027-01-01"}]
    assert shown["verdict"]["reasons"] == ["the mother resides in the city", "the mother insured 14 of the last 24 months"]


def test_adults_the_dead_and_children_of_another_year_have_no_dossier():
    assert not of_school_age(full("1950-03-01"))
    assert not of_school_age(full("2020-11-03", death_date=date(2024, 1, 1)))
    assert not of_school_age(full("2022-11-03"))
    assert not of_school_age(full("2020-11-03", birth_date=None))


def test_no_data_is_one_answer_whatever_the_reason():
    assert no_data(ENROLMENT) == no_data(dict(ENROLMENT))
    assert no_data(ENROLMENT)["child"] is None and no_data(ENROLMENT)["guardians"] == []
