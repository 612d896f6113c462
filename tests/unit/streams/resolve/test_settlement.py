"""The resolve stage's hand-over to the merge stage (``Settlement``) survives its trip through
``settle_queue``: what the merge stage reads back settles exactly what resolve touched."""

from __future__ import annotations

import orjson

from streams.resolve.identity import Settlement, SourceRef

POLICE = SourceRef("police", "rk_jbxx", "R1", "person")
HEALTH = SourceRef("health", "cszm", "C1", "child")
MARRIAGE = SourceRef("civil_affairs", "hy_djxx", "M1", "person")


def through_the_queue(settlements: list[Settlement]) -> Settlement:
    """Queue rows as the merge stage reads them (jsonb comes back as plain JSON), in queue order."""
    back = Settlement()
    for settlement in settlements:
        for entity, cid, causes, fallback, rows, absorbed_by in settlement.queued():
            back.add_queued(entity, cid, orjson.loads(orjson.dumps(causes)),
                            None if fallback is None else orjson.loads(orjson.dumps(fallback)),
                            orjson.loads(orjson.dumps(rows)), absorbed_by)
    return back


def test_a_settlement_read_back_from_the_queue_is_the_one_queued():
    s = Settlement()
    s.touch("person", "P1", POLICE, {"department": "police", "committed_at": 1})
    s.person_rows["P1"].add(POLICE.row)
    s.touch("certificate", "birth:1", HEALTH, {"department": "health", "committed_at": 2})
    s.touch_without_change("person", "P~orphan", {"department": "police", "committed_at": 1})
    s.absorbed["P~orphan"] = "P1"
    back = through_the_queue([s])
    assert back.records() == {"person": {"P1", "P~orphan"}, "certificate": {"birth:1"}}
    assert back.causes == s.causes
    assert back.last_cause(("person", "P~orphan")) == {"department": "police", "committed_at": 1}
    assert back.absorbed == {"P~orphan": "P1"}
    assert back.person_rows["P1"] == {("police", "rk_jbxx", "R1")}


def test_rows_of_one_record_queued_by_two_batches_keep_the_order_of_their_changes():
    """A version's cause is the latest change that supplied what changed: two queue rows of one person
    merged together must list the later batch's changes last, a row changed again moving to the end."""
    first, second = Settlement(), Settlement()
    first.touch("person", "P1", POLICE, {"n": 1})
    first.touch("person", "P1", MARRIAGE, {"n": 2})
    second.touch("person", "P1", POLICE, {"n": 3})
    back = through_the_queue([first, second])
    assert list(back.causes[("person", "P1")]) == [MARRIAGE, POLICE]
    assert back.last_cause(("person", "P1")) == {"n": 3}


def test_a_record_touched_without_a_change_of_its_own_is_still_settled():
    s = Settlement()
    s.touch_without_change("person", "P2", {})
    back = through_the_queue([s])
    assert back.records() == {"person": {"P2"}}
    assert back.last_cause(("person", "P2")) == {}
