"""The stack's schema registry through Confluent's stock client: register, evolve, refuse, read back."""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from kintsmesh import kafka
from kintsmesh.registry.catalog import IncompatibleSchema
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import decode, encode
from kintsmesh.registry.log import SCHEMAS_TOPIC, SchemaLog

pytestmark = pytest.mark.integration


def person(*extra) -> str:
    return json.dumps({"type": "record", "name": "Person", "namespace": "gov.gldm.test",
                       "fields": [{"name": "ric", "type": "string"}, {"name": "name", "type": "string"}, *extra]})


GENDER = {"name": "gender", "type": ["null", "string"], "default": None}
BIRTH_NO_DEFAULT = {"name": "birth", "type": "string"}


def test_stock_client_registers_evolves_and_is_refused_by_the_registry(settings):
    client = SchemaRegistryClient(settings.registry_client_config())
    subject = f"test-{uuid.uuid4().hex[:8]}-value"
    v1 = client.register_schema(subject, Schema(person(), "AVRO"))
    assert SchemaRegistryClient(settings.registry_client_config()).register_schema(
        subject, Schema(person(), "AVRO")) == v1                                 # idempotent, no cache
    v2 = client.register_schema(subject, Schema(person(GENDER), "AVRO"))
    assert v2 != v1 and client.get_versions(subject) == [1, 2]

    incompatible = Schema(person(GENDER, BIRTH_NO_DEFAULT), "AVRO")
    assert client.test_compatibility(subject, incompatible) is False
    with pytest.raises(SchemaRegistryError) as refused:
        client.register_schema(subject, incompatible)
    assert refused.value.http_status_code == 409 and "birth" in refused.value.error_message
    assert client.get_versions(subject) == [1, 2]                                # nothing was added

    client.set_compatibility(subject, "NONE")                                    # the operator's override
    assert client.get_compatibility(subject) == "NONE"
    assert client.register_schema(subject, incompatible) not in (v1, v2)
    assert client.get_compatibility(f"other-{subject}") == "BACKWARD"            # the global default

    looked_up = client.lookup_schema(subject, Schema(person(GENDER), "AVRO"))
    assert (looked_up.schema_id, looked_up.version) == (v2, 2)
    with pytest.raises(SchemaRegistryError) as missing:
        client.get_schema(10_000_000)
    assert missing.value.error_code == 40403


def test_our_messages_and_the_stock_serializers_read_each_other(settings):
    subject = f"test-{uuid.uuid4().hex[:8]}-value"
    topic = subject.removesuffix("-value")
    ours = SchemaRegistry(settings)
    version = ours.register(subject, json.loads(person(GENDER)))
    record = {"ric": "440303199001011234", "name": "王芳", "gender": "2"}

    client = SchemaRegistryClient(settings.registry_client_config())
    context = SerializationContext(topic, MessageField.VALUE)
    assert AvroDeserializer(client)(encode(version, record), context) == record
    stock = AvroSerializer(client, person(GENDER), conf={"auto.register.schemas": False, "use.latest.version": True})
    written = stock(record, context)
    assert written[1:5] == version.id.to_bytes(4, "big")
    assert decode(written, ours) == record

    with pytest.raises(IncompatibleSchema):
        ours.register(subject, json.loads(person(GENDER, BIRTH_NO_DEFAULT)))


def test_versions_survive_in_the_compacted_topic(settings):
    client = SchemaRegistryClient(settings.registry_client_config())
    subject = f"test-{uuid.uuid4().hex[:8]}-value"
    schema_id = client.register_schema(subject, Schema(person(), "AVRO"))
    replayed = SchemaLog(settings)   # what a restarted registry rebuilds from the topic
    try:
        assert replayed.catalog.latest(subject).id == schema_id
    finally:
        replayed.close()
    admin = AdminClient(kafka.client_config(settings))
    resource = ConfigResource(ConfigResource.Type.TOPIC, SCHEMAS_TOPIC)
    config = admin.describe_configs([resource])[resource].result(timeout=10)
    assert config["cleanup.policy"].value == "compact"


def as_admin(settings) -> requests.Session:
    """The registry's REST API over TLS as the stack's administrator."""
    session = requests.Session()
    session.auth, session.verify = ("admin", settings.kafka_password("admin")), str(settings.trusted_ca)
    session.trust_env = False   # else REQUESTS_CA_BUNDLE in the environment replaces `verify`
    return session


def test_every_gldm_subject_is_registered_and_errors_speak_confluent(settings):
    registry = as_admin(settings)
    subjects = registry.get(f"{settings.registry_endpoint}/subjects", timeout=10).json()
    assert {"gldm.person.candidates-value", "dlq-value", "gldm.changes-value", "events.life-value",
            "sub.education_bureau.life-value"} <= set(subjects)
    answer = registry.get(f"{settings.registry_endpoint}/subjects/no-such-subject/versions", timeout=10)
    assert answer.status_code == 404 and answer.json()["error_code"] == 40401
    answer = registry.post(f"{settings.registry_endpoint}/subjects/x-value/versions", timeout=10,
                           json={"schema": '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nope"}]}'})
    assert answer.status_code == 422 and answer.json()["error_code"] == 42201


def test_bad_bodies_get_confluent_codes_not_500(settings):
    url, registry = settings.registry_endpoint, as_admin(settings)
    for body in (b"[1, 2]", b'"a string"', b"[" * 50_000 + b"]" * 50_000, b"{not json"):
        answer = registry.post(f"{url}/subjects/x-value/versions", data=body, timeout=10,
                               headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        assert answer.status_code == 422 and answer.json()["error_code"] == 42201, (body[:20], answer.text[:200])
    duplicate = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}, {"name": "a", "type": "int"}]}
    answer = registry.post(f"{url}/subjects/x-value/versions", json={"schema": json.dumps(duplicate)}, timeout=10)
    assert answer.status_code == 422 and "twice" in answer.json()["message"]
    answer = registry.put(f"{url}/config", json={"compatibility": "LAX"}, timeout=10)
    assert answer.status_code == 422 and answer.json()["error_code"] == 42203
    answer = registry.put(f"{url}/config", data=b"[]", timeout=10)
    assert answer.status_code == 422 and answer.json()["error_code"] == 42203
    assert registry.get(f"{url}/config", timeout=10).json()["compatibilityLevel"] == "BACKWARD"


def test_a_poison_record_in_the_schema_topic_is_skipped_and_counted_on_replay(settings):
    from kintsmesh import kafka

    producer = kafka.producer(settings)
    producer.produce(SCHEMAS_TOPIC, key=f"poison/{uuid.uuid4()}".encode(), value=b"\x00not json at all")
    producer.produce(SCHEMAS_TOPIC, key=f"config/poison-{uuid.uuid4()}".encode(),
                     value=json.dumps({"kind": "config", "subject": "x", "compatibility": "LAX"}).encode())
    assert producer.flush(10) == 0
    replayed = SchemaLog(settings)   # what a registry starting now does
    try:
        assert replayed.skipped >= 2
        assert "gldm.person.candidates-value" in replayed.catalog.subjects
        assert replayed.catalog.level("x") == "BACKWARD"
    finally:
        replayed.close()
