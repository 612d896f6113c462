"""Survivorship, source positions and idempotency rules on plain values."""

from __future__ import annotations

from datetime import date

import pytest

from streams.batch.load import BatchError, batch_provenance, choose_mapping, cutoff_ms
from streams.merge.survivorship import Contribution, authority, is_stale, position, survive
from streams.normalize.mapping import mappings
from streams.resolve.identity import Incoming, jsonable

FIELDS = ["name", "birth_date", "marital_status", "address"]


def contribution(department, record, pos=(0, 100, 100), committed_ms=1000, table="t", pk="1"):
    return Contribution(department, table, pk, "person", record, pos, committed_ms)


def test_position_orders_by_commit_lsn_then_change_lsn():
    assert position({"commit_lsn": 200, "change_lsn": 150}) == (0, 200, 150)
    assert position({"commit_lsn": None, "change_lsn": 150}) == (0, 150, 150)   # snapshot reads
    assert position({"batch_id": "hrss-20261126", "line": 7}) == (1, 20261126, 7)
    # an interleaved transaction: its change LSN is lower but it committed later
    assert position({"commit_lsn": 300, "change_lsn": 120}) > position({"commit_lsn": 200, "change_lsn": 150})


def test_the_same_or_an_older_position_is_a_no_op():
    merged = (0, 200, 150)
    assert is_stale((0, 200, 150), merged)          # a redelivery
    assert is_stale((0, 190, 180), merged)          # older
    assert not is_stale((0, 200, 151), merged)      # a later change of the same transaction
    assert not is_stale((0, 300, 10), merged)
    assert not is_stale((0, 1, 1), None)            # first time seen


def test_batch_and_live_positions_compare_by_time():
    live, batch = (0, 500, 500), (1, 20261126, 3)
    assert is_stale(batch, live, incoming_ms=1_000, merged_ms=2_000)
    assert not is_stale(batch, live, incoming_ms=3_000, merged_ms=2_000)
    assert is_stale((1, 20261126, 3), (1, 20261126, 3))   # the same extract loaded twice


def test_authority_beats_recency_and_the_loser_is_a_conflict():
    police = contribution("police", {"name": "张伟", "marital_status": "10"}, committed_ms=1_000, table="rk_jbxx")
    hrss = contribution("hrss", {"name": "张玮", "birth_date": "1990-01-02"}, committed_ms=9_000, table="sb_cbry")
    result = survive("person", [hrss, police], FIELDS)
    assert result.data["name"] == "张伟" and result.sources["name"] is police
    assert result.conflicts["name"] == [{"department": "hrss", "table": "sb_cbry", "primary_key": "1", "value": "张玮"}]
    assert result.data["birth_date"] == "1990-01-02"          # only hrss knows it
    assert result.committed_ms == 9_000


def test_civil_affairs_is_authoritative_for_marital_status():
    police = contribution("police", {"marital_status": "10"}, committed_ms=5_000)
    civil = contribution("civil_affairs", {"marital_status": "20"}, committed_ms=1_000)
    assert survive("person", [police, civil], FIELDS).data["marital_status"] == "20"


def test_within_one_authority_the_later_fact_wins():
    earlier = contribution("civil_affairs", {"marital_status": "20"}, committed_ms=1_000, pk="a")
    later = contribution("civil_affairs", {"marital_status": "40"}, committed_ms=2_000, pk="b")
    assert survive("person", [earlier, later], FIELDS).data["marital_status"] == "40"


def test_relationships_prefer_the_later_effective_date_over_commit_order():
    old_fact = Contribution("housing", "zl_ba", "1", "lessee", {"valid_from": "2024-01-01", "valid_to": None}, (0, 9, 9), 9_000)
    new_fact = Contribution("housing", "zl_ba", "2", "lessee", {"valid_from": "2025-01-01", "valid_to": None}, (0, 1, 1), 1_000)
    assert survive("relationship", [old_fact, new_fact], ["valid_from"]).data["valid_from"] == "2025-01-01"


def test_empty_values_never_survive_and_a_single_source_is_taken_whole():
    only = contribution("police", {"name": "张伟", "birth_date": "", "address": {}})
    result = survive("person", [only], FIELDS)
    assert result.data == {"name": "张伟", "birth_date": None, "marital_status": None, "address": None}
    assert set(result.sources) == {"name"}


