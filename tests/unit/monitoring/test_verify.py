"""kintsmesh verify's judgement and report (the facts it gathers are checked on the real stack)."""

from rich.console import Console

from monitoring.verify import TableCheck, Verification


def report(result: Verification) -> str:
    console = Console(width=140, record=True)
    for line in result.render():
        console.print(line)
    return console.export_text()


def test_everything_accounted_for_is_verified_and_totals_are_per_department():
    result = Verification([TableCheck("police", "rk_jbxx", rows=10, in_library=9, in_dlq=1),
                           TableCheck("police", "hj_hu", rows=5, in_library=4, in_flight=1),
                           TableCheck("health", "cszm", rows=3, in_library=2, no_output=1)],
                          changes=20, events=4)
    assert result.ok and result.missing == 0
    police = result.by_department()["police"]
    assert (police.rows, police.in_library, police.in_dlq, police.in_flight) == (15, 13, 1, 1)
    text = report(result)
    assert "verified: nothing lost, nothing twice" in text and "NOT verified" not in text


def test_a_missing_row_or_anything_twice_fails_and_is_named():
    missing = Verification([TableCheck("hrss", "sb_jfmx", rows=3, in_library=2, missing=["G1|202401|110"])])
    assert not missing.ok and missing.missing == 1
    text = report(missing)
    assert "hrss.sb_jfmx: 1 rows in no library table and no DLQ, e.g. G1|202401|110" in text and "NOT verified" in text
    for twice in ({"history_duplicates": 1}, {"history_gaps": 1}, {"change_duplicates": 2}, {"event_duplicates": 1}):
        assert not Verification([], **twice).ok, twice
