import itertools
from datetime import date

from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.events import EVENT_WEIGHTS, LiveCity
from kintsmesh.simulate.writer import statement


def live_writes(seed: int, n: int = 300):
    city = build_city(seed, 1500, date(2026, 11, 27))
    live = LiveCity(city, seed, dirty_rate=0.05)
    return city, list(itertools.islice(live.events(), n))


def flatten(events):
    return [(kind, dept, row.table, op, row.values, row.truth)
            for kind, writes in events for dept, changes in writes for row, op in changes]


def test_live_changes_are_deterministic_for_a_seed():
    assert flatten(live_writes(5)[1]) == flatten(live_writes(5)[1])
    assert flatten(live_writes(5)[1]) != flatten(live_writes(6)[1])


def test_live_changes_cover_the_event_kinds_and_stay_consistent_with_the_truth():
    city, events = live_writes(9, 600)
    kinds = {kind for kind, _ in events}
    assert len(kinds) >= len(EVENT_WEIGHTS) - 2
    known = set(city.people) | set(city.enterprises) | set(city.houses) | set(city.households)
    ops = set()
    for _, writes in events:
        for department, changes in writes:
            for row, op in changes:
                assert row.database == department
                assert set(row.truth.values()) <= known, row
                ops.add(op)
    assert ops == {"c", "u", "d"}


def test_department_sql_updates_by_key_and_stamps_the_update_time():
    _, events = live_writes(9, 200)
    updates = [(row, op) for _, w in events for _, ch in w for row, op in ch if op == "u" and row.table == "rk_jbxx"]
    text, params = statement(*updates[0])
    assert text.startswith('UPDATE "rk_jbxx" SET') and 'gxsj = localtimestamp(0) WHERE "rkbh" = %s' in text
    assert params[-1] == updates[0][0].values["rkbh"]
