"""Nothing escapes the normalize agent's per-event decision (``streams.normalize.route``), whatever a
department's change stream carries: every raw event is skipped as a tombstone, or its candidates are
sent, or it reaches its DLQ with the reason — and whatever is sent decodes again. Property tests over
hostile Debezium events (wrong JSON types, deep nesting, huge numbers, every Unicode category, corrupt
bytes) and over corrupt Avro for the stages that read ``gldm.*``.

``KINTSMESH_FUZZ_EXAMPLES=20000 pytest tests/unit/streams/normalize/test_route_fuzz.py`` runs a long
fuzz; the default keeps ``make unit`` quick.
"""

from __future__ import annotations

import json
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kintsmesh.registry.catalog import SchemaCatalog, UnknownSchema
from kintsmesh.registry.codec import UndecodableMessage, decode
from kintsmesh.topics import candidate_topics, candidates_topic, dlq_topic, raw_topic
from streams.normalize import gldm
from streams.normalize.mapping import mappings
from streams.normalize.route import route

EXAMPLES = int(os.environ.get("KINTSMESH_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

CATALOG = SchemaCatalog()
for _entity, _name in gldm.RECORD_NAMES.items():
    CATALOG.apply(CATALOG.candidate(f"{candidates_topic(_entity)}-value", gldm.schema(_name)).record())
CATALOG.apply(CATALOG.candidate("dlq-value", gldm.schema(gldm.REJECTED_RECORD)).record())
VERSIONS: dict[str, Any] = {e: CATALOG.latest(f"{candidates_topic(e)}-value") for e in gldm.RECORD_NAMES}
VERSIONS["rejected"] = CATALOG.latest("dlq-value")
SOURCES = sorted(mappings())
OUTPUTS = {e: candidates_topic(e) for e in gldm.RECORD_NAMES}
DLQ = {d: dlq_topic(d) for d, _ in SOURCES}

huge = st.integers(min_value=-(2**80), max_value=2**80)
text = st.text(st.characters(codec="utf-8"), max_size=40)   # every Unicode category, surrogates aside
scalars = st.none() | st.booleans() | huge | st.floats(allow_nan=False) | text
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=20)
deep = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)   # nested lists deeper than any parser's habit


@st.composite
def debezium_events(draw: st.DrawFn) -> tuple[str, bytes]:
    """A change event of a real source table, its fields drawn hostile one by one."""
    department, table = draw(st.sampled_from(SOURCES))
    columns = sorted(mappings()[(department, table)].columns)
    row = {c: draw(json_values) for c in draw(st.lists(st.sampled_from(columns), max_size=len(columns)))}
    source = {"table": draw(st.sampled_from([table]) | json_values), "ts_ms": draw(huge | json_values),
              "lsn": draw(huge | json_values), "sequence": draw(st.none() | text | huge.map(lambda n: f"[{n}, {n}]"))}
    event = {"op": draw(st.sampled_from(["c", "u", "d", "r"]) | json_values), "source": draw(st.just(source) | json_values),
             "before": row, "after": draw(st.just(row) | json_values)}
    return raw_topic(department, table), json.dumps(event, ensure_ascii=False).encode()   # big ints too


raw_values = (debezium_events() | st.tuples(st.sampled_from([raw_topic(d, t) for d, t in SOURCES]),
                                            st.binary(max_size=200) | deep.map(str.encode)
                                            | json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode())))


@FUZZ
@given(raw_values)
def test_every_raw_event_is_sent_on_or_rejected_never_lost(raw: tuple[str, bytes]) -> None:
    topic, value = raw
    routed = route(topic, 0, 7, b"key", value, 1_700_000_000_000, VERSIONS, OUTPUTS, DLQ)
    result = routed.result
    if result.rejection is not None:
        ((dlq, key, message),) = routed.sends
        record = decode(message, CATALOG)
        assert dlq == dlq_topic(result.department) and key == b"key"
        assert record["original_value"] == value and record["source_offset"] == 7 and record["reason"]
    else:
        assert len(routed.sends) == len(result.candidates)
        for sent_topic, _, message in routed.sends:
            assert sent_topic in candidate_topics()
            decode(message, CATALOG)


def test_a_tombstone_is_skipped_and_an_lsn_beyond_64_bits_is_rejected_not_sent() -> None:
    (department, table), mapping = next(iter(mappings().items()))
    assert route(raw_topic(department, table), 0, 1, None, None, 0, VERSIONS, OUTPUTS, DLQ).sends == []
    row = {c: "1" for c in mapping.columns}
    event = {"op": "c", "source": {"table": table, "lsn": 2**63 + 5, "ts_ms": 1_700_000_000_000}, "after": row}
    routed = route(raw_topic(department, table), 0, 1, b"k", orjson.dumps(event), 0, VERSIONS, OUTPUTS, DLQ)
    assert routed.rejection is not None and routed.rejection.reason == "invalid_source_position"
    assert len(routed.sends) == 1 and routed.sends[0][0] == dlq_topic(department)


@FUZZ
@given(st.binary(max_size=64), st.integers(0, len(VERSIONS) + 2))
def test_corrupt_avro_is_undecodable_never_another_exception(body: bytes, schema_id: int) -> None:
    for data in (body, b"\x00" + schema_id.to_bytes(4, "big") + body):
        try:
            decode(data, CATALOG)
        except (UndecodableMessage, UnknownSchema):
            pass


@pytest.mark.parametrize("entity", list(gldm.RECORD_NAMES))
def test_a_truncated_candidate_is_undecodable(entity: str) -> None:
    from kintsmesh.registry.codec import encode

    version = VERSIONS[entity]
    record = {f["name"]: None for f in gldm.schema(gldm.RECORD_NAMES[entity])["fields"]}
    try:
        message = encode(version, record)
    except Exception:  # noqa: BLE001 - a record of nulls does not fit every schema: corrupt a minimal one then
        message = b"\x00" + version.id.to_bytes(4, "big") + b"\x02"
    for cut in range(5, len(message)):
        try:
            decode(message[:cut], CATALOG)
        except (UndecodableMessage, UnknownSchema):
            pass


def test_a_commit_time_no_reader_could_read_back_is_rejected_at_the_source() -> None:
    # found by the fuzz: a ts_ms before year 1 was written as timestamp-millis and could not be read downstream
    (department, table), mapping = next(iter(mappings().items()))
    for ts_ms in (-62_135_596_800_001, 2**62, "1700000000000", 1.5e12, True):
        event = {"op": "c", "source": {"table": table, "ts_ms": ts_ms}, "after": {c: "1" for c in mapping.columns}}
        routed = route(raw_topic(department, table), 0, 1, b"k", json.dumps(event).encode(), 0, VERSIONS, OUTPUTS, DLQ)
        assert routed.rejection is not None and routed.rejection.reason == "invalid_commit_time", ts_ms
