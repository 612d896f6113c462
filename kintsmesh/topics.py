"""Every Kafka topic, consumer group and schema subject Kintsmesh names, in flow order.

The one place a topic name is spelled: connectors, stages, monitoring, the simulator's
benchmarks and the tests all build names through these functions. Creating topics is a
client's job (``kintsmesh.kafka.ensure_topics``).
"""

from __future__ import annotations

# -- capture: Debezium writes each captured table's changes, and its heartbeats
RAW_PREFIX = "raw"


def raw_topic(department: str, table: str, schema: str = "public", prefix: str = RAW_PREFIX) -> str:
    """``raw.<dept>.<schema>.<table>`` (the connector's ``topic.prefix`` is ``raw.<dept>``); a benchmark
    feeds its own copy under another ``prefix``."""
    return f"{prefix}.{department}.{schema}.{table}"


def heartbeat_topic(department: str) -> str:
    """Where Debezium writes the connector's heartbeats: ``__debezium-heartbeat.<topic.prefix>``."""
    return f"__debezium-heartbeat.{RAW_PREFIX}.{department}"


# -- the GLDM stages, one topic per entity at each hop
GLDM_ENTITIES = ("person", "legal_entity", "house", "certificate", "relationship", "social_insurance")


def candidates_topic(entity: str) -> str:
    """normalize -> resolve, keyed by source row."""
    return f"gldm.{entity}.candidates"


def resolved_topic(entity: str) -> str:
    """resolve -> merge, keyed by canonical id (the repartition)."""
    return f"gldm.{entity}.resolved"


def changes_topic(entity: str) -> str:
    """merge -> life events: the golden-record changelog."""
    return f"gldm.{entity}.changes"


# the entities whose identity the resolve stage decides (match by RIC / USCC or Fellegi–Sunter); the others
# are coded (their canonical id is a code in the record: a house code, a certificate number ...) and go from
# their candidates topic straight to the merge stage (streams/merge/worker.py)
RESOLVED_ENTITIES = ("person", "legal_entity")
CODED_ENTITIES = tuple(e for e in GLDM_ENTITIES if e not in RESOLVED_ENTITIES)


def candidate_topics() -> list[str]:
    return [candidates_topic(e) for e in GLDM_ENTITIES]


def resolve_inputs() -> list[str]:
    """What the resolve stage consumes: the candidates of the entities whose identity it decides."""
    return [candidates_topic(e) for e in RESOLVED_ENTITIES]


def coded_candidate_topics() -> list[str]:
    """The candidates the merge stage consumes directly (no resolve hop, no settle queue)."""
    return [candidates_topic(e) for e in CODED_ENTITIES]


def resolved_topics() -> list[str]:
    return [resolved_topic(e) for e in RESOLVED_ENTITIES]


def changes_topics() -> list[str]:
    return [changes_topic(e) for e in GLDM_ENTITIES]


# event types published on a topic of their own name rather than events.life.<type>
EVENT_TOPICS = {"SERVICE_ELIGIBLE": "events.service.eligible"}   # a resident became eligible for a service


def events_topic(event_type: str) -> str:
    """life events, one topic per type."""
    return EVENT_TOPICS.get(event_type) or f"events.life.{event_type.lower()}"


def subscriber_topic(subscriber: str) -> str:
    """What one downstream system consumes: only its allowance."""
    return f"sub.{subscriber}.life"


# -- dead-letter queues: one per department (normalize), and one per later stage
DLQ_STAGES = ("merge", "events")


def dlq_topic(department_or_stage: str) -> str:
    return f"dlq.{department_or_stage}"


# -- internal topics of the stack's own services
CONNECT_CONFIGS = "_kintsmesh_connect_configs"
CONNECT_OFFSETS = "_kintsmesh_connect_offsets"
CONNECT_STATUS = "_kintsmesh_connect_status"
REGISTRY_TOPIC = "_kintsmesh_registry"

# -- consumer groups
NORMALIZE_GROUP = "kintsmesh-normalize"
RESOLVE_GROUP = "kintsmesh-resolve"
MERGE_GROUP = "kintsmesh-merge"
EVENTS_GROUP = "kintsmesh-life-events"
CONNECT_GROUP = "kintsmesh-connect"
DLQ_REPLAY_GROUP = "kintsmesh-dlq-replay"
# Groups under this prefix are not consumers: they mark how far a publisher's own topic was written
# when it last recorded a publication (life events, subscriptions), for crash recovery.
MARKS_PREFIX = "kintsmesh-marks-"
LIFE_EVENTS_MARK = f"{MARKS_PREFIX}life-events"
OUTBOX_MARK = f"{MARKS_PREFIX}outbox"   # where the golden-change topics ended at the last outbox delete


def subscription_mark(subscriber: str) -> str:
    return f"{MARKS_PREFIX}sub-{subscriber}"


# -- schema registry subjects (TopicNameStrategy where one topic has one record type)
def value_subject(topic: str) -> str:
    return f"{topic}-value"


DLQ_SUBJECT = "dlq-value"                       # every dlq.* topic carries RejectedRecord
RESOLVED_SUBJECT = "gldm.resolved-value"        # every gldm.*.resolved topic carries Resolved
CHANGES_SUBJECT = "gldm.changes-value"          # every gldm.*.changes topic carries GoldenChange
EVENTS_SUBJECT = "events.life-value"            # every events.life.* topic carries LifeEvent
