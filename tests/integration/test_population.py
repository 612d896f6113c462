"""Decision support on the stack: the population cells the life-event stage keeps from golden changes
agree with a full recount after a live run; what leaves the library (API, Parquet, PNG) shows no cell
under ten residents."""

from datetime import datetime

import psycopg
import pyarrow.parquet as pq
import pytest
import requests

from kintsmesh.security.tokens import issue
from kintsmesh.settings import CITY_TZ, RESOURCE_LIBRARY_DB
from kintsmesh.simulate.runner import run_simulation
from monitoring.lag import wait_for_pipeline
from sinks.library.population import export_parquet, plot_districts, recount

pytestmark = pytest.mark.integration


def caught_up(settings) -> None:
    left = wait_for_pipeline(settings, timeout_s=600)
    assert left == {"normalize": 0, "merge": 0, "events": 0}, f"still to do: {left}"


def test_the_cells_kept_from_golden_changes_agree_with_a_recount_after_a_live_run(settings, tmp_path, fresh_seed):
    caught_up(settings)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        start = recount(conn, datetime.now(CITY_TZ).date())   # an exact start, whatever ran before
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    run_simulation(sim, seed=fresh_seed, initial=300, rate=None, duration_s=0, dirty_rate=0.0, truth_path=None)
    run_simulation(sim, seed=fresh_seed, initial=None, rate=60, duration_s=15, dirty_rate=0.0, truth_path=None)
    caught_up(settings)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        kept = dict(((d, s, c, a, x), n) for d, s, c, a, x, n in conn.execute(
            "SELECT district, street, community, age_band, sex, residents FROM population_cell WHERE residents <> 0"))
        again = recount(conn, datetime.now(CITY_TZ).date())
        counted = dict(((d, s, c, a, x), n) for d, s, c, a, x, n in conn.execute(
            "SELECT district, street, community, age_band, sex, residents FROM population_cell"))
    assert again["residents"] > start["residents"], (start, again)   # the run's city arrived
    differ = {cell: (kept.get(cell), counted.get(cell)) for cell in kept.keys() | counted.keys()
              if kept.get(cell) != counted.get(cell)}
    assert not differ, list(differ.items())[:10]


def test_what_leaves_the_library_shows_no_cell_under_ten(settings, tmp_path):
    planner = {"Authorization": f"Bearer {issue(settings.secrets_dir, 'planning-office')}"}
    url = f"{settings.api_endpoint}/aggregates"
    answer = requests.get(f"{url}/population", params={"level": "community"}, headers=planner, timeout=30,
                          verify=str(settings.trusted_ca))
    assert answer.status_code == 200, answer.text
    areas = answer.json()["population"]
    counts = [c["residents"] for a in areas for c in a["cells"]] + [a["residents"] for a in areas]
    assert counts and not any(n is not None and 0 < n < 10 for n in counts)
    assert any(c["suppressed"] for a in areas for c in a["cells"])   # a small city has small cells
    needs = requests.get(f"{url}/needs", headers=planner, timeout=30, verify=str(settings.trusted_ca)).json()
    assert needs["standard"]["residents_per_health_centre"] == 15000 and needs["districts"]
    assert all(d["health_centres_needed"] >= 0 and d["health_centres_existing"] >= 0 for d in needs["districts"])
    bureau = {"Authorization": f"Bearer {issue(settings.secrets_dir, 'education-bureau')}"}
    assert requests.get(f"{url}/needs", headers=bureau, timeout=10, verify=str(settings.trusted_ca)).status_code == 403

    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        rows = export_parquet(conn, tmp_path / "population.parquet", "street")
        charts = plot_districts(conn, tmp_path / "charts")
    table = pq.read_table(tmp_path / "population.parquet").to_pylist()
    assert rows == len(table) > 0 and set(table[0]) == {"district", "street", "age_band", "sex", "residents", "suppressed"}
    assert not any(r["residents"] is not None and 0 < r["residents"] < 10 for r in table)
    assert all(r["suppressed"] == (r["residents"] is None) for r in table)
    assert charts and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in charts)
