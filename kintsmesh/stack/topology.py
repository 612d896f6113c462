"""Every topic of the pipeline, created by the stack (as ``admin``) before any stage starts: a stage's
principal may create its own outputs, never another's topics (a consumer cannot conjure its input, nor
a connector a neighbour's raw topic)."""

from __future__ import annotations

from connect.connectors import available_departments, raw_topics
from kintsmesh import kafka, topics
from kintsmesh.settings import Settings

# the same as topic.creation.default.* in connect/connectors/_defaults.json
RAW_TOPIC_CONFIG = {"cleanup.policy": "delete", "retention.ms": "604800000",
                    "message.timestamp.type": "LogAppendTime", "compression.type": "lz4"}


def ensure_pipeline_topics(settings: Settings) -> None:
    from sinks.events import events_topics
    from streams.events.subscriptions import subscriptions

    partitions = settings.kafka_partitions
    kafka.ensure_topics(settings, raw_topics(settings), partitions, RAW_TOPIC_CONFIG)
    kafka.ensure_topics(settings, [*topics.candidate_topics(), *topics.resolved_topics(), *topics.changes_topics(),
                                   *events_topics(), *(s.topic for s in subscriptions().values())], partitions)
    kafka.ensure_topics(settings, [topics.dlq_topic(d) for d in [*available_departments(), *topics.DLQ_STAGES]], 1)
