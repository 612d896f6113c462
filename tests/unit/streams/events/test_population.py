"""Decision support's pure core: a resident's cell, the moves a change makes, birthdays entering a band,
suppression of small cells, the needs per district."""

from collections import Counter
from datetime import date

from streams.events.population import age_band, birthday_moves, cell_of, facilities, moves, needs, rolled_up, suppressed

TODAY = date(2026, 12, 5)
HOME = {"district": "福田区", "street": "园岭街道", "community": "百花社区", "full": "福田区园岭街道百花社区1号"}


def person(**fields):
    return {"birth_date": "1990-05-01", "gender": "2", "address": HOME, **fields}


def test_a_resident_counts_in_its_area_band_and_sex_and_the_dead_or_undated_do_not():
    assert cell_of(person(), TODAY) == ("福田区", "园岭街道", "百花社区", "35-39", "F")
    assert cell_of(person(address={"district": "南山区", "full": "南山区"}, gender="9"), TODAY) == (
        "南山区", "", "", "35-39", "U")
    assert cell_of(person(death_date="2026-01-01"), TODAY) is None
    assert cell_of(person(birth_date=None), TODAY) is None and cell_of(None, TODAY) is None
    assert [age_band(a) for a in (0, 4, 5, 84, 85, 103)] == ["0-4", "0-4", "5-9", "80-84", "85+", "85+"]


def test_a_change_moves_a_resident_once_and_a_change_within_its_cell_moves_nothing():
    moved = {**HOME, "district": "南山区", "street": "粤海街道", "community": "科技园社区"}
    assert moves([(person(), person(address=moved))], TODAY) == Counter({
        ("福田区", "园岭街道", "百花社区", "35-39", "F"): -1, ("南山区", "粤海街道", "科技园社区", "35-39", "F"): 1})
    assert moves([(person(), person(name="改名"))], TODAY) == Counter()
    assert moves([(None, person()), (person(), person(death_date="2026-12-01"))], TODAY) == Counter()   # came, died
    assert moves([(person(), None)], TODAY) == Counter({("福田区", "园岭街道", "百花社区", "35-39", "F"): -1})


def test_a_birthday_moves_the_residents_entering_a_band_and_no_one_else():
    places = [("福田区", "园岭街道", "百花社区", "M"), ("福田区", "园岭街道", "百花社区", "M")]
    sixty = birthday_moves(date(1966, 12, 5), places, TODAY)
    assert sixty == Counter({("福田区", "园岭街道", "百花社区", "55-59", "M"): -2, ("福田区", "园岭街道", "百花社区", "60-64", "M"): 2})
    assert birthday_moves(date(1965, 12, 5), places, TODAY) == Counter()   # 61: same band
    assert birthday_moves(date(2000, 2, 29), places[:1], date(2025, 3, 1)) == Counter({
        ("福田区", "园岭街道", "百花社区", "20-24", "M"): -1, ("福田区", "园岭街道", "百花社区", "25-29", "M"): 1})


def test_small_cells_never_leave_the_library_and_areas_roll_up():
    assert [suppressed(n) for n in (0, 1, 9, 10, 250)] == [0, None, None, 10, 250]
    cells = [(("福田区", "园岭街道", "百花社区", "0-4", "F"), 4), (("福田区", "沙头街道", "天安社区", "0-4", "F"), 8)]
    assert rolled_up(cells, "district") == {("福田区",): Counter({("0-4", "F"): 12})}
    assert len(rolled_up(cells, "community")) == 2


def test_health_centres_at_one_per_fifteen_thousand_against_those_there_are():
    spec = {"residents_per_health_centre": 15000, "school_entry_age": 6, "health_centres": {"福田区": 1, "盐田区": 2}}
    rows = {r["district"]: r for r in needs({"福田区": 30001, "南山区": 0}, {"福田区": 300}, spec)}
    assert rows["福田区"]["health_centres_needed"] == 3 and rows["福田区"]["health_centres_missing"] == 2
    assert rows["福田区"]["school_places_next_september"] == 300
    assert rows["盐田区"]["health_centres_missing"] == 0 and rows["南山区"]["health_centres_needed"] == 0
    assert facilities()["residents_per_health_centre"] == 15000


def test_any_json_a_golden_change_carries_gives_a_cell_or_none_never_an_error():
    odd = person(address={"district": 44, "street": ["x"], "community": None}, gender=1)
    assert cell_of(odd, TODAY) == ("", "", "", "35-39", "U")
    for record in ([1, 2], "a person", 7, person(address=[HOME]), person(birth_date={"y": 1990})):
        cell = cell_of(record, TODAY)
        assert cell is None or all(isinstance(part, str) for part in cell)
