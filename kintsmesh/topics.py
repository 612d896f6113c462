"""Creating the topics Kintsmesh owns, with their settings, before anything writes to them."""

from __future__ import annotations

import time

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from kintsmesh.errors import TransientError
from kintsmesh.settings import Settings


def ensure_topics(settings: Settings, names: list[str], partitions: int, config: dict[str, str] | None = None) -> None:
    """Create the missing ones among ``names`` (existing topics are left as they are)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "log_level": 0})
    existing = admin.list_topics(timeout=10).topics
    missing = [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
               for name in names if name not in existing]
    if not missing:
        return
    for name, future in admin.create_topics(missing).items():
        try:
            future.result(timeout=30)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise TransientError(f"cannot create topic {name}: {exc}") from exc
    # "created" is the controller's word; wait until the broker's metadata lists every partition
    deadline = time.monotonic() + 30
    wanted = {t.topic for t in missing}
    while wanted:
        known = admin.list_topics(timeout=10).topics
        wanted = {name for name in wanted if name not in known or known[name].error or not known[name].partitions
                  or any(p.leader < 0 for p in known[name].partitions.values())}
        if wanted and time.monotonic() > deadline:
            raise TransientError(f"topics created but not visible in the metadata after 30 s: {sorted(wanted)}")
        if wanted:
            time.sleep(0.2)
