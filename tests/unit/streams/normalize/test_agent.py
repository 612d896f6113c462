"""The normalize agent's batch loop: a batch it does not finish is never acknowledged (``in_batches``), and a
worker whose consumer fell out of its group is noticed (``kafka.AssignmentWatch``)."""

from __future__ import annotations

import asyncio

import pytest

from kintsmesh.kafka import AssignmentWatch
from streams.normalize.agent import in_batches


class Batches:
    """Faust's ``take_events`` as far as the agent sees it: each batch acknowledged when the loop leaves it."""

    def __init__(self, *batches: list[int]) -> None:
        self.batches, self.acked = batches, []

    async def take_events(self, max_: int, within: float):  # type: ignore[no-untyped-def]
        for batch in self.batches:
            try:
                yield batch
            finally:
                self.acked.extend(batch)


def run(stream: Batches, handle) -> list[tuple[list[int], list[int]]]:  # type: ignore[no-untyped-def]
    """The loop over ``stream``; returns each unacknowledged batch with what was acknowledged at that moment."""
    unacknowledged: list[tuple[list[int], list[int]]] = []

    async def main() -> None:
        await in_batches(stream, handle, lambda events: unacknowledged.append((list(events), list(stream.acked))))

    try:
        asyncio.run(main())
    except (Exception, asyncio.CancelledError):   # noqa: BLE001 - what the loop re-raises after telling
        pass
    return unacknowledged


def test_finished_batches_are_acknowledged_and_nothing_else_is_told():
    stream = Batches([1, 2], [3])
    handled: list[int] = []

    async def handle(events: list[int]) -> None:
        handled.extend(events)

    assert run(stream, handle) == [] and handled == stream.acked == [1, 2, 3]


def test_a_batch_whose_outputs_fail_is_unacknowledged_before_anything_acknowledges_it():
    async def handle(events: list[int]) -> None:
        if 3 in events:
            raise RuntimeError("the broker took not every output")

    assert run(Batches([1, 2], [3, 4]), handle) == [([3, 4], [1, 2])]


def test_a_stop_in_the_middle_of_a_batch_leaves_it_unacknowledged():
    """A SIGTERM cancels the agent while it awaits a send: the batch must not be acknowledged (Faust's
    ``finally`` would, and the commit on the way out would skip events never sent)."""
    stream = Batches([1, 2, 3])
    told: list[tuple[list[int], list[int]]] = []

    async def main() -> None:
        started = asyncio.Event()

        async def handle(events: list[int]) -> None:
            started.set()
            await asyncio.Event().wait()   # a send that never completes

        task = asyncio.create_task(in_batches(stream, handle, lambda e: told.append((list(e), list(stream.acked)))))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert told == [([1, 2, 3], [])]


def test_a_consumer_is_stuck_only_when_it_holds_nothing_and_the_wait_does_not_shrink_for_the_timeout():
    watch = AssignmentWatch(60)
    assert watch.stuck(False, lambda: 500, 0) is None      # starts watching
    assert watch.stuck(False, lambda: 400, 30) is None     # another member drains it: starts again
    assert watch.stuck(False, lambda: 400, 89) is None
    assert watch.stuck(False, lambda: 450, 91) == 61       # 61 s at 400 or more: build it again
    assert watch.stuck(False, lambda: 450, 92) is None     # ... and the watch starts over
    assert watch.stuck(True, lambda: 1 / 0, 200) is None   # holds partitions: the wait is not even asked
    assert watch.stuck(False, lambda: 0, 300) is None and watch.stuck(False, lambda: 0, 900) is None   # idle
