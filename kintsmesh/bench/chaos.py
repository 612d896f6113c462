"""``kintsmesh bench chaos``: SIGKILL the stack's processes at random during a live run; nothing lost, nothing twice.

The simulator writes ``--changes`` live changes at ``--rate`` into the departments' databases (its own
city under ``.stack/bench/chaos``, loaded on first use). Meanwhile, at random moments (``--kills`` of
them, spread over the run), one running component picked at random — normalize, resolve, merge, the
life-event worker (which also runs the subscription sink), Kafka Connect, a Kafka broker (one of three with
``KINTSMESH_KAFKA_BROKERS=3``) or PostgreSQL
— is killed with SIGKILL; the stack's supervisor brings it back, and the time from the kill to its
health check answering again is its recovery time. When the run ends and the stages have drained,
``kintsmesh verify`` reconciles every department row with the library and the DLQs and counts anything
published twice.

Writes ``bench/results/chaos.json``: ``kills``, ``changes``, ``lost`` (department rows in no library table
and no DLQ), ``duplicated`` (golden versions, golden changes and life-event ids twice), ``dlq`` (DLQ
records the run added), ``recovered_s_p99``. Target: ``lost`` 0, ``duplicated`` 0.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from rich.console import Console

from kintsmesh import stack
from kintsmesh.bench import write_result
from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.simulate.runner import redo_unfinished, run_simulation
from kintsmesh.stack.process import wait_until
from kintsmesh.watch import percentile
from monitoring.lag import wait_for_capture, wait_for_pipeline
from monitoring.verify import check
from sinks.dlq import summary

SEED = 55
VICTIMS = ("normalize", "resolve", "merge", "events", "connect", "kafka", "postgres", "departments")
RECOVERY_TIMEOUT_S = 300.0


@dataclass
class Kill:
    component: str
    at_s: float                        # seconds into the live run
    recovered_s: float | None = None   # kill -> healthy again under a new pid


class Killer(threading.Thread):
    """Kills a random running component ``kills`` times over ``duration_s``, each at a random moment of its
    slot; waits for each to be healthy again before the next."""

    def __init__(self, settings: Settings, kills: int, duration_s: float, rng: random.Random,
                 victims: tuple[str, ...] = VICTIMS) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        # with three brokers, any one of them (kafka, kafka2, kafka3)
        self.components = [c for c in stack.components(settings) if c.name.rstrip("0123456789") in victims]
        self.kills, self.duration_s, self.rng = kills, duration_s, rng
        self.done: list[Kill] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        started = time.monotonic()
        slot = self.duration_s / self.kills
        for n in range(self.kills):
            moment = started + slot * (n + self.rng.uniform(0.1, 0.9))
            if self.stopping.wait(max(0.0, moment - time.monotonic())):
                return
            running = [(c, pid) for c in self.components if (pid := c.pid()) is not None]
            if not running:
                continue
            component, pid = self.rng.choice(running)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            kill = Kill(component.name, round(time.monotonic() - started, 1))
            self.done.append(kill)
            print(f"  chaos: killed {component.name} (pid {pid}) at {kill.at_s:.0f} s", flush=True)
            killed_at = time.monotonic()
            while time.monotonic() - killed_at < RECOVERY_TIMEOUT_S and not self.stopping.is_set():
                if component.pid() not in (None, pid) and component.status().healthy:
                    kill.recovered_s = round(time.monotonic() - killed_at, 2)
                    print(f"  chaos: {component.name} healthy again after {kill.recovered_s:.1f} s", flush=True)
                    break
                time.sleep(0.2)


def _dlq_total(settings: Settings) -> int:
    return sum(sum(c.values()) for c in summary(settings, [*DEPARTMENTS, "merge", "events"]).values())


def run_chaos_bench(settings: Settings, changes: int = 100_000, rate: float = 400.0, kills: int = 20,
                    people: int = 2000, seed: int | None = None) -> dict[str, Any]:
    sim = settings.model_copy(update={"stack_dir": settings.stack_dir / "bench" / "chaos"})
    down = [s.name for s in stack.status(settings) if not s.healthy]
    if down:
        raise KintsmeshError(f"bench chaos: not up: {down}; run `make up` first")
    if "supervisor" in down:
        raise KintsmeshError("bench chaos: the supervisor is not running; nothing would bring the killed back")
    run_simulation(sim, seed=SEED, initial=people, rate=None, duration_s=0, dirty_rate=0.03, truth_path=None,
                   keep_existing=True)
    redo_unfinished(sim, seed=SEED, dirty_rate=0.03)
    left = wait_for_pipeline(settings, 1800)
    if any(left.values()):
        raise KintsmeshError(f"bench chaos: the stack did not settle before the run: {left}")
    dlq_before = _dlq_total(settings)
    duration_s = changes / rate
    rng = random.Random(seed)
    killer = Killer(settings, kills, duration_s * 0.9, rng)
    print(f"chaos: {changes:,} changes at {rate:,.0f}/s ({duration_s:.0f} s), {kills} SIGKILLs among"
          f" {', '.join(VICTIMS)}", flush=True)
    started = time.monotonic()
    killer.start()
    stats = run_simulation(sim, seed=SEED, initial=None, rate=rate, duration_s=duration_s, dirty_rate=0.03,
                           truth_path=None)
    killer.join(RECOVERY_TIMEOUT_S)
    killer.stopping.set()
    live_s = time.monotonic() - started
    for component in stack.components(settings):   # whatever was killed last is back before the count
        if not wait_until(partial(stack.healthy, component), RECOVERY_TIMEOUT_S, 1.0):
            raise KintsmeshError(f"bench chaos: {component.name} did not come back")
    print("chaos: run over; waiting for Debezium to capture every committed change, then the stages to drain ...",
          flush=True)
    drained_from = time.monotonic()
    uncaptured = wait_for_capture(settings, 1800)   # a Connect killed late holds its backlog in the WAL
    left = wait_for_pipeline(settings, 3600)
    drained_s = time.monotonic() - drained_from
    verified = check(settings, grace_s=0)
    console = Console()
    for line in verified.render():
        console.print(line)
    recoveries = [k.recovered_s for k in killer.done if k.recovered_s is not None]
    result = {
        "kills": len(killer.done),
        "changes": stats.changes if stats else 0,
        "lost": verified.missing,
        "duplicated": (verified.history_duplicates + verified.change_duplicates + verified.event_duplicates),
        "dlq": _dlq_total(settings) - dlq_before,
        "recovered_s_p99": round(percentile(recoveries, 99), 2) if recoveries else None,
        "recovered_s_p50": round(percentile(recoveries, 50), 2) if recoveries else None,
        "not_recovered": len(killer.done) - len(recoveries),
        "kills_by_component": {name: sum(k.component == name for k in killer.done)
                               for name in sorted({k.component for k in killer.done})},
        "kafka_brokers": settings.kafka_brokers,
        "rate_per_s": rate,
        "live_s": round(live_s, 1),
        "drained_after_s": round(drained_s, 1),
        "left_in_pipeline": left, "wal_bytes_not_captured": uncaptured,
        "history_gaps": verified.history_gaps,
        "kill_log": [k.__dict__ for k in killer.done],
    }
    print(f"chaos: {result['kills']} kills, {result['changes']:,} changes: lost {result['lost']},"
          f" duplicated {result['duplicated']}, {result['dlq']} to DLQs, recovery p99 {result['recovered_s_p99']} s",
          flush=True)
    write_result("chaos" if settings.kafka_brokers == 1 else f"chaos-{settings.kafka_brokers}-brokers", result)
    return result