def test_authority_table_names_known_departments_only():
    from kintsmesh.settings import DEPARTMENTS
    for entity, fields in authority().items():
        for name, departments in fields.items():
            assert set(departments) <= set(DEPARTMENTS), (entity, name)


def test_incoming_is_json_safe_and_names_its_source_row():
    record = {"name": "张伟", "birth_date": date(1990, 1, 2), "provenance": {
        "department": "police", "table": "rk_jbxx", "primary_key": "RK1", "role": "person",
        "commit_lsn": 20, "change_lsn": 10, "committed_at": 5}}
    item = Incoming.of("person", record)
    assert item.record["birth_date"] == "1990-01-02"
    assert str(item.source) == "police/rk_jbxx/RK1/person" and item.position == (0, 20, 10)
    assert jsonable({"a": [date(2020, 1, 1)], "b": b"\x01"}) == {"a": ["2020-01-01"], "b": "01"}


def test_flagged_fields_but_not_an_upgraded_legacy_number():
    item = Incoming("person", {"findings": ["ric:legacy_15_upgraded", "name:middle_dot_unified"], "provenance": {}})
    assert not item.flagged("ric") and item.flagged("name")


def test_batch_rows_get_a_batch_position_and_the_cutoff_time():
    mapping = mappings()[("hrss", "sb_jfmx")]
    prov = batch_provenance(mapping, {"grbh": "G1", "jfny": "202611", "xzdm": "110"}, "hrss-20261126", 12,
                            cutoff_ms(date(2026, 11, 26)), 0)
    assert position(prov) == (1, 20261126, 12) and prov["primary_key"] == "G1|202611|110"
    assert cutoff_ms(date(2026, 11, 26)) == 1795708799999   # 2026-11-26 23:59:59.999 +08:00


def test_the_extract_table_is_found_from_its_header():
    assert choose_mapping("hrss", ["grbh", "jfny", "xzdm", "jfjs"], None).table == "sb_jfmx"
    assert choose_mapping("hrss", ["grbh", "sfzhm", "xm"], None).table == "sb_cbry"
    with pytest.raises(BatchError):
        choose_mapping("hrss", ["nothing"], None)
    with pytest.raises(BatchError):
        choose_mapping("nowhere", ["grbh"], None)


def test_a_version_is_caused_by_the_batch_changes_that_supplied_what_changed():
    """A police move and a civil-affairs registration of one person in one batch: the new address is the
    police's, so the version comes from the move (a RESIDENCE_CHANGED depends on it), whichever came last;
    when both the address and the marital status changed, from both (a CI run lost a move to that)."""
    from sinks.library import TABLES
    from streams.resolve.identity import Settlement, SourceRef

    columns = TABLES["person"][2]
    police = contribution("police", {"address": {"full": "new"}, "name": "张三"}, table="rk_jbxx", pk="R1")
    marriage = contribution("civil_affairs", {"marital_status": "20", "name": "张三"}, table="hy_djxx", pk="M1")
    survived = survive("person", [police, marriage], list(columns))
    moved, registered = {"department": "police", "op": "UPDATE"}, {"department": "civil_affairs", "op": "CREATE"}
    settlement = Settlement()
    settlement.touch("person", "P", SourceRef("police", "rk_jbxx", "R1", "person"), moved)
    settlement.touch("person", "P", SourceRef("civil_affairs", "hy_djxx", "M1", "person"), registered)   # the latest
    assert settlement.causes_of(("person", "P"), survived.suppliers({"address"})) == [moved]
    # only the marital status changed: the registration caused it
    assert settlement.causes_of(("person", "P"), survived.suppliers({"marital_status"})) == [registered]
    # both changed: both, in the order they came (the version's cause is the latest)
    assert settlement.causes_of(("person", "P"), survived.suppliers({"address", "marital_status"})) == [moved, registered]
    # nothing of the batch supplied a changed field: the batch's latest change
    assert settlement.causes_of(("person", "P"), set()) == [registered]
    assert settlement.causes_of(("person", "Q"), survived.suppliers({"address"})) == []
