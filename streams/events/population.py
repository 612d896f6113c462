"""Decision support: the actual resident population per district / street / community by age band and
sex, and the needs derived from it. Pure: the cells are kept by ``sinks.library.population``.

A resident is a living golden person with a birth date; its cell is where its golden address says it
lives (a part the address lacks is ""), its five-year age band today and its sex. A golden change moves
one resident from its old cell to its new one (``moves``); a birthday that enters a new band moves it
too (the daily pass). Anything that leaves the library shows a cell of fewer than ``SUPPRESS_BELOW``
residents as suppressed, never its count.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kintsmesh.errors import TerminalError
from streams.events.predicates import as_date
from streams.events.services import age_on

FACILITIES_FILE = Path(__file__).with_name("facilities.yaml")
BAND_YEARS, TOP_BAND = 5, 85          # 0-4, 5-9, ... 80-84, 85+
SUPPRESS_BELOW = 10                   # a cell of fewer residents is not shown outside the library
LEVELS = ("district", "street", "community")
Cell = tuple[str, str, str, str, str]  # district, street, community, age band, sex


class FacilityError(TerminalError):
    """A facilities.yaml that cannot be read as facilities."""


def age_band(age: int) -> str:
    if age >= TOP_BAND:
        return f"{TOP_BAND}+"
    low = age // BAND_YEARS * BAND_YEARS
    return f"{low}-{low + BAND_YEARS - 1}"


def cell_of(person: Any, today: date) -> Cell | None:
    """The cell a golden person's record counts in today (None: not a resident — dead, or no birth date).
    Total over any JSON: a part that is not text counts as unknown (""), never as an error."""
    if not isinstance(person, dict) or person.get("death_date"):
        return None
    born = as_date(person.get("birth_date"))
    if born is None or born > today:
        return None
    address = person.get("address")
    parts = [address.get(k) if isinstance(address, dict) else None for k in LEVELS]
    district, street, community = (p if isinstance(p, str) else "" for p in parts)
    gender = person.get("gender")
    sex = {"1": "M", "2": "F"}.get(gender, "U") if isinstance(gender, str) else "U"
    return district, street, community, age_band(age_on(born, today)), sex


def moves(changes: Iterable[tuple[dict[str, Any] | None, dict[str, Any] | None]], today: date) -> Counter[Cell]:
    """The net change of every cell a batch of golden person changes (before, after) makes."""
    delta: Counter[Cell] = Counter()
    for before, after in changes:
        old, new = cell_of(before, today), cell_of(after, today)
        if old != new:
            if old:
                delta[old] -= 1
            if new:
                delta[new] += 1
    return Counter({cell: n for cell, n in delta.items() if n})


def birthday_moves(born: date, places: Iterable[tuple[str, str, str, str]], today: date) -> Counter[Cell]:
    """Residents born on ``born`` (their district, street, community and sex) whose birthday today enters a
    new band: out of the old band, into the new."""
    age = age_on(born, today)
    old, new = age_band(age - 1), age_band(age)
    delta: Counter[Cell] = Counter()
    if age == 0 or old == new:
        return delta
    for district, street, community, sex in places:
        delta[(district, street, community, old, sex)] -= 1
        delta[(district, street, community, new, sex)] += 1
    return delta


def rolled_up(cells: Iterable[tuple[Cell, int]], level: str) -> dict[tuple[str, ...], Counter[tuple[str, str]]]:
    """Residents per area of ``level`` (district; district and street; or all three), by (age band, sex)."""
    depth = LEVELS.index(level) + 1
    areas: dict[tuple[str, ...], Counter[tuple[str, str]]] = {}
    for cell, residents in cells:
        areas.setdefault(cell[:depth], Counter())[(cell[3], cell[4])] += residents
    return areas


def suppressed(count: int) -> int | None:
    """What may leave the library of a count: itself, or None below ``SUPPRESS_BELOW`` (0 is shown: an
    empty cell says nothing of anyone)."""
    return count if count == 0 or count >= SUPPRESS_BELOW else None


@cache
def facilities(path: Path = FACILITIES_FILE) -> dict[str, Any]:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict) or not isinstance(raw.get("health_centres"), dict):
        raise FacilityError(f"{path.name}: expected health_centres: {{district: count}}")
    for key in ("residents_per_health_centre", "school_entry_age"):
        if not isinstance(raw.get(key), int) or raw[key] <= 0:
            raise FacilityError(f"{path.name}: {key} must be a positive whole number")
    if not all(isinstance(n, int) and n >= 0 for n in raw["health_centres"].values()):
        raise FacilityError(f"{path.name}: health_centres counts must be whole numbers")
    return raw


def needs(district_residents: dict[str, int], entering_school: dict[str, int], spec: dict[str, Any] | None = None
          ) -> list[dict[str, Any]]:
    """Per district: health centres needed at one per ``residents_per_health_centre`` against the existing
    ones, and the school places needed next September (the cohort reaching ``school_entry_age``)."""
    spec = spec or facilities()
    per = spec["residents_per_health_centre"]
    rows = []
    for district in sorted(set(district_residents) | set(spec["health_centres"])):
        residents = district_residents.get(district, 0)
        needed = math.ceil(residents / per) if residents else 0
        existing = int(spec["health_centres"].get(district, 0))
        rows.append({"district": district or "(no district)", "residents": residents,
                     "health_centres_needed": needed, "health_centres_existing": existing,
                     "health_centres_missing": max(0, needed - existing),
                     "school_places_next_september": entering_school.get(district, 0)})
    return rows
