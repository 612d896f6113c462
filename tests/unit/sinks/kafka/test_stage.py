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
