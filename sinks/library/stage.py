"""The stages that write the resource library through a ``Merger`` (resolve, merge): one connection with
the merge session's settings, a relay for what their transactions queue, and ``dlq.merge`` for what they
cannot read or do."""

from __future__ import annotations

from kintsmesh.kafka import ensure_topics
from kintsmesh.settings import Settings
from sinks.kafka.relay import Publish, RelayingStage
from sinks.kafka.stage import M
from sinks.library import MERGE_SESSION, Merger
from streams.normalize import gldm


class MergerStage(RelayingStage[M]):
    dlq = "merge"
    session_options = MERGE_SESSION
    side_by_side = False   # its transactions commit beside other processes' of the stage (``Merger``)

    def __init__(self, settings: Settings, metrics: M) -> None:
        super().__init__(settings, metrics)
        self.merger = Merger(self.conn, side_by_side=self.side_by_side)

    def start_publishing(self, outputs: list[str], subject: str, record: str, relay: str, publish: Publish) -> None:
        """Create the stage's input and output topics, register its output's schema, start its relay."""
        ensure_topics(self.settings, [*self.topics(), *outputs], self.settings.kafka_partitions)
        self.start_relay(relay, self.registry.register(subject, gldm.schema(record)), publish)
