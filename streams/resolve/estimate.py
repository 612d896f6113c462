"""Fellegi–Sunter parameters estimated from person records without labels, as Splink estimates them.

* **u** (a level's probability among pairs of two different people): the level frequencies over pairs
  drawn at random from the records (almost all of them two people);
* **m** (its probability among pairs of one person): expectation maximisation, u held fixed, in sessions
  each over the pairs one rule blocks (same RIC body; same name and birth date; same name and address), leaving
  out the comparisons the rule decides: each pair's match probability from the current m, then m as the
  probability-weighted level frequencies, until the share of matches settles; a comparison trained in
  several sessions gets their mean, and no level's m falls below ``M_FLOOR``;
* the **prior** (a mention being one given candidate person): one over the number of persons, estimated
  as the records over the records per person where a valid RIC tells.

The records are GLDM person records as the normalize stage produces them (from the library's
contributions, or from any department data run through the mappings). ``kintsmesh resolve estimate``
writes the result as ``streams/resolve/weights.json`` (or elsewhere); the resolver reads it at start.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from streams.resolve import matching
from streams.resolve.identity import dated, mention_of, own_household

PSEUDO_COUNT = 1.0   # per level, so no level is impossible on either side


Counts = dict[str, defaultdict[str, float]]   # comparison -> level -> (weighted) count


def _counts() -> Counts:
    return defaultdict(lambda: defaultdict(float))


def _frequencies(counts: Counts, pseudo: float = PSEUDO_COUNT) -> dict[str, dict[str, float]]:
    out = {}
    for comparison, levels in matching.LEVELS.items():
        seen: dict[str, float] = counts.get(comparison, {})
        total = sum(seen.values()) + pseudo * len(levels)
        out[comparison] = {level: (seen.get(level, 0.0) + pseudo) / total for level in levels}
    return out


# EM sessions, as Splink trains: each over the pairs one rule blocks, leaving out the comparisons the
# rule decides (they agree on every pair it blocks, so the pairs say nothing about them)
Rule = Callable[[matching.Mention], set[str]]
SESSIONS: dict[str, tuple[Rule, frozenset[str]]] = {
    "ric_body": (lambda m: {r[:17] for r in m.rics if len(r) == 18}, frozenset({"ric", "birth"})),
    "name_birth": (lambda m: {f"{n}|{b}" for n in m.names for b in m.births}, frozenset({"name", "birth"})),
    "name_address": (lambda m: {f"{n}|{a.full}" for n in m.names for a in m.addresses}, frozenset({"name", "address"})),
}
# no level of one person is rarer than this: records of kinds the sample did not hold (a move, a slip the
# departments here never make) are evidence, not proof, against a match
M_FLOOR = 0.02


def blocked_pairs(mentions: list[matching.Mention], rule: Rule, largest_block: int = 40, limit: int = 1_000_000,
                  seed: int = 1) -> list[tuple[int, int]]:
    """Pairs of records the rule puts in one block, blocks larger than ``largest_block`` left out, at most
    ``limit`` pairs (a random sample beyond)."""
    blocks: dict[str, list[int]] = defaultdict(list)
    for i, mention in enumerate(mentions):
        for key in rule(mention):
            blocks[key].append(i)
    pairs: set[tuple[int, int]] = set()
    for members in blocks.values():
        if 1 < len(members) <= largest_block:
            pairs.update((a, b) for x, a in enumerate(members) for b in members[x + 1:])
    ordered = sorted(pairs)
    return random.Random(seed).sample(ordered, limit) if len(ordered) > limit else ordered


def _em(patterns: Counter[tuple[tuple[str, str], ...]], m: dict[str, dict[str, float]],
        u: dict[str, dict[str, float]], iterations: int) -> tuple[Counts, float]:
    """Expectation maximisation of m (u fixed) over comparison patterns; the m counts and the match share."""
    share, total = 0.5, float(sum(patterns.values()))
    counts = _counts()
    for _ in range(iterations):
        counts = _counts()
        matched = 0.0
        for pattern, count in patterns.items():
            log_odds = math.log(share / (1 - share)) + sum(math.log(m[c][level] / u[c][level]) for c, level in pattern)
            p = 1 / (1 + math.exp(-max(min(log_odds, 500), -500)))
            matched += p * count
            for comparison, level in pattern:
                counts[comparison][level] += p * count
        m = {**m, **{c: f for c, f in _frequencies(counts, 1e-3).items() if c in counts}}
        new_share = min(max(matched / total, 1e-6), 1 - 1e-6)
        if abs(new_share - share) < 1e-7:
            break
        share = new_share
    return counts, share


def _floored(levels: dict[str, float]) -> dict[str, float]:
    raised = {level: max(p, M_FLOOR) for level, p in levels.items()}
    total = sum(raised.values())
    return {level: round(p / total, 8) for level, p in raised.items()}


def estimate(records: Iterable[dict[str, Any]], random_pairs: int = 1_000_000, iterations: int = 40, seed: int = 1,
             source: str = "", base: matching.Weights | None = None,
             progress: Callable[[str], None] | None = None) -> tuple[matching.Weights, dict[str, Any]]:
    """The weights from ``records`` (GLDM persons), and a report of what the estimate saw."""
    say = progress or (lambda _: None)
    mentions = [dated(mention_of(r, own_household(r))) for r in records]
    n = len(mentions)
    if n < 100:
        raise ValueError(f"{n} person records: too few to estimate weights from (100 at least)")
    rng = random.Random(seed)
    u_counts = _counts()
    for _ in range(random_pairs):
        i, j = rng.randrange(n), rng.randrange(n)
        if i != j:
            for comparison, level in matching.compare(mentions[i], mentions[j]).items():
                u_counts[comparison][level] += 1
    u = _frequencies(u_counts)
    say(f"u from {random_pairs:,} random pairs")
    base = base or matching.weights()
    trained: dict[str, list[dict[str, float]]] = defaultdict(list)
    report: dict[str, Any] = {"records": n, "random_pairs": random_pairs, "sessions": {}}
    for name, (rule, decided) in SESSIONS.items():
        patterns = Counter(tuple(sorted((c, level) for c, level in matching.compare(mentions[a], mentions[b]).items()
                                        if c not in decided))
                           for a, b in blocked_pairs(mentions, rule, seed=seed))
        if not patterns:
            continue
        counts, share = _em(patterns, {c: dict(v) for c, v in base.m.items()}, u, iterations)
        for comparison, f in _frequencies(counts, 1e-3).items():
            if counts.get(comparison) and sum(counts[comparison].values()) >= 10:
                trained[comparison].append(f)
        report["sessions"][name] = {"pairs": sum(patterns.values()), "one_person": round(share, 4)}
        say(f"EM blocked on {name}: {sum(patterns.values()):,} pairs, {share:.1%} one person")
    u = {c: u[c] if u_counts.get(c) else dict(base.u[c]) for c in matching.LEVELS}   # never seen: as it was
    m = {c: _floored({level: sum(f[level] for f in trained[c]) / len(trained[c]) for level in levels}
                     if trained.get(c) else dict(base.m[c])) for c, levels in matching.LEVELS.items()}
    # the prior, for a mention and one candidate person: one over the persons the records describe,
    # counted as the records over the records per person (measured where a valid RIC tells)
    by_ric = Counter(m_.valid_ric for m_ in mentions if m_.valid_ric)
    per_person = sum(by_ric.values()) / len(by_ric) if by_ric else 1.0
    prior = min(max(per_person / n, 1e-12), 0.5)
    report.update(prior=prior, untrained=sorted(set(matching.LEVELS) - set(trained)))
    return matching.Weights(m, u, prior, base.link_probability, base.review_probability, base.margin_bits,
                            source), report
