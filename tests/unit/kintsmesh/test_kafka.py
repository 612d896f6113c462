"""ensure_topics: a broker that does not answer is a TransientError (callers back off), never a bare KafkaException."""

import pytest
from confluent_kafka import KafkaError, KafkaException

from kintsmesh import kafka
from kintsmesh.errors import TransientError
from kintsmesh.settings import Settings


class Unreachable:
    """An admin client whose brokers are all down: what librdkafka raises after its timeout."""

    def list_topics(self, timeout):
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Failed to get metadata: Local: Broker transport failure"))

    def create_topics(self, topics):
        raise AssertionError("nothing is created without knowing what exists")


def test_topic_metadata_that_cannot_be_read_is_a_transient_error(monkeypatch):
    monkeypatch.setattr(kafka, "admin", lambda settings: Unreachable())
    with pytest.raises(TransientError, match="topic metadata is not available.*transport failure"):
        kafka.ensure_topics(Settings(), ["dlq.merge"], 1)
