"""The school-enrolment verdict on a dossier: eligible, not eligible, or missing evidence — and why. Pure.

The conditions (Shenzhen-style admission prerequisites, simplified):

* age: six (primary) or twelve (junior high) completed by 31 August of the enrolment year;
* the child is alive;
* a child registered in the city's household registry (a household number from
  the police) is eligible on that ground;
* otherwise a guardian must show residence in the city (a current rental filing,
  or a registered address) and at least ``INSURED_MONTHS`` months of social
  insurance in the last ``WINDOW_MONTHS`` months.

What the library does not hold is named as missing evidence, never guessed.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from streams.events.predicates import anniversary, as_date

AGES = {"primary": 6, "junior_high": 12}
CUTOFF = (8, 31)            # the age must be completed by 31 August of the enrolment year
INSURED_MONTHS = 12
WINDOW_MONTHS = 24

ELIGIBLE, NOT_ELIGIBLE, MISSING_EVIDENCE = "ELIGIBLE", "NOT_ELIGIBLE", "MISSING_EVIDENCE"


def enrolment_year(today: date) -> int:
    """The September a request made today is about: this year's until 31 August, then next year's."""
    return today.year if (today.month, today.day) <= CUTOFF else today.year + 1


def window_start(today: date, months: int = WINDOW_MONTHS) -> str:
    """The first contribution month (YYYYMM) of the last ``months`` months before today's."""
    index = today.year * 12 + today.month - 1 - months
    return f"{index // 12:04d}{index % 12 + 1:02d}"


def verdict(dossier: dict[str, Any], level: str, year: int) -> dict[str, Any]:
    """The rule's verdict on an assembled dossier, with every reason that led to it."""
    child = dossier.get("child")
    if not child:
        return {"verdict": MISSING_EVIDENCE, "reasons": ["the child is not in the resource library"]}
    born = as_date(child.get("birth_date"))
    if born is None:
        return {"verdict": MISSING_EVIDENCE, "reasons": ["no birth date for the child"]}
    reaches = anniversary(born, AGES[level])
    cutoff = date(year, *CUTOFF)
    if child.get("death_date"):
        return {"verdict": NOT_ELIGIBLE, "reasons": [f"died on {child['death_date']}"]}
    if reaches > cutoff:
        return {"verdict": NOT_ELIGIBLE,
                "reasons": [f"completes {AGES[level]} years on {reaches.isoformat()}, after {cutoff.isoformat()}"]}
    if born < date(year - AGES[level] - 1, *CUTOFF):
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
    insured = [g for g in guardians if (g.get("insured_months") or 0) >= INSURED_MONTHS]
    reasons = []
    if not resident:
        reasons.append("no guardian with a rental filing or a registered address in the city")
    if not insured:
        best = max((g.get("insured_months") or 0) for g in guardians)
        reasons.append(f"guardians' social insurance: {best} months in the last {WINDOW_MONTHS} ({INSURED_MONTHS} needed)")
    if reasons:
        return {"verdict": MISSING_EVIDENCE, "reasons": reasons}
    return {"verdict": ELIGIBLE, "category": "resident_guardian",
            "reasons": [f"{resident[0]['name']} resides in the city", f"{insured[0]['name']} insured "
                        f"{insured[0]['insured_months']} of the last {WINDOW_MONTHS} months"]}
