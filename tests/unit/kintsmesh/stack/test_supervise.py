"""The supervisor that keeps the lag exporter running through a crash of a C library."""

import sys

from kintsmesh.stack.supervise import describe, supervise

CRASH_ONCE = """
import os, sys
marker = sys.argv[1]
if not os.path.exists(marker):
    open(marker, "w").close()
    os.abort()          # what librdkafka's failed assertion does
"""


def test_a_child_that_aborts_is_started_again_and_a_clean_exit_ends_the_loop(tmp_path, capsys):
    marker = tmp_path / "crashed-once"
    assert supervise("test child", [sys.executable, "-c", CRASH_ONCE, str(marker)], delays=(0.01,)) == 0
    assert marker.exists()
    assert "test child: died (signal 6 (SIGABRT)); starting it again in 0.01 s" in capsys.readouterr().err


def test_exit_statuses_read_as_what_happened():
    assert describe(-9) == "signal 9 (SIGKILL)"
    assert describe(3) == "exit status 3"
