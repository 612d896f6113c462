"""Where the cores go during a benchmark: CPU seconds per stack component, read from ``/proc``.

Every process on the machine is sampled at the start of a window, every half
second during it and at its end, and put in one group: a stack component (by its
pid file's process, and PostgreSQL's children by database), the benchmark's own
process (the simulator) or "other". A process that exits inside the window counts
up to its last sample (the simulator's department connections close before the
end), so short-lived work is undercounted by at most half a second each.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

from kintsmesh.settings import Settings
from kintsmesh.stack.process import cmdline, owned_pid, proc_stat

TICKS = os.sysconf("SC_CLK_TCK")
STACK_PROCESSES = ("kafka", "connect", "registry", "normalize", "resolve", "merge", "events", "api", "monitor",
                   "prometheus")


def postgres_group(command: str, cluster: str = "library") -> str:
    """A PostgreSQL process by what it serves: ``postgres: <user> <db> ...`` backends by database, the
    library's also by the component whose role connected (``kintsmesh_merge`` -> ``postgres resource_library
    (merge)``; the administrator's and others' ``(other)``); the background work of each cluster (WAL writer,
    checkpointer, autovacuum) apart."""
    words = command.split()
    if len(words) >= 2 and words[0] == "postgres:" and words[1] == "walsender":
        return "postgres walsender (Debezium)"
    if len(words) >= 4 and words[0] == "postgres:" and "(" in words[3]:
        if words[2] != "resource_library":
            return "postgres departments"
        component = words[1].removeprefix("kintsmesh_") if words[1].startswith("kintsmesh_") else "other"
        return f"postgres resource_library ({component})"
    return "postgres (background)" if cluster == "library" else "postgres departments (background)"


class CpuWindow:
    """``start()`` then ``stop()``: cores used per group in between, and the window's length."""

    def __init__(self, settings: Settings, every_s: float = 0.5) -> None:
        self.settings = settings
        self.every_s = every_s
        self.before: dict[int, tuple[str, int]] = {}
        self.latest: dict[int, tuple[str, int]] = {}
        self.started = 0.0
        self.done = threading.Event()
        self.sampler: threading.Thread | None = None

    def _groups(self) -> dict[int, tuple[str, int]]:
        run = self.settings.stack_dir / "run"
        named = {}
        for name in STACK_PROCESSES:
            pid = owned_pid(run / f"{name}.pid", str(self.settings.stack_dir))
            if pid is not None:
                named[pid] = name
        postmasters = {pid: cluster for cluster, pid in (
            ("library", owned_pid(run / "postgres.pid", str(self.settings.stack_dir))),
            ("departments", owned_pid(run / "departments.pid", str(self.settings.stack_dir)))) if pid is not None}
        own = os.getpid()
        sample: dict[int, tuple[str, int]] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            fields = proc_stat(pid)
            if fields is None:
                continue
            if pid in named:
                group = named[pid]
            elif pid == own:
                group = "benchmark (simulator)"
            elif (cluster := postmasters.get(pid) or postmasters.get(int(fields[1]))) is not None:
                group = postgres_group(cmdline(pid), cluster)
            else:
                group = "other"
            sample[pid] = (group, int(fields[11]) + int(fields[12]))   # utime + stime
        return sample

    def _sample(self) -> None:
        while not self.done.wait(self.every_s):
            self.latest.update(self._groups())

    def start(self) -> None:
        self.before = self._groups()
        self.latest = dict(self.before)
        self.started = time.monotonic()
        self.done.clear()
        self.sampler = threading.Thread(target=self._sample, name="cpu-window", daemon=True)
        self.sampler.start()

    def stop(self) -> dict[str, object]:
        self.done.set()
        if self.sampler is not None:
            self.sampler.join()
        self.latest.update(self._groups())
        seconds = time.monotonic() - self.started
        used: Counter[str] = Counter()
        for pid, (group, ticks) in self.latest.items():
            used[group] += ticks - (self.before[pid][1] if pid in self.before else 0)
        cores = {group: round(ticks / TICKS / seconds, 3) for group, ticks in used.most_common() if ticks > 0}
        return {"window_s": round(seconds, 1), "cores_used": round(sum(cores.values()), 2),
                "cores_by_component": cores}


# the processes that resolve and merge a candidate: the two stages, their backends in the library and the work its
# cluster does for them in the background (WAL writer, checkpointer, autovacuum)
MERGE_STAGE = ("resolve", "merge", "postgres resource_library (resolve)", "postgres resource_library (merge)",
               "postgres (background)")


def cpu_us_per_unit(usage: dict[str, object], groups: tuple[str, ...], units: int) -> float:
    """CPU microseconds the ``groups`` of a ``CpuWindow.stop()`` used per unit of work done in the window."""
    cores = usage["cores_by_component"]
    window_s = usage["window_s"]
    assert isinstance(cores, dict) and isinstance(window_s, (int, float))
    return round(sum(cores.get(g, 0.0) for g in groups) * window_s / max(units, 1) * 1e6, 1)


def process_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) one process has used so far; None when it is gone."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICKS if fields is not None else None


def format_cores(usage: dict[str, object]) -> str:
    cores = usage["cores_by_component"]
    assert isinstance(cores, dict)
    parts = ", ".join(f"{group} {share:.2f}" for group, share in cores.items() if share >= 0.01)
    return f"cores used {usage['cores_used']} over {usage['window_s']} s: {parts}"
