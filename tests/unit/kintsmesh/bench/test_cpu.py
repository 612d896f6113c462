"""The benchmarks' per-component CPU accounting."""

import os
import subprocess
import sys
import time

from kintsmesh.bench.cpu import CpuWindow, format_cores, postgres_group
from kintsmesh.settings import Settings


def test_postgres_processes_are_grouped_by_what_they_serve() -> None:
    # the library's backends by the component whose role connected: a stage's CPU counts only its own
    assert postgres_group("postgres: kintsmesh_merge resource_library 127.0.0.1(52278) idle") \
        == "postgres resource_library (merge)"
    assert postgres_group("postgres: kintsmesh resource_library 127.0.0.1(52278) idle") \
        == "postgres resource_library (other)"
    assert postgres_group("postgres: kintsmesh police 127.0.0.1(46408) INSERT") == "postgres departments"
    assert postgres_group("postgres: walsender kintsmesh 127.0.0.1(46566) START_REPLICATION") \
        == "postgres walsender (Debezium)"
    assert postgres_group("postgres: checkpointer ") == "postgres (background)"
    assert postgres_group("postgres: autovacuum worker resource_library") == "postgres (background)"
    assert postgres_group("postgres: checkpointer ", "departments") == "postgres departments (background)"


def test_the_window_counts_its_own_work_and_a_child_that_exited_before_it_closed(tmp_path) -> None:
    window = CpuWindow(Settings(stack_dir=tmp_path), every_s=0.1)
    before = os.times()
    window.start()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:   # the benchmark's own process, busy
        pass
    # a process that burns CPU and is gone before stop(): seen by the samples taken while it ran
    subprocess.run([sys.executable, "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.5: pass"],
                   check=True)
    time.sleep(0.3)
    usage = window.stop()
    after = os.times()
    seconds = usage["window_s"]
    cores = usage["cores_by_component"]
    assert isinstance(cores, dict) and isinstance(seconds, float)
    own = after.user + after.system - before.user - before.system
    child = after.children_user + after.children_system - before.children_user - before.children_system
    assert own >= 0.3 and child >= 0.5
    assert abs(cores["benchmark (simulator)"] * seconds - own) < 0.1
    # the child counts up to its last sample, at most a sampling period (0.1 s) short
    assert child - 0.15 < cores["other"] * seconds
    assert "cores used" in format_cores(usage)
