"""The project's exception hierarchy: one base, split by what the caller should do."""

from __future__ import annotations


class KintsmeshError(Exception):
    """Base of every error Kintsmesh raises on purpose."""


class TransientError(KintsmeshError):
    """Worth retrying after a back-off: a broker or database that is not there yet."""


class TerminalError(KintsmeshError):
    """Retrying the same thing fails the same way: fix the input, the configuration or the call."""


class RejectedRecord(TerminalError):
    """One input record that can never be processed as it is: it goes to its DLQ with the reason,
    and the stage goes on with the next one."""


# How long a process waits before trying again after a transient failure: 1 s, 2 s, 5 s, 10 s,
# then every 30 s (the stack's supervisor and the workers' reconnect loop).
RESTART_DELAYS_S = (1.0, 2.0, 5.0, 10.0, 30.0)


class StackError(TerminalError):
    """A stack component could not be set up, started or reached.

    ``component`` names it; the message is one line telling what and how to fix it.
    """

    def __init__(self, component: str, message: str) -> None:
        super().__init__(f"{component}: {message}")
        self.component = component


class PrerequisiteMissing(StackError):
    """A tool the local stack needs (Java, Maven, PostgreSQL, Prometheus) is absent."""


class PortBusy(StackError):
    """A port the stack wants is held by a process the stack did not start."""

    def __init__(self, component: str, port: int, env_var: str) -> None:
        super().__init__(
            component,
            f"port {port} is already in use by another process; free it or set {env_var} to a free port",
        )
        self.port = port
