"""The stack's supervisor: every component that dies is started again, with backoff; a crash loop is a
metric and an alert, never a silent stop.

``kintsmesh stack up`` starts it last (``kintsmesh stack supervise``, a process of its own with
``/metrics`` on ``supervisor_metrics_port``). Every second it looks at each component's pid file:

- alive: nothing to do (a start that stays up ``STABLE_AFTER_S`` clears its failure count);
- held (``kintsmesh stack down <name>`` wrote ``run/<name>.held``): an operator stopped it, left alone;
- gone: started again after 1, 2, 5, 10, then every 30 s while it keeps dying within a minute of starting.
  ``CRASH_LOOP_RESTARTS`` starts within ``CRASH_LOOP_WINDOW_S`` set ``kintsmesh_component_crash_looping``
  (alert ``KintsmeshComponentCrashLooping``); the supervisor keeps trying.

A component is started under its start lock (``Component.start_lock``), the same one ``stack up`` takes,
so the two never start it twice. The components run in their own sessions: a dead supervisor stops
nothing, and ``stack up`` (or ``stack status``) shows it down.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from kintsmesh.errors import RESTART_DELAYS_S
from kintsmesh.stack.component import Component

STABLE_AFTER_S = 60.0
CRASH_LOOP_WINDOW_S = 600.0
CRASH_LOOP_RESTARTS = 5
TICK_S = 1.0

log = logging.getLogger("kintsmesh.supervisor")


@dataclass
class Watched:
    """What the supervisor remembers about one component."""

    component: Component
    failures: int = 0                      # starts in a row that died within STABLE_AFTER_S
    started_at: float | None = None        # when the supervisor last started it
    next_start_at: float | None = None     # when it is due to be started again
    restarts: deque[float] = field(default_factory=deque)

    @property
    def name(self) -> str:
        return self.component.name


class SupervisorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge("kintsmesh_component_up", "1 while the component's process is alive", ["component"],
                        registry=registry)
        self.restarts = Counter("kintsmesh_component_restarts", "Starts by the supervisor after a death",
                                ["component"], registry=registry)
        self.crash_looping = Gauge("kintsmesh_component_crash_looping",
                                   f"1 while the component was started {CRASH_LOOP_RESTARTS} times or more in the"
                                   f" last {CRASH_LOOP_WINDOW_S:.0f} s", ["component"], registry=registry)
        self.held = Gauge("kintsmesh_component_held", "1 while an operator stopped the component (stack down)",
                          ["component"], registry=registry)


class Supervisor:
    """One ``tick`` looks at every component once; pure bookkeeping around ``Component`` calls."""

    def __init__(self, components: Sequence[Component], metrics: SupervisorMetrics,
                 delays: Sequence[float] = RESTART_DELAYS_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.watched = [Watched(c) for c in components]
        self.metrics, self.delays, self.clock = metrics, delays, clock

    def tick(self) -> list[str]:
        """One look at every component; what it did, one line each."""
        _reap_children()
        done = []
        for w in self.watched:
            line = self._look(w, self.clock())
            if line:
                log.warning("%s", line)
                done.append(line)
        return done

    def _look(self, w: Watched, now: float) -> str:
        held = w.component.held
        self.metrics.held.labels(w.name).set(int(held))
        self._count_restarts(w, now)
        pid = w.component.pid()
        self.metrics.up.labels(w.name).set(int(pid is not None))
        if pid is not None:
            if w.started_at is not None and now - w.started_at > STABLE_AFTER_S:
                w.failures, w.started_at = 0, None
            w.next_start_at = None
            return ""
        if held:
            w.failures, w.next_start_at = 0, None
            return ""
        if w.next_start_at is None:   # just found dead: schedule the start
            if w.started_at is None or now - w.started_at > STABLE_AFTER_S:
                w.failures = 0
            w.failures += 1
            delay = self.delays[min(w.failures, len(self.delays)) - 1]
            w.next_start_at = now + delay
            return f"{w.name}: not running; starting it again in {delay:g} s (failure {w.failures} in a row)"
        if now < w.next_start_at:
            return ""
        w.next_start_at, w.started_at = None, now
        w.restarts.append(now)
        self._count_restarts(w, now)
        self.metrics.restarts.labels(w.name).inc()
        try:
            started = w.component.start_if_down()
        except Exception as exc:  # noqa: BLE001 - a failed start is one more failure, retried with backoff
            return f"{w.name}: could not start: {type(exc).__name__}: {exc}"
        return f"{w.name}: started again (pid {started})" if started else ""


    def _count_restarts(self, w: Watched, now: float) -> None:
        while w.restarts and now - w.restarts[0] > CRASH_LOOP_WINDOW_S:
            w.restarts.popleft()
        self.metrics.crash_looping.labels(w.name).set(int(len(w.restarts) >= CRASH_LOOP_RESTARTS))


def _reap_children() -> None:
    """Components the supervisor started are its children: collect the dead so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(components: Sequence[Component], port: int, host: str) -> None:
    """The supervisor process: tick every second until SIGTERM / SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = CollectorRegistry()
    start_http_server(port, addr=host, registry=registry)
    supervisor = Supervisor(components, SupervisorMetrics(registry))
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    log.info("supervising %s; /metrics on :%s", ", ".join(w.name for w in supervisor.watched), port)
    while not stopping.is_set():
        supervisor.tick()
        stopping.wait(TICK_S)
