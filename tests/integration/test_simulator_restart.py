"""A live simulation killed before it saved its city is made again by the next run, not a collision."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from kintsmesh.simulate.runner import run_simulation

pytestmark = pytest.mark.integration


def test_a_live_run_killed_mid_way_is_redone_by_the_next_run_without_a_collision(settings, tmp_path, fresh_seed):
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    run_simulation(sim, seed=fresh_seed, initial=200, rate=None, duration_s=0, dirty_rate=0.03, truth_path=None)
    script = ("from kintsmesh.settings import Settings; from kintsmesh.simulate.runner import run_simulation;"
              f"run_simulation(Settings(stack_dir={str(tmp_path)!r}), seed={fresh_seed}, initial=None, rate=150,"
              " duration_s=60, dirty_rate=0.03, truth_path=None)")
    killed = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    marker = tmp_path / "sim" / "live-run.unfinished"
    time.sleep(8)   # inserts of new rows (births, rentals, enterprises) committed, the city not saved
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    reserved, seed = map(int, marker.read_text().split()[:2])
    assert reserved >= 500 and seed == fresh_seed
    # the next run is another seed's (as a benchmark after the demo): the killed run's own draws come first
    stats = run_simulation(sim, seed=fresh_seed + 100, initial=None, rate=150, duration_s=3, dirty_rate=0.03,
                           truth_path=None)
    assert stats is not None and stats.changes > 0
    assert not marker.exists()
    # and the run after it starts from the saved city as usual
    assert run_simulation(sim, seed=fresh_seed, initial=None, rate=150, duration_s=2, dirty_rate=0.03,
                          truth_path=None) is not None
