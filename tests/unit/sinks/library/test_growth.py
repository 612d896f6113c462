"""When a load ANALYZEs the tables it grows: once per doubling, whatever the number of its sessions."""

from sinks.library import Growth


def test_a_loads_sessions_share_one_analyze_schedule():
    growth = Growth()   # two sessions merging chunks of 2,000 in turn
    due = [growth.due(2_000) for _ in range(12)]
    assert [i for i, d in enumerate(due) if d] == [2, 5, 11]   # at 6k (5k passed), then 12k, then 24k
