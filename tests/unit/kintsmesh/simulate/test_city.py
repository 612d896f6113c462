import random
from collections import Counter
from datetime import date

import pytest
from stdnum.cn import ric, uscc

from kintsmesh.simulate.city import age, build_city, ric_class
from kintsmesh.simulate.departments import PRIMARY_KEYS, DepartmentViews, initial_rows

TODAY = date(2026, 11, 27)


def rows_for(seed: int, n: int = 1500, dirty: float = 0.05):
    city = build_city(seed, n, TODAY)
    return city, initial_rows(city, DepartmentViews(city, random.Random(seed + 1), dirty))


@pytest.fixture(scope="module")
def sample():
    return rows_for(7)


def test_same_seed_same_rows():
    _, first = rows_for(11, 600)
    _, second = rows_for(11, 600)
    assert [(r.table, r.values, r.truth) for r in first] == [(r.table, r.values, r.truth) for r in second]
    _, other = rows_for(12, 600)
    assert [r.values for r in first] != [r.values for r in other]


def test_cities_of_different_seeds_share_no_person_identifier():
    # the demo's city (seed 2026) and the merge benchmark's (seed 77) drew the same child before
    first, second = build_city(2026, 3000, TODAY), build_city(77, 3000, TODAY)
    assert not set(first.people) & set(second.people)
    for city in (first, second):   # the sequence number's hundreds digit is the seed's class
        assert {int(ric[14:17]) // 100 for ric in city.people} == {ric_class(city.seed)}
    assert ric_class(1003) != ric_class(1004)   # test cities (1000 + namespace) of ten namespaces in a row


def test_true_identifiers_are_valid(sample):
    city, _ = sample
    # check character and birth date; python-stdnum's birth-place history starts in the
    # 1980s, so its full is_valid() refuses real area codes for people born before that
    assert all(ric.calc_check_digit(p) == p[-1] for p in city.people)
    assert all(ric.get_birth_date(p) == city.people[p].birth for p in city.people)
    assert all(uscc.is_valid(e) for e in city.enterprises)


def test_ground_truth_links_point_at_real_entities(sample):
    city, rows = sample
    known = set(city.people) | set(city.enterprises) | set(city.houses) | set(city.households)
    for row in rows:
        assert row.truth, row
        for role, canonical in row.truth.items():
            # a divorced single's former spouse may live elsewhere; everything else is in the city
            assert canonical in known, (row.table, role, canonical)


def test_primary_keys_are_unique_per_table(sample):
    _, rows = sample
    keys = Counter((r.database, r.table, r.key) for r in rows)
    assert max(keys.values()) == 1
    assert {(r.database, r.table) for r in rows} == set(PRIMARY_KEYS)


def test_families_include_children_turning_six_this_year(sample):
    city, _ = sample
    six = [p for p in city.people.values() if TODAY.year - p.birth.year == 6]
    assert six, "the school-age life event needs children turning six this year"
    assert all(p.mother for p in six)
    ages = Counter(min(age(p.birth, TODAY) // 10, 8) for p in city.people.values())
    assert len(ages) >= 7  # every decade of life is represented


def test_dirty_values_appear_at_about_the_configured_rate():
    city, rows = rows_for(3, 1500, dirty=0.10)
    police = [r for r in rows if r.table == "rk_jbxx"]
    dirty = sum(r.values["gmsfhm"] != r.truth["person"] for r in police)
    assert 0.05 < dirty / len(police) < 0.16
    _, clean = rows_for(3, 1500, dirty=0.0)
    assert all(r.values["gmsfhm"] == r.truth["person"] for r in clean if r.table == "rk_jbxx")


def test_department_habits(sample):
    _, rows = sample
    by_table = {}
    for r in rows:
        by_table.setdefault(r.table, r.values)
    assert by_table["rk_jbxx"]["hjdz"].startswith("广东省深圳市")
    assert not by_table["fw_jbxx"]["zl"].startswith("广东省")
    assert by_table["cszm"]["xsexb"] in ("男", "女")
    assert by_table["sb_cbry"]["xb"] in ("M", "F")
    assert len(by_table["rk_jbxx"]["csrq"]) == 8
    assert "/" in by_table["xs_xj"]["csrq"]


def test_a_city_pickled_before_a_field_was_added_loads_with_that_field_empty():
    import pickle

    city = build_city(3, 50, TODAY)
    state = dict(city.__dict__)
    del state["moves"]                       # what a city saved by an older version holds
    older = pickle.loads(pickle.dumps(city))
    older.__dict__.clear()
    older.__setstate__(state)
    assert older.moves == [] and older.people == city.people and older.seed == 3
    assert pickle.loads(pickle.dumps(city)).moves == city.moves


def test_a_write_colliding_with_another_citys_rows_says_how_to_start_clean():
    from types import SimpleNamespace

    import psycopg

    from kintsmesh.errors import KintsmeshError
    from kintsmesh.simulate.writer import DepartmentWriter

    collided = SimpleNamespace(errors=[psycopg.errors.UniqueViolation("duplicate key value violates unique constraint")])
    with pytest.raises(KintsmeshError, match="kintsmesh stack reset"):
        DepartmentWriter.raise_first_error(collided)  # type: ignore[arg-type]
    other = SimpleNamespace(errors=[psycopg.errors.UndefinedTable("no such table")])
    with pytest.raises(KintsmeshError) as raised:
        DepartmentWriter.raise_first_error(other)  # type: ignore[arg-type]
    assert "stack reset" not in str(raised.value)


def test_a_killed_live_runs_changes_are_drawn_again_from_the_saved_city_and_overwrite_on_replay():
    import pickle

    from kintsmesh.simulate.events import LiveCity
    from kintsmesh.simulate.writer import statement

    saved = pickle.dumps(build_city(21, 400, TODAY))

    def draws(n: int) -> list:
        events = LiveCity(pickle.loads(saved), 21, 0.05).events()
        return [(kind, [(d, [(row.table, row.values, op) for row, op in changes]) for d, changes in writes])
                for kind, writes in (next(events) for _ in range(n))]

    assert draws(300) == draws(300)   # what a killed run wrote, a run from the same saved city writes again
    row = next(r for r in rows_for(21, 400)[1] if (r.database, r.table) == ("health", "cszm"))
    plain, _ = statement(row, "c")
    replayed, values = statement(row, "c", replay=True)
    assert "ON CONFLICT" not in plain
    assert replayed.startswith(plain) and 'ON CONFLICT ("cszmbh") DO UPDATE SET' in replayed
    assert '"cszmbh" = EXCLUDED' not in replayed and len(values) == len(row.values)


def test_a_birth_date_whose_seed_numbers_are_used_up_still_gets_a_free_number():
    from kintsmesh.simulate.city import CityBuilder

    city = build_city(5, 200, TODAY)
    builder = CityBuilder(city, random.Random(1))
    born = date(2026, 11, 25)
    numbers = set()
    for _ in range(1200):   # more than the 100 sequence numbers a seed has per district and gender
        number = builder.new_ric(born, "1", local=True)
        assert number not in numbers and ric.is_valid(number)
        numbers.add(number)
        city.people[number] = None   # type: ignore[assignment]   # taken


def test_an_unfinished_runs_reservation_names_its_events_and_seed(tmp_path):
    from kintsmesh.simulate.runner import reserved_run

    marker = tmp_path / "live-run.unfinished"
    assert reserved_run(marker, 7) == (0, 7)
    marker.write_text("1500 2026 (events reserved, seed)\n")
    assert reserved_run(marker, 7) == (1500, 2026)
    marker.write_text("1000 events reserved by a live run\n")   # without a seed: the caller's
    assert reserved_run(marker, 7) == (1000, 7)
