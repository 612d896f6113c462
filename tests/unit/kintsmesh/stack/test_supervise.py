"""The stack supervisor's bookkeeping: backoff, stable runs, held components, crash loops (fake components and
clock); and one real start of a real process through ``Component.start_if_down``."""

import sys

from prometheus_client import CollectorRegistry

from kintsmesh.settings import Settings
from kintsmesh.stack.component import Component
from kintsmesh.stack.process import alive, terminate
from kintsmesh.stack.supervise import CRASH_LOOP_RESTARTS, STABLE_AFTER_S, Supervisor, SupervisorMetrics


class FakeComponent:
    """pid() None while 'dead'; start_if_down() brings it back (or fails when told to)."""

    def __init__(self, name: str) -> None:
        self.name, self.running, self.held, self.starts, self.fail = name, True, False, 0, False

    def pid(self):
        return 4242 if self.running else None

    def start_if_down(self):
        self.starts += 1
        if self.fail:
            raise OSError("port 19102 busy")
        self.running = True
        return 4242


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def supervisor(*components):
    clock = Clock()
    registry = CollectorRegistry()
    return Supervisor(components, SupervisorMetrics(registry), delays=(1, 2, 5), clock=clock), clock, registry


def test_a_dead_component_is_started_again_after_the_backoff_and_counted():
    merge = FakeComponent("merge")
    sup, clock, registry = supervisor(merge)
    assert sup.tick() == []
    merge.running = False
    assert sup.tick() == ["merge: not running; starting it again in 1 s (failure 1 in a row)"]
    clock.now += 0.5
    assert sup.tick() == [] and merge.starts == 0
    clock.now += 0.6
    assert sup.tick() == ["merge: started again (pid 4242)"]
    assert registry.get_sample_value("kintsmesh_component_restarts_total", {"component": "merge"}) == 1
    clock.now += 1
    sup.tick()
    assert registry.get_sample_value("kintsmesh_component_up", {"component": "merge"}) == 1


def test_quick_deaths_back_off_further_and_a_stable_run_resets_the_count():
    merge = FakeComponent("merge")
    sup, clock, _ = supervisor(merge)
    delays = []
    for _ in range(4):
        merge.running = False
        line = sup.tick()[0]
        delays.append(line.split(" in ")[1].split(" s")[0])
        clock.now += 10
        sup.tick()                       # started again, dies 10 s later
    assert delays == ["1", "2", "5", "5"]
    clock.now += STABLE_AFTER_S + 1
    sup.tick()                           # up for a minute: stable
    merge.running = False
    assert sup.tick() == ["merge: not running; starting it again in 1 s (failure 1 in a row)"]


def test_a_held_component_is_left_down():
    merge = FakeComponent("merge")
    sup, clock, registry = supervisor(merge)
    merge.running, merge.held = False, True
    for _ in range(3):
        assert sup.tick() == []
        clock.now += 10
    assert merge.starts == 0
    assert registry.get_sample_value("kintsmesh_component_held", {"component": "merge"}) == 1


def test_a_start_that_fails_is_retried_and_repeated_deaths_raise_the_crash_loop_gauge():
    merge, normalize = FakeComponent("merge"), FakeComponent("normalize")
    sup, clock, registry = supervisor(merge, normalize)
    merge.running, merge.fail = False, True
    lines = []
    for _ in range(CRASH_LOOP_RESTARTS * 2):
        lines += sup.tick()
        clock.now += 6
    assert "merge: could not start: OSError: port 19102 busy" in lines
    assert merge.starts >= CRASH_LOOP_RESTARTS
    assert registry.get_sample_value("kintsmesh_component_crash_looping", {"component": "merge"}) == 1
    assert registry.get_sample_value("kintsmesh_component_crash_looping", {"component": "normalize"}) == 0
    merge.fail = False
    clock.now += 601                     # ten quiet minutes later the window is empty again
    sup.tick()
    sup.tick()
    assert registry.get_sample_value("kintsmesh_component_crash_looping", {"component": "merge"}) == 0


class Sleeper(Component):
    name = "sleeper"
    port_setting = "supervisor_metrics_port"

    def command(self):
        return [sys.executable, "-c", f"import time  # {self.settings.stack_dir}\ntime.sleep(60)"]

    def start(self):   # no port to check
        from kintsmesh.stack.process import spawn

        spawn(self.command(), self.log_file, self.pid_file, cwd=self.settings.stack_dir)


def test_start_if_down_starts_a_real_process_once_and_hold_marks_it(tmp_path):
    sleeper = Sleeper(Settings(stack_dir=tmp_path))
    pid = sleeper.start_if_down()
    try:
        assert pid is not None and alive(pid)
        assert sleeper.start_if_down() is None          # running: not started twice
        sleeper.pid_file.write_text("1\n")              # a pid file that lost track of it (another starter's)
        assert sleeper.pid() is None
        assert sleeper.start_if_down() is None and sleeper.pid() == pid   # found by its command line, adopted
        assert not sleeper.held
        sleeper.hold(True)
        assert sleeper.held
        sleeper.hold(False)
        assert not sleeper.held
    finally:
        terminate(pid, timeout_s=5)
