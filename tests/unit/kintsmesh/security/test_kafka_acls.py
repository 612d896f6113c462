from confluent_kafka.admin import AclOperation, ResourceType

from kintsmesh.security.kafka import principals
from kintsmesh.settings import DEPARTMENTS
from kintsmesh.stack.workers import WORKERS

SUBSCRIBERS = ["education_bureau", "futian_tax_office"]


def topics(grants, *operations):
    return {(g.name + ("*" if g.prefixed else "")) for g in grants
            if g.resource == ResourceType.TOPIC and g.operation in operations}


def test_a_subscriber_reads_its_own_topic_under_its_own_group_prefix_and_nothing_else():
    grants = principals(SUBSCRIBERS)["sub-education_bureau"]
    assert topics(grants, AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE) == {"sub.education_bureau.life"}
    assert topics(grants, AclOperation.WRITE, AclOperation.CREATE) == set()
    groups = {g.name for g in grants if g.resource == ResourceType.GROUP}
    assert groups == {"sub.education_bureau."} and all(g.prefixed for g in grants if g.resource == ResourceType.GROUP)


def test_each_department_connector_writes_only_its_own_raw_topics():
    every = principals(SUBSCRIBERS)
    for department in DEPARTMENTS:
        grants = every[f"capture-{department}"]
        assert topics(grants, AclOperation.WRITE) == {f"raw.{department}.*", f"__debezium-heartbeat.raw.{department}"}
        assert topics(grants, AclOperation.READ) == set()


def test_no_stage_may_write_its_own_input_nor_anything_upstream():
    every = principals(SUBSCRIBERS)
    assert "gldm.person.changes" not in topics(every["normalize"], AclOperation.WRITE)
    assert "gldm.person.changes" not in topics(every["resolve"], AclOperation.WRITE)
    assert not topics(every["monitor"], AclOperation.READ, AclOperation.WRITE)
    written = {p: topics(g, AclOperation.WRITE) for p, g in every.items()}
    assert [p for p, t in written.items() if any(x.startswith("raw.") for x in t)] == \
        [f"capture-{d}" for d in DEPARTMENTS]


def test_the_shared_life_event_topics_are_read_only_by_the_life_event_stage_and_auditors():
    every = principals(SUBSCRIBERS)
    for shared in ("events.life.*", "events.service.*"):
        assert {p for p, g in every.items() if shared in topics(g, AclOperation.READ)} == {"events", "auditor"}
    assert topics(every["auditor"], AclOperation.READ) == {"events.life.*", "events.service.*"}


def test_every_stack_process_has_a_principal_with_grants_or_none():
    every = principals(SUBSCRIBERS)
    for spec in WORKERS:
        assert spec.principal in every or spec.principal in ("admin", "none"), spec
