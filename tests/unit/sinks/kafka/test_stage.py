"""serve_worker: a worker whose resource library goes away is abandoned and built again, never exits."""

import psycopg
import pytest

from kintsmesh.settings import Settings
from sinks.kafka import stage
from sinks.kafka.stage import LibraryUnavailable, serve_worker


def test_a_worker_that_lost_the_library_is_abandoned_and_built_again_until_it_runs(monkeypatch, caplog):
    monkeypatch.setattr(stage, "RESTART_DELAYS_S", (0.01, 0.02, 0.05))
    monkeypatch.setattr(stage, "start_http_server", lambda *args, **kwargs: None)
    monkeypatch.setattr(stage.signal, "signal", lambda *args: None)
    built, abandoned, attempts = [], [], []

    class Worker:
        def __init__(self, metrics):
            assert metrics == "the same metrics every time"
            built.append(self)

        def run(self):
            if len(built) == 1:   # the connection breaks under the first one
                raise LibraryUnavailable() from psycopg.OperationalError("terminating connection due to administrator command")

        def abandon(self):
            abandoned.append(self)

        def stop(self):
            pass

    def build(metrics):
        attempts.append(metrics)
        if len(attempts) in (2, 3):   # then the library refuses connections twice
            raise psycopg.OperationalError("connection refused")
        return Worker(metrics)

    serve_worker("test", 0, Settings(), "warning", lambda registry: "the same metrics every time", build)
    assert len(attempts) == 4 and len(built) == 2
    assert abandoned == built[:1]   # the one that failed, not the one that returned
    messages = [r.getMessage() for r in caplog.records]
    assert any("terminating connection" in m for m in messages)
    assert sum("connection refused" in m for m in messages) == 2
    assert any("the resource library is back" in m for m in messages)


def test_an_error_that_is_not_about_the_library_still_stops_the_worker(monkeypatch):
    monkeypatch.setattr(stage, "start_http_server", lambda *args, **kwargs: None)
    monkeypatch.setattr(stage.signal, "signal", lambda *args: None)

    class Broken:
        def run(self):
            raise psycopg.errors.UndefinedTable("relation does not exist")

        def stop(self):
            pass

    with pytest.raises(psycopg.errors.UndefinedTable):   # a programming error is not retried forever
        serve_worker("test", 0, Settings(), "warning", lambda registry: None, lambda metrics: Broken())


class Unassigned:
    """A consumer that polls on and holds no partition, as one that fell out of its group."""

    closed = False

    def assignment(self):
        return []

    def close(self):
        self.closed = True


def test_a_consumer_without_partitions_while_messages_wait_is_built_again(monkeypatch, caplog):
    from prometheus_client import CollectorRegistry

    from monitoring.metrics import consumer_rebuilds

    waiting = [500]
    lonely = stage.LibraryStage.__new__(stage.LibraryStage)
    lonely.settings, lonely.name = Settings(assignment_timeout_s=60), "resolve"
    lonely.assignment_watch = stage.kafka.AssignmentWatch(60)
    lonely.log = stage.logging.getLogger("test")
    lonely.consumer, built, subscribed = Unassigned(), [], []

    rebuilds = consumer_rebuilds(CollectorRegistry())

    class Metrics:
        consumer_rebuilds = rebuilds

    lonely.metrics = Metrics()
    lonely.waiting = lambda: waiting[0]
    lonely._consumer = lambda: built.append(Unassigned()) or built[-1]
    lonely.topics = lambda: ["gldm.person.candidates"]
    lonely.conn, lonely.group = None, "kintsmesh-resolve"
    monkeypatch.setattr(Unassigned, "subscribe",
                        lambda self, topics, on_assign: subscribed.append(topics), raising=False)
    now = [100.0]
    monkeypatch.setattr(stage.time, "monotonic", lambda: now[0])
    old = lonely.consumer
    lonely.watch_assignment()
    now[0] += 30
    waiting[0] = 400                 # another member is draining it: not ours to take
    lonely.watch_assignment()
    now[0] += 59
    lonely.watch_assignment()
    assert built == []
    now[0] += 2                      # 61 s without a partition while 400 wait and the wait does not shrink
    lonely.watch_assignment()
    assert len(built) == 1 and old.closed and lonely.consumer is built[0] and subscribed == [["gldm.person.candidates"]]
    assert "no partition assigned for 61 s while messages wait" in caplog.text
    assert rebuilds._value.get() == 1
    waiting[0] = 0                   # nothing waiting: an idle consumer is fine
    now[0] += 1000
    lonely.watch_assignment()
    now[0] += 1000
    lonely.watch_assignment()
    assert len(built) == 1


class _Consumer:
    """A consumer whose polls return what it was given, recording how long each was allowed to wait."""

    def __init__(self, *polls):
        self.polls, self.waits = list(polls), []

    def consume(self, n, timeout):
        self.waits.append((n, timeout))
        return self.polls.pop(0)[:n] if self.polls else []


def _batching(consumer, linger_s=0.1, batch_size=100):
    worker = stage.LibraryStage.__new__(stage.LibraryStage)   # the loop's batching alone, no connections
    worker.consumer, worker.linger_s, worker.batch_size = consumer, linger_s, batch_size
    return worker


def test_a_lone_change_goes_on_at_once_and_a_flow_lingers_for_more():
    lone = _Consumer(["a"])
    assert _batching(lone)._batch() == ["a"] and len(lone.waits) == 1
    flow = _Consumer(list("abcde"), list("fg"))
    assert _batching(flow)._batch() == list("abcdefg")
    assert flow.waits == [(100, stage.LibraryStage.max_wait_s), (95, 0.1)]   # the rest of a batch, linger_s more


def test_a_backlog_comes_in_full_batches_and_a_stage_without_linger_never_waits_longer():
    backlog = _Consumer(list("x" * 100), list("y" * 100))
    assert _batching(backlog)._batch() == list("x" * 100) and len(backlog.waits) == 1
    eager = _Consumer(list("abcde"), list("fg"))
    assert _batching(eager, linger_s=0.0)._batch() == list("abcde") and len(eager.waits) == 1
