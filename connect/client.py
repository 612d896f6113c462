"""A small Kafka Connect REST client (requests): create-or-update, status, restart.

HTTP failures are translated at this boundary into ``ConnectError`` carrying the
status code and Connect's own error message.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

import requests

from kintsmesh.errors import KintsmeshError, TerminalError, TransientError
from kintsmesh.settings import Settings

ConnectorState = Literal["RUNNING", "FAILED", "PAUSED", "UNASSIGNED", "RESTARTING", "STOPPED", "MISSING"]


RETRIABLE_STATUS = frozenset({409, 500, 503})
RETRIES = 8


class ConnectError(TerminalError):
    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"Kafka Connect {method} {path} -> {status}: {message}")
        self.status = status


@dataclass(frozen=True)
class TaskStatus:
    id: int
    state: str
    trace: str | None = None


@dataclass(frozen=True)
class ConnectorStatus:
    name: str
    connector_state: ConnectorState
    tasks: tuple[TaskStatus, ...] = field(default_factory=tuple)

    @property
    def running(self) -> bool:
        return self.connector_state == "RUNNING" and bool(self.tasks) and all(t.state == "RUNNING" for t in self.tasks)


class ConnectClient:
    def __init__(self, base_url: str, timeout_s: float = 10.0, auth: tuple[str, str] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        self.session.auth = auth

    @classmethod
    def of(cls, settings: Settings, timeout_s: float = 10.0) -> ConnectClient:
        """The stack's Connect, as this process's REST user (HTTP basic authentication)."""
        return cls(settings.connect_endpoint, timeout_s, settings.connect_credentials)

    def _call(self, method: str, path: str, **kwargs: object) -> requests.Response:
        # 409 (rebalance in progress) and 500/503 right after a worker (re)joins its group are
        # passing states of a distributed worker: retry with back-off before giving up
        for attempt in range(RETRIES):
            try:
                response = self.session.request(method, self.base_url + path, timeout=self.timeout_s, **kwargs)  # type: ignore[arg-type]
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"Kafka Connect is not reachable at {self.base_url} (is the stack up?)") from exc
            if response.status_code not in RETRIABLE_STATUS or attempt == RETRIES - 1:
                break
            time.sleep(min(0.5 * 2**attempt, 5.0))
        if response.status_code >= 400 and response.status_code != 404:
            try:
                message = response.json().get("message", response.text)
            except ValueError:
                message = response.text
            if response.status_code == 401:
                message = f"{message} (Connect's REST API authenticates every caller: KINTSMESH_CONNECT_USER)"
            raise ConnectError(method, path, response.status_code, message)
        return response

    def config(self, name: str) -> dict[str, str] | None:
        """The connector's stored config as Connect returns it (references unresolved), None if unknown."""
        current = self._call("GET", f"/connectors/{name}/config")
        return current.json() if current.status_code == 200 else None

    def apply(self, name: str, config: dict[str, str]) -> str:
        """Create or update a connector idempotently (PUT /connectors/<name>/config)."""
        if self.config(name) == {**config, "name": name}:
            return "unchanged"
        response = self._call("PUT", f"/connectors/{name}/config", json=config)
        return "created" if response.status_code == 201 else "updated"

    def status(self, name: str) -> ConnectorStatus:
        response = self._call("GET", f"/connectors/{name}/status")
        if response.status_code == 404:
            return ConnectorStatus(name, "MISSING")
        body = response.json()
        tasks = tuple(
            TaskStatus(id=t["id"], state=t["state"], trace=t.get("trace")) for t in body.get("tasks", [])
        )
        return ConnectorStatus(name, body["connector"]["state"], tasks)

    def restart(self, name: str) -> None:
        """Restart the connector and its failed tasks."""
        path = f"/connectors/{name}/restart"
        if self._call("POST", path, params={"includeTasks": "true", "onlyFailed": "true"}).status_code == 404:
            raise ConnectError("POST", path, 404, "no such connector; run kintsmesh connect apply")

    def stop(self, name: str) -> None:
        """Stop the connector and its tasks, keeping its config and offsets (KIP-875); ``resume`` restarts it."""
        self._expect_known("PUT", f"/connectors/{name}/stop")

    def resume(self, name: str) -> None:
        """Resume a stopped or paused connector."""
        self._expect_known("PUT", f"/connectors/{name}/resume")

    def _expect_known(self, method: str, path: str) -> None:
        if self._call(method, path).status_code == 404:
            raise ConnectError(method, path, 404, "no such connector; run kintsmesh connect apply")

    def wait_running(self, names: list[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(names)
        while pending:
            pending = [n for n in pending if not self.status(n).running]
            if not pending:
                return
            if time.monotonic() > deadline:
                states = {n: self.status(n).connector_state for n in pending}
                raise KintsmeshError(f"connectors not running after {timeout_s:.0f} s: {states} (kintsmesh connect status)")
            time.sleep(0.5)
