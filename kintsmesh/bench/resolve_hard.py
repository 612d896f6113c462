"""``kintsmesh bench resolve --hard``: person linkage on the hard set (``kintsmesh.bench.hardset``), ours and
Splink's on the same records in the same run.

The hard set's raw rows go through the normalize stage's mapping engine (the YAML files of the hard set)
into GLDM person records; ours are linked by the resolver's in-memory entry point
(``streams.resolve.memory.resolve_records``: the resolve stage's code, in arrival order, in batches), and
the same records are linked by Splink (DuckDB backend: m by expectation maximisation, u by random
sampling, term frequencies on the name, clusters at a match probability threshold). Ours uses weights
estimated on these records without their labels (``streams.resolve.estimate``), as Splink trains on them;
the F1 with the shipped weights (estimated on the simulator's city) is reported beside it. Both are scored
pairwise against the generator's truth, overall and per category: the split rate (true pairs left apart)
and the wrong-merge rate (pairs put together that are two people).
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from datetime import date
from math import comb
from pathlib import Path
from typing import Any

from kintsmesh.bench import write_result
from kintsmesh.bench.hardset import CATEGORIES, RawRow, generate
from kintsmesh.bench.resolve import pairwise
from streams.normalize import compiled
from streams.normalize import mapping as mapping_engine
from streams.normalize import standardize as std
from streams.resolve import matching
from streams.resolve.estimate import estimate
from streams.resolve.memory import resolve_records

HARDSET_DIR = Path(__file__).resolve().parent / "hardset"
DEFAULT_PEOPLE, DEFAULT_SEED = 50_000, 7


def hard_mappings() -> dict[str, mapping_engine.SourceMapping]:
    return {m.table: m for m in (mapping_engine.load_mapping(p) for p in sorted(HARDSET_DIR.glob("*.yaml")))}


def one_per_person() -> frozenset[tuple[str, str, str]]:
    """The hard set's kinds of source rows a person holds one of (a birth certificate's newborn)."""
    return frozenset((m.department, m.table, o.role) for m in hard_mappings().values() for o in m.outputs
                     if o.one_per_person)


def person_records(rows: list[RawRow]) -> tuple[list[dict[str, Any]], list[tuple[str, str]], Counter[str]]:
    """Each row's person record through the mapping engine, with its (true person, category); rejected
    rows counted by reason."""
    maps = hard_mappings()
    records, truth, rejected = [], [], Counter[str]()
    for lsn, raw in enumerate(rows, start=1):
        provenance = {"department": "hard", "table": raw.source, "primary_key": raw.row["id"],
                      "change_lsn": lsn, "commit_lsn": lsn, "committed_at": 1_700_000_000_000 + lsn}
        try:
            applied = compiled.apply(maps[raw.source], raw.row, provenance, retracted=False)
        except std.Rejected as exc:
            rejected[exc.reason] += 1
            continue
        for candidate in applied.candidates:
            records.append(candidate.record)
            truth.append((raw.truth[candidate.role if candidate.role in raw.truth else "person"], raw.category))
    return records, truth, rejected


def scores(clusters: list[str], truth: list[tuple[str, str]]) -> dict[str, Any]:
    """Pairwise precision / recall / F1, and per category the split rate and the wrong-merge rate."""
    overall = pairwise(dict(enumerate(clusters)), {i: t for i, (t, _) in enumerate(truth)})
    members: dict[str, list[int]] = defaultdict(list)
    for i, cluster in enumerate(clusters):
        members[cluster].append(i)
    per: dict[str, dict[str, Any]] = {}
    for category in CATEGORIES:
        mine = [i for i, (_, c) in enumerate(truth) if c == category]
        if not mine:
            continue
        true_pairs = Counter(truth[i][0] for i in mine)
        together = Counter((truth[i][0], clusters[i]) for i in mine)
        actual = sum(comb(n, 2) for n in true_pairs.values())
        kept = sum(comb(n, 2) for n in together.values())
        wrong = predicted = 0
        for cluster in {clusters[i] for i in mine}:   # pairs of a category's record with any record of its cluster
            group = members[cluster]
            own = [i for i in group if truth[i][1] == category]
            for i in own:
                for j in group:
                    if j != i and (truth[j][1] != category or j > i):
                        predicted += 1
                        wrong += truth[i][0] != truth[j][0]
        per[category] = {"records": len(mine), "true_pairs": actual,
                         "split_rate": round(1 - kept / actual, 5) if actual else 0.0,
                         "wrong_merge_rate": round(wrong / predicted, 5) if predicted else 0.0}
    return {**overall, "categories": per}


def ours(records: list[dict[str, Any]], weights: matching.Weights | None = None) -> tuple[list[str], dict[str, Any]]:
    started = time.perf_counter()
    resolutions = resolve_records(records, batch_size=500, one_per_person=one_per_person(), weights=weights)
    seconds = time.perf_counter() - started
    methods = Counter(r.method for r in resolutions)
    clusters = [r.canonical_id or f"review:{r.index}" for r in resolutions]
    return clusters, {"seconds": round(seconds, 2), "records_per_s": round(len(records) / seconds, 1),
                      "review_rate": round(methods["review"] / len(records), 5), "link_methods": dict(methods)}


def splink_table(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records as Splink's input: one row of plain columns each, the same standardized values we use."""
    table = []
    for i, r in enumerate(records):
        address = r.get("address") or {}
        ids = {(x["type"], x["issuer"]): x["value"] for x in r.get("identifiers") or ()}
        birth = r.get("birth_date")
        ric = r.get("ric")
        table.append({
            "unique_id": i, "ric": ric, "name": r.get("name"), "name_key": matching.name_key(r.get("name")),
            "gender": r.get("gender") if r.get("gender") in ("1", "2") else None,
            "birth_date": birth.isoformat() if isinstance(birth, date) else None,
            "birth_year": birth.year if isinstance(birth, date) else None,
            "ric_birth": ric[6:14] if ric and len(ric) == 18 else None,
            "address": address.get("full"), "district": address.get("district"),
            "household_no": r.get("household_no"), "mother_ric": r.get("mother_ric"),
            "si_no": ids.get(("social_insurance_no", "hard-hrss")), "phone": ids.get(("phone", "any"))})
    return table


