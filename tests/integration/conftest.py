"""Integration tests run against the real stack (make test starts it).

They fail, never skip, when the stack is missing: a CDC test that did not run
proves nothing.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from connect.client import ConnectClient
from connect.connectors import connector_name
from kintsmesh import kafka, stack
from kintsmesh.settings import DEMO_SEED, DEPARTMENTS, Settings
from kintsmesh.simulate.city import ID_SPACE, ric_class


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every integration test carries the ``integration`` marker (``pytestmark`` in its module), so that
    ``-m "not integration"`` never runs one by accident against a missing stack."""
    here = str(Path(__file__).parent)
    unmarked = [item.nodeid for item in items if str(item.path).startswith(here)
                and item.get_closest_marker("integration") is None]
    if unmarked:
        raise pytest.UsageError(f"integration tests without the integration marker: {unmarked}")


@pytest.fixture(scope="session")
def settings() -> Settings:
    settings = Settings()
    down = [s.name for s in stack.status(settings) if not s.healthy]
    if down:
        pytest.fail(f"stack components not healthy: {down}; run `kintsmesh stack up` (make test does)")
    client = ConnectClient.of(settings)
    try:
        client.wait_running([connector_name(d) for d in DEPARTMENTS], timeout_s=120)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"Debezium connectors not running: {exc}; run `kintsmesh connect apply`")
    return settings


def killed_and_restarted(settings: Settings, names: list[str], timeout_s: float = 120) -> dict[str, float]:
    """SIGKILL the named components and wait until the stack's supervisor has them healthy again under new
    pids (nothing else starts them); seconds from the kill to healthy, per component."""
    import os
    import signal

    chosen = [c for c in stack.components(settings) if c.name in names]
    old = {c.name: c.pid() for c in chosen}
    assert None not in old.values(), f"not running: {old}"
    for pid in old.values():
        os.kill(pid, signal.SIGKILL)   # type: ignore[arg-type]
    killed_at, back = time.monotonic(), {}
    while len(back) < len(chosen) and time.monotonic() - killed_at < timeout_s:
        for c in chosen:
            if c.name not in back and (pid := c.pid()) not in (None, old[c.name]) and c.status().healthy:
                back[c.name] = time.monotonic() - killed_at
        time.sleep(0.2)
    assert len(back) == len(chosen), f"the supervisor did not bring back {set(names) - set(back)} in {timeout_s} s"
    return back


@pytest.fixture
def kill(settings: Settings):  # type: ignore[no-untyped-def]
    """``kill(names)``: SIGKILL components and wait for the supervisor to bring them back (seconds each)."""
    return lambda names, timeout_s=120: killed_and_restarted(settings, names, timeout_s)


_SEEDS_TAKEN: set[int] = set()
SEED_BASE = 1000


@pytest.fixture
def fresh_seed(settings: Settings) -> int:
    """A simulator seed whose id namespace (seed mod 100) no city in the department databases uses yet.

    Cities sharing a namespace draw the same department keys and collide on their primary keys, so
    every test city gets a namespace of its own, in this session and against earlier runs on this stack.
    """
    with psycopg.connect(settings.dsn("police")) as conn:
        # household numbers are 440 + the 9-digit internal number, whose leading digits are the namespace
        used = {int(hh[3:]) // ID_SPACE for (hh,) in conn.execute("SELECT hh FROM hj_hu WHERE hh ~ '^440[0-9]{9}$'")}
    # never the demo city's namespace either: `make demo` after `make test` on one stack loads it afresh
    free = sorted(set(range(100)) - used - _SEEDS_TAKEN - {DEMO_SEED % 100})
    if not free:
        pytest.fail("every simulator id namespace is used on this stack: run `kintsmesh stack reset`")
    # ... and, while there is one, a resident ID class no city uses: babies of two cities born on one day
    # in one district could otherwise draw the same RIC (and merge, or wait for review, as one person)
    classes = {ric_class(SEED_BASE + n) for n in used | _SEEDS_TAKEN}
    namespace = random.choice([n for n in free if ric_class(SEED_BASE + n) not in classes] or free)
    _SEEDS_TAKEN.add(namespace)
    return SEED_BASE + namespace


class TopicTail:
    """A consumer positioned at the current end of a topic: sees only what comes next."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer({
            **kafka.client_config(settings),
            "group.id": f"test-{uuid.uuid4()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "topic.metadata.refresh.interval.ms": 1000,
            "log_level": 0,
        })
        metadata = self.consumer.list_topics(timeout=10).topics.get(topic)
        if metadata is None or not metadata.partitions:
            # Debezium creates a table's topic with its first change: read it from the start
            self.consumer.subscribe([topic])
            return
        partitions = []
        for p in metadata.partitions:
            _, high = self.consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            partitions.append(TopicPartition(topic, p, high))
        self.consumer.assign(partitions)

    def collect(self, until, timeout_s: float) -> list[tuple[dict, dict, int]]:
        """(key, value, log-append timestamp ms) until ``until(events)`` holds or the timeout."""
        events: list[tuple[dict, dict, int]] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not until(events):
            for message in self.consumer.consume(500, timeout=0.5):
                if message.error() or message.value() is None:
                    continue
                events.append((json.loads(message.key()), json.loads(message.value()), message.timestamp()[1]))
        return events

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def tail(settings: Settings) -> Iterator:
    opened: list[TopicTail] = []

    def open_tail(topic: str) -> TopicTail:
        t = TopicTail(settings, topic)
        opened.append(t)
        return t

    yield open_tail
    for t in opened:
        t.close()
