"""Keep a process of the stack running through crashes that are not its own code's (a C library aborting).

``supervise(argv)`` runs ``argv`` as a child that dies with this process (``PR_SET_PDEATHSIG``) and starts
it again when it dies of a signal or exits with an error, after 1, 2, 5, 10, then every 30 s while it keeps
failing within a minute of starting. SIGTERM / SIGINT are passed on to the child, and end the loop.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from kintsmesh.errors import RESTART_DELAYS_S

STABLE_AFTER_S = 60.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: the kernel sends SIGTERM to it when the supervisor dies, even by SIGKILL."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass   # not Linux: the child outlives a killed supervisor


def describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {-returncode} ({signal.Signals(-returncode).name})"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def supervise(name: str, argv: Sequence[str], delays: Sequence[float] = RESTART_DELAYS_S) -> int:
    """Run ``argv`` until it exits cleanly or this process is asked to stop; its last exit status."""
    stopping = threading.Event()
    child: list[subprocess.Popen[bytes]] = []

    def stop(signum: int, _frame: object) -> None:
        stopping.set()
        for process in child:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    failures = 0
    try:
        while True:
            started = time.monotonic()
            process = subprocess.Popen(list(argv), preexec_fn=_die_with_parent)
            child[:] = [process]
            returncode = process.wait()
            if returncode == 0 or stopping.is_set():
                return returncode
            failures = 1 if time.monotonic() - started > STABLE_AFTER_S else failures + 1
            delay = delays[min(failures, len(delays)) - 1]
            print(f"{name}: died ({describe(returncode)}); starting it again in {delay:g} s", file=sys.stderr,
                  flush=True)
            if stopping.wait(delay):
                return returncode
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
