"""What every process of the local stack is: a ``Component`` that prepares its files, starts, probes
its health and stops, with its pid file and log under ``.stack/``."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kintsmesh.errors import PortBusy
from kintsmesh.settings import Settings
from kintsmesh.stack.process import find_process, owned_pid, port_open, spawn, terminate


@dataclass(frozen=True)
class Status:
    name: str
    port: int
    pid: int | None
    healthy: bool

    @property
    def state(self) -> str:
        if self.pid is None:
            return "down"
        return "up" if self.healthy else "starting/unhealthy"


class Component:
    """One process of the stack. Subclasses fill in ``prepare``, ``command`` and ``healthy``."""

    name: str = ""
    port_setting: str = ""   # the Settings field holding its port (KINTSMESH_<FIELD> in the environment)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.stack_dir / self.name
        self.pid_file = settings.stack_dir / "run" / f"{self.name}.pid"
        self.log_file = settings.stack_dir / "logs" / f"{self.name}.log"
        self.held_file = settings.stack_dir / "run" / f"{self.name}.held"

    @property
    def port(self) -> int:
        return int(getattr(self.settings, self.port_setting))

    @property
    def port_env(self) -> str:
        return f"KINTSMESH_{self.port_setting.upper()}"

    def pid(self) -> int | None:
        return owned_pid(self.pid_file, str(self.settings.stack_dir))

    def healthy(self) -> bool:
        raise NotImplementedError

    def status(self) -> Status:
        pid = self.pid()
        try:
            ok = pid is not None and self.healthy()
        except Exception:  # noqa: BLE001 - a failing probe is "unhealthy", shown in status
            ok = False
        return Status(self.name, self.port, pid, ok)

    def prepare(self) -> None:
        """Install / resolve / write config: everything before the process starts."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def start(self) -> None:
        if port_open(self.port):
            raise PortBusy(self.name, self.port, self.port_env)
        spawn(self.command(), self.log_file, self.pid_file, cwd=self.settings.stack_dir, env=self.env())

    @contextmanager
    def start_lock(self) -> Iterator[None]:
        """Held by whoever starts this component (``stack up``, the supervisor): one start at a time."""
        lock = self.settings.stack_dir / "run" / f"{self.name}.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def start_if_down(self) -> int | None:
        """Prepare and start it unless it runs; the new pid, or None if it was running (or found running
        under a pid file that named another process: adopted)."""
        with self.start_lock():
            if self.pid() is not None:
                return None
            self.pid_file.unlink(missing_ok=True)
            self.prepare()
            running = find_process(self.command())
            if running is not None:
                self.pid_file.write_text(f"{running}\n")
                return None
            self.start()
            return self.pid()

    @property
    def held(self) -> bool:
        """An operator stopped it (``stack down <name>``): the supervisor leaves it down until ``stack up``."""
        return self.held_file.exists()

    def hold(self, held: bool) -> None:
        if held:
            self.held_file.parent.mkdir(parents=True, exist_ok=True)
            self.held_file.touch()
        else:
            self.held_file.unlink(missing_ok=True)

    def after_start(self) -> None:
        """One-off work once healthy (databases, migrations)."""

    def stop(self) -> bool:
        """Stop the process if it is ours. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def write_properties(path: Path, values: dict[str, object]) -> None:
    """A Java properties file, readable by its owner only (some hold credentials)."""
    from kintsmesh.security.secrets import write_private

    path.parent.mkdir(parents=True, exist_ok=True)
    write_private(path, "".join(f"{key}={value}\n" for key, value in values.items()).encode())