def splink(records: list[dict[str, Any]], threshold: float = 0.999) -> tuple[list[str], dict[str, Any]]:
    """Splink 4/5 as its documentation sets up a person dedupe, on our columns. The clustering threshold
    is the one that gave Splink its best F1 on a 10,000-person hard set (0.9 / 0.95 / 0.99 / 0.999 tried:
    F1 0.90 / 0.91 / 0.92 / 0.93)."""
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.ERROR)
    started = time.perf_counter()
    db = DuckDBAPI()
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.LevenshteinAtThresholds("ric", [1, 2]),
            cl.NameComparison("name").configure(term_frequency_adjustments=True),
            cl.ExactMatch("name_key").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison("birth_date", input_is_string=True),
            cl.ExactMatch("gender"),
            cl.LevenshteinAtThresholds("address", [3, 8]),
            cl.ExactMatch("household_no"),
            cl.ExactMatch("mother_ric"),
            cl.ExactMatch("si_no"),
            cl.ExactMatch("phone"),
        ],
        blocking_rules_to_generate_predictions=[
            block_on("ric"), block_on("si_no"), block_on("phone"), block_on("name_key", "birth_year"),
            block_on("birth_date", "gender"), block_on("name_key", "district"), block_on("substr(ric, 1, 17)"),
            block_on("ric_birth", "name_key"),
        ],
        retain_intermediate_calculation_columns=False,
    )
    linker = Linker(db.register(splink_table(records)), settings)
    linker.training.estimate_probability_two_random_records_match([block_on("ric")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=1)
    for rule in (block_on("name_key", "birth_date"), block_on("ric"), block_on("address")):
        linker.training.estimate_parameters_using_expectation_maximisation(rule)
    predictions = linker.inference.predict(threshold_match_probability=0.5)
    clustered = linker.clustering.cluster_pairwise_predictions_at_threshold(predictions, threshold)
    cluster_of = {int(row["unique_id"]): str(row["cluster_id"]) for row in clustered.as_record_list()}
    seconds = time.perf_counter() - started
    return [cluster_of.get(i, f"single:{i}") for i in range(len(records))], {
        "seconds": round(seconds, 2), "records_per_s": round(len(records) / seconds, 1), "threshold": threshold}


def run(people: int, seed: int, today: date, with_splink: bool = True) -> dict[str, Any]:
    rows, persons = generate(people, seed, today)
    records, truth, rejected = person_records(rows)
    print(f"bench resolve --hard: {len(persons):,} persons, {len(rows):,} rows -> {len(records):,} person records"
          f" ({sum(not r.get('ric') for r in records) / len(records):.1%} without a RIC);"
          f" {sum(rejected.values()):,} rows rejected", flush=True)
    started = time.perf_counter()
    weights, estimated = estimate(records, random_pairs=1_000_000, source="the hard set, in this run")
    estimate_s = time.perf_counter() - started
    clusters, run_info = ours(records, weights)
    result: dict[str, Any] = {"people": len(persons), "records": len(records), "rejected": dict(rejected),
                              **scores(clusters, truth), **run_info, "estimate_seconds": round(estimate_s, 2),
                              "weights": "estimated without labels on these records in this run, as Splink's are",
                              "seed": seed}
    shipped, shipped_info = ours(records)
    result["shipped_weights"] = {**{k: v for k, v in scores(shipped, truth).items() if k != "categories"},
                                 "review_rate": shipped_info["review_rate"]}
    if with_splink:
        theirs, info = splink(records)
        result["splink"] = {**scores(theirs, truth), **info}
    return result


def main(people: int, seed: int, today: date, out: Path | None, with_splink: bool = True) -> dict[str, Any]:
    result = run(people, seed, today, with_splink)
    other = result.get("splink", {})
    print(f"  {'':22} {'kintsmesh':>10} {'splink':>10}")
    for metric in ("precision", "recall", "f1"):
        print(f"  {metric:22} {result[metric]:>10.4f} {other.get(metric, float('nan')):>10.4f}")
    print(f"  {'review rate':22} {result['review_rate']:>10.4f}")
    print(f"  {'F1, shipped weights':22} {result['shipped_weights']['f1']:>10.4f}   (weights.json, estimated on the simulator)")
    print(f"  {'records/s':22} {result['records_per_s']:>10,.0f} {other.get('records_per_s', float('nan')):>10,.0f}")
    print(f"  {'category':22} {'split':>10} {'wrong':>10} {'split':>10} {'wrong':>10}")
    for category, ours_c in result["categories"].items():
        theirs_c = other.get("categories", {}).get(category, {})
        print(f"  {category:22} {ours_c['split_rate']:>10.4f} {ours_c['wrong_merge_rate']:>10.4f}"
              f" {theirs_c.get('split_rate', float('nan')):>10.4f} {theirs_c.get('wrong_merge_rate', float('nan')):>10.4f}")
    default = (people, seed) == (DEFAULT_PEOPLE, DEFAULT_SEED)
    write_result("resolve-hard" if default else f"resolve-hard-{people}-{seed}", result, out)
    return result
