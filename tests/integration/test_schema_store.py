"""The schema store on the real Kafka: versions survive in the compacted topic, incompatible changes are refused."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from kintsmesh.registry.catalog import IncompatibleSchema
from kintsmesh.registry.codec import decode, encode
from kintsmesh.registry.store import SCHEMAS_TOPIC, SchemaStore

pytestmark = pytest.mark.integration


def person(*extra):
    return {"type": "record", "name": "Person", "namespace": "gov.gldm.test",
            "fields": [{"name": "ric", "type": "string"}, {"name": "name", "type": "string"}, *extra]}


def test_register_evolve_refuse_and_read_back_from_another_process_view(settings):
    subject = f"test-{uuid.uuid4().hex[:8]}-value"
    store = SchemaStore(settings)
    try:
        v1 = store.register(subject, person())
        assert v1.version == 1
        assert store.register(subject, person()) == v1  # idempotent
        v2 = store.register(subject, person({"name": "gender", "type": ["null", "string"], "default": None}))
        assert v2.version == 2
        with pytest.raises(IncompatibleSchema, match="new field without a default"):
            store.register(subject, person({"name": "birth", "type": "string"}))
        message = encode(v1, {"ric": "440303199001011234", "name": "王芳"})
    finally:
        store.close()

    fresh = SchemaStore(settings)  # replays the topic: what a restarted process sees
    try:
        versions = fresh.versions()[subject]
        assert [v.version for v in versions] == [1, 2]
        assert decode(message, fresh.catalog, reader=versions[-1]) == {
            "ric": "440303199001011234", "name": "王芳", "gender": None}
    finally:
        fresh.close()


def test_schema_topic_is_compacted(settings):
    SchemaStore(settings).close()
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    resource = ConfigResource(ConfigResource.Type.TOPIC, SCHEMAS_TOPIC)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"
