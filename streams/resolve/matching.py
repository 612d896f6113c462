"""Person identity resolution on evidence other than a valid ID number. Pure, no I/O.

A *mention* is what one source row says about one person. A mention whose RIC is
valid links deterministically (by the RIC). One whose RIC is missing, malformed or
fails its check character is scored against the golden persons of its *blocks*
(same birth date, same toneless-pinyin name, same first 17 RIC characters), so
the cost of a match grows with the block, not with the library.

Scores are explicit sums of evidence weights (``WEIGHTS``); ``decide`` turns the
scored candidates into a link, a review-queue entry or a new person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache

from pypinyin import lazy_pinyin
from rapidfuzz.distance import Levenshtein
from rapidfuzz.fuzz import ratio

# Evidence weights. A score is their sum over the evidence both sides have.
WEIGHTS: dict[str, float] = {
    "ric_near": 0.45,         # same RIC up to a bad check character or one transposition
    "ric_far": -0.6,          # both have a RIC and they differ by more than a typo
    "name_exact": 0.35,
    "name_homophone": 0.3,    # same toneless pinyin: the commonest clerk typo (明/名, 华/化)
    "name_similar": 0.1,      # rapidfuzz ratio >= 80 but not a homophone
    "name_differs": -0.4,
    "birth_exact": 0.35,
    "birth_differs": -0.5,
    "gender_same": 0.05,
    "gender_differs": -0.5,
    "household_same": 0.15,   # same household, own or a parent's (a newborn's by its mother's)
    "address_same": 0.15,
    "parent_same": 0.15,      # a parent's RIC in common (birth certificates name both parents)
    "parent_differs": -0.5,   # both name a mother (or a father) and none in common: another family's child
}
LINK_AT = 0.7        # link automatically at or above this score ...
MARGIN = 0.15        # ... when the runner-up is at least this far behind
REVIEW_AT = 0.45     # between REVIEW_AT and LINK_AT (or too close a runner-up): the review queue


@dataclass(frozen=True)
class Mention:
    """One person as one source row describes them (already standardized)."""
    ric: str | None = None
    ric_valid: bool = False
    name: str | None = None
    gender: str | None = None
    birth_date: date | None = None
    households: frozenset[str] = frozenset()   # its household number and its parents'
    address: str | None = None
    mother_ric: str | None = None
    father_ric: str | None = None


@dataclass(frozen=True)
class Scored:
    canonical_id: str
    score: float
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    outcome: str                      # "link", "review" or "new"
    canonical_id: str | None = None
    score: float | None = None
    evidence: dict[str, float] = field(default_factory=dict)
    candidates: tuple[Scored, ...] = ()


@lru_cache(maxsize=200_000)
def name_key(name: str | None) -> str | None:
    """Toneless pinyin, no separators: 张伟 and 张玮 share 'zhangwei'."""
    if not name:
        return None
    return "".join(lazy_pinyin(name.replace("·", ""))).lower()


def ric_body(ric: str | None) -> str | None:
    return ric[:17] if ric and len(ric) == 18 else None


def birth_from_ric(ric: str | None) -> date | None:
    """The birth date digits of an 18-character RIC, when they form a date (also for a bad check character)."""
    if not ric or len(ric) != 18 or not ric[6:14].isdigit():
        return None
    try:
        return date(int(ric[6:10]), int(ric[10:12]), int(ric[12:14]))
    except ValueError:
        return None


def score(mention: Mention, golden: Mention, canonical_id: str) -> Scored:
    """The evidence for ``mention`` being the person ``golden``."""
    evidence: dict[str, float] = {}

    def add(what: str) -> None:
        evidence[what] = WEIGHTS[what]

    if mention.ric and golden.ric:
        add("ric_near" if _same_ric(mention.ric, golden.ric) else "ric_far")
    if mention.name and golden.name:
        if mention.name == golden.name:
            add("name_exact")
        elif name_key(mention.name) == name_key(golden.name):
            add("name_homophone")
        elif ratio(mention.name, golden.name) >= 80:
            add("name_similar")
        else:
            add("name_differs")
    if mention.birth_date and golden.birth_date:
        add("birth_exact" if mention.birth_date == golden.birth_date else "birth_differs")
    if mention.gender in ("1", "2") and golden.gender in ("1", "2"):
        add("gender_same" if mention.gender == golden.gender else "gender_differs")
    if mention.households & golden.households:
        add("household_same")
    if mention.address and mention.address == golden.address:
        add("address_same")
    parents = [_same_ric(ours, theirs) for ours, theirs in ((mention.mother_ric, golden.mother_ric),
                                                            (mention.father_ric, golden.father_ric)) if ours and theirs]
    if parents:
        add("parent_same" if any(parents) else "parent_differs")
    return Scored(canonical_id, round(sum(evidence.values()), 4), evidence)


def _same_ric(a: str, b: str) -> bool:
    """One RIC, allowing a typo: equal, one character off, two neighbours swapped, or the same first 17."""
    return a == b or Levenshtein.distance(a, b) <= 1 or _transposed(a, b) or ric_body(a) == ric_body(b)


def _transposed(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def decide(mention: Mention, candidates: list[tuple[str, Mention]]) -> Decision:
    """Link, review or new, from the golden persons of the mention's blocks."""
    scored = sorted((score(mention, golden, cid) for cid, golden in candidates), key=lambda s: -s.score)
    top = tuple(s for s in scored[:3] if s.score >= REVIEW_AT)
    if not scored or scored[0].score < REVIEW_AT:
        return Decision("new", candidates=top)
    best = scored[0]
    runner_up = scored[1].score if len(scored) > 1 else float("-inf")
    if best.score >= LINK_AT and best.score - runner_up >= MARGIN:
        return Decision("link", best.canonical_id, best.score, best.evidence, top)
    return Decision("review", None, best.score, best.evidence, top)
