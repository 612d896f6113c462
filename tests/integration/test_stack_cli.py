"""``kintsmesh stack restart``: a component stopped and started again by one command, healthy after."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kintsmesh import stack

pytestmark = pytest.mark.integration


def test_restart_starts_a_new_process_of_the_component_and_it_is_healthy(settings):
    before = {s.name: s for s in stack.status(settings)}["api"]
    assert before.healthy and before.pid
    done = subprocess.run([sys.executable, "-m", "kintsmesh.cli", "stack", "restart", "api"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "stopped: api" in done.stdout
    after = {s.name: s for s in stack.status(settings)}["api"]
    assert after.healthy and after.pid and after.pid != before.pid
