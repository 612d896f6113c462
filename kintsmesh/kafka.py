"""Every Kafka client Kintsmesh builds: consumers, producers, admin clients, the Faust broker.

All client configuration starts here (``client_config``), so a setting every client needs
(bootstrap servers, TLS verified against the installation's CA, SASL/SCRAM as this process's
principal) is written once. Callers add only what is theirs:
a group id, idempotence, batching. ``ensure_topics`` creates the topics a stage owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from kintsmesh.errors import TransientError
from kintsmesh.settings import Settings

SCRAM = "SCRAM-SHA-512"


def client_config(settings: Settings, log_level: int = 0, **config: Any) -> dict[str, Any]:
    """librdkafka configuration shared by every client, plus ``config`` (dotted keys as ``a_b`` -> ``a.b``)."""
    return {"bootstrap.servers": settings.kafka_bootstrap, "log_level": log_level, **security_config(settings),
            **{key.replace("_", "."): value for key, value in config.items()}}


def security_config(settings: Settings, principal: str | None = None) -> dict[str, str]:
    """TLS (the broker verified against the installation's CA) and SCRAM-SHA-512 as ``principal``."""
    principal = principal or settings.kafka_principal
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": SCRAM, "sasl.username": principal,
            "sasl.password": settings.kafka_password(principal), "ssl.ca.location": str(settings.trusted_ca),
            "ssl.endpoint.identification.algorithm": "https"}


def faust_credentials(settings: Settings) -> Any:
    """The Faust app's (aiokafka's) SASL_SSL credentials: the same principal, CA and mechanism."""
    import ssl

    import faust

    context = ssl.create_default_context(cafile=str(settings.trusted_ca))
    return faust.SASLCredentials(username=settings.kafka_principal, password=settings.kafka_password(),
                                 ssl_context=context, mechanism=SCRAM)


def consumer(settings: Settings, group: str, *, log_level: int = 0, **config: Any) -> Consumer:
    return Consumer(client_config(settings, log_level, group_id=group, **config))


def producer(settings: Settings, *, log_level: int = 0, **config: Any) -> Producer:
    return Producer(client_config(settings, log_level, **config))


def reliable_producer(settings: Settings, *, log_level: int = 3, linger_ms: int = 5) -> Producer:
    """What a stage writes with: idempotent, acknowledged by every in-sync replica."""
    return producer(settings, log_level=log_level, enable_idempotence=True, acks="all", linger_ms=linger_ms)


def admin(settings: Settings, **config: Any) -> AdminClient:
    return AdminClient(client_config(settings, **config))


def faust_broker(settings: Settings) -> str:
    """The broker URL of a Faust app (aiokafka underneath)."""
    return ";".join(f"kafka://{host}" for host in settings.kafka_bootstrap.split(","))


def ensure_topics(settings: Settings, names: list[str], partitions: int, config: dict[str, str] | None = None) -> None:
    """Create the missing ones among ``names`` (existing topics are left as they are). A broker that does not
    answer (restarting, not up yet) is a ``TransientError``: the caller backs off and asks again."""
    client = admin(settings)
    existing = topic_metadata(client)
    missing = [NewTopic(name, num_partitions=partitions, replication_factor=settings.replication_factor,
                        config=config or {})
               for name in names if name not in existing]
    if not missing:
        return
    for name, future in client.create_topics(missing).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise TransientError(f"cannot create topic {name}: {exc}") from exc
    # "created" is the controller's word; wait until the broker's metadata lists every partition
    deadline = time.monotonic() + 30
    wanted = {t.topic for t in missing}
    while wanted:
        known = topic_metadata(client)
        wanted = {name for name in wanted if name not in known or known[name].error or not known[name].partitions
                  or any(p.leader < 0 for p in known[name].partitions.values())}
        if wanted and time.monotonic() > deadline:
            raise TransientError(f"topics created but not visible in the metadata after 30 s: {sorted(wanted)}")
        if wanted:
            time.sleep(0.2)


def topic_metadata(client: AdminClient, timeout_s: float = 10) -> dict[str, Any]:
    """The brokers' topics (name -> metadata); a broker that does not answer is a ``TransientError``."""
    try:
        return client.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise TransientError(f"the brokers' topic metadata is not available: {exc}") from exc


class AssignmentWatch:
    """Whether a consumer holding no partition while its topics have messages waiting should be built again:
    after a broker restart a consumer has stayed out of its group while polling forever. It should when the
    wait has not shrunk (no other member of the group takes the messages) for ``timeout_s``."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.since: tuple[float, int] | None = None   # since when it holds no partition, and the wait then

    def stuck(self, assigned: bool, waiting: Callable[[], int], now: float) -> float | None:
        """Seconds the consumer has been stuck, once that is ``timeout_s`` or more (then the watch starts over);
        else None. ``waiting`` (messages after the group's offsets) is asked only while nothing is assigned."""
        if assigned:
            self.since = None
            return None
        count = waiting()
        if count == 0 or (self.since is not None and count < self.since[1]):
            self.since = None if count == 0 else (now, count)
            return None
        if self.since is None:
            self.since = (now, count)
            return None
        stuck = now - self.since[0]
        if stuck < self.timeout_s:
            return None
        self.since = None
        return stuck
