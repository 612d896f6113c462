"""The school-enrolment verdict on a dossier: eligible, not eligible, or missing evidence — and why. Pure.

The conditions (Shenzhen-style admission prerequisites, simplified):

* age: six (primary) or twelve (junior high) completed by 31 August of the enrolment year;
* the child is alive;
* a child registered in the city's household registry (a household number from
  the police) is eligible on that ground;
* otherwise a guardian must show residence in the city (a current rental filing,
  or a registered address) and at least ``insured_months`` months of social
  insurance in the last ``window_months`` months.

The numbers are data: the ages and the cutoff from the SCHOOL_AGE_REACHED rule (``rules.yaml``),
the insurance condition from ``enrolment.yaml``. What the library does not hold is named as
missing evidence, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from streams.events.predicates import anniversary, as_date
from streams.events.rules import RuleError, rules

CONDITIONS_FILE = Path(__file__).with_name("enrolment.yaml")
SCHOOL_RULE = "SCHOOL_AGE_REACHED"


@dataclass(frozen=True)
class Conditions:
    ages: dict[str, int]          # level -> the age to complete
    cutoff: tuple[int, int]       # (month, day) of the enrolment year by which it must be completed
    insured_months: int
    window_months: int


def parse_conditions(spec: dict[str, Any], school_variants: tuple[dict[str, Any], ...]) -> Conditions:
    ages = {str(v["level"]): int(v["age"]) for v in school_variants}
    cutoffs = {str(v.get("by", "08-31")) for v in school_variants}
    if not ages or len(cutoffs) != 1:
        raise RuleError(f"{SCHOOL_RULE} needs variants with a level, an age and one common 'by' date")
    month, day = (int(x) for x in cutoffs.pop().split("-"))
    try:
        insured, window = int(spec["insured_months"]), int(spec["window_months"])
    except (KeyError, TypeError, ValueError):
        raise RuleError(f"{CONDITIONS_FILE.name}: insured_months and window_months must be whole numbers") from None
    if not 0 < insured <= window:
        raise RuleError(f"{CONDITIONS_FILE.name}: need 0 < insured_months <= window_months, not {insured} / {window}")
    return Conditions(ages, (month, day), insured, window)


@lru_cache(maxsize=1)
def conditions() -> Conditions:
    return parse_conditions(yaml.safe_load(CONDITIONS_FILE.read_text()), rules()[SCHOOL_RULE].variants)


ELIGIBLE, NOT_ELIGIBLE, MISSING_EVIDENCE = "ELIGIBLE", "NOT_ELIGIBLE", "MISSING_EVIDENCE"


def enrolment_year(today: date) -> int:
    """The September a request made today is about: this year's until 31 August, then next year's."""
    return today.year if (today.month, today.day) <= conditions().cutoff else today.year + 1


def window_start(today: date, months: int | None = None) -> str:
    """The first contribution month (YYYYMM) of the last ``months`` months (default: the
    condition's window) before today's."""
    months = conditions().window_months if months is None else months
    index = today.year * 12 + today.month - 1 - months
    return f"{index // 12:04d}{index % 12 + 1:02d}"


def verdict(dossier: dict[str, Any], level: str, year: int) -> dict[str, Any]:
    """The rule's verdict on an assembled dossier, with every reason that led to it."""
    terms = conditions()
    child = dossier.get("child")
    if not child:
        return {"verdict": MISSING_EVIDENCE, "reasons": ["the child is not in the resource library"]}
    born = as_date(child.get("birth_date"))
    if born is None:
        return {"verdict": MISSING_EVIDENCE, "reasons": ["no birth date for the child"]}
    age = terms.ages[level]
    reaches = anniversary(born, age)
    cutoff = date(year, *terms.cutoff)
    if child.get("death_date"):
        return {"verdict": NOT_ELIGIBLE, "reasons": [f"died on {child['death_date']}"]}
    if reaches > cutoff:
        return {"verdict": NOT_ELIGIBLE,
                "reasons": [f"completes {age} years on {reaches.isoformat()}, after {cutoff.isoformat()}"]}
    if born < date(year - age - 1, *terms.cutoff):
        return {"verdict": NOT_ELIGIBLE, "reasons": [f"past {level} age in {year} (born {born.isoformat()})"]}
    if child.get("household_no"):
        return {"verdict": ELIGIBLE, "reasons": [f"registered in the city's household registry ({child['household_no']})"],
                "category": "household_registration"}
    guardians = dossier.get("guardians") or []
    if not guardians:
        missing = ["no guardian of the child in the resource library"]
        if not dossier.get("birth_certificate"):
            missing.append("no birth medical certificate naming the parents")
        return {"verdict": MISSING_EVIDENCE, "reasons": missing}
    resident = [g for g in guardians if g.get("rental_filings") or g.get("household_no") or g.get("address")]
    insured = [g for g in guardians if (g.get("insured_months") or 0) >= terms.insured_months]
    reasons = []
    if not resident:
        reasons.append("no guardian with a rental filing or a registered address in the city")
    if not insured:
        best = max((g.get("insured_months") or 0) for g in guardians)
        reasons.append(f"guardians' social insurance: {best} months in the last {terms.window_months}"
                       f" ({terms.insured_months} needed)")
    if reasons:
        return {"verdict": MISSING_EVIDENCE, "reasons": reasons}
    return {"verdict": ELIGIBLE, "category": "resident_guardian",
            "reasons": [f"the {resident[0]['relation']} resides in the city", f"the {insured[0]['relation']} insured "
                        f"{insured[0]['insured_months']} of the last {terms.window_months} months"]}
