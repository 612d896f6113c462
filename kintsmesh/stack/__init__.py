"""``kintsmesh stack up | down | status | logs``: the whole stack as local processes.

All state (data, configs, logs, pid files, resolved jars) lives under
``Settings.stack_dir`` (``.stack/`` by default, git-ignored).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable
from functools import partial

from kintsmesh.errors import StackError
from kintsmesh.security import kafka as kafka_acls
from kintsmesh.security.postgres import apply_roles
from kintsmesh.settings import Settings
from kintsmesh.stack.components import Component, Kafka, Postgres, Status, components, stale_pid
from kintsmesh.stack.migrate import migrate_all
from kintsmesh.stack.process import wait_until
from kintsmesh.stack.topology import ensure_pipeline_topics


def _select(settings: Settings, names: Iterable[str] | None) -> list[Component]:
    every = components(settings)
    if not names:
        return every
    wanted = set(names)
    unknown = wanted - {c.name for c in every}
    if unknown:
        raise StackError("stack", f"unknown component(s) {sorted(unknown)}; known: {[c.name for c in every]}")
    return [c for c in every if c.name in wanted]


def healthy(component: Component) -> bool:
    return component.status().healthy


def up(settings: Settings, names: Iterable[str] | None = None) -> list[Status]:
    """Start what is not running and wait for every component's health check. Idempotent."""
    settings.stack_dir.mkdir(parents=True, exist_ok=True)
    selected = _select(settings, names)
    if not {"departments", "postgres"} & {c.name for c in selected}:   # workers started alone get their migrations
        _after_up(settings, _select(settings, ["postgres"])[0])
    for component in selected:
        started = time.monotonic()
        if component.status().healthy:
            component.hold(False)
            print(f"  {component.name:<11} already up (port {component.port})", flush=True)
            _after_up(settings, component)
            continue
        if stale := stale_pid(component):
            print(f"  {component.name:<11} pid file names {stale}, which is gone or not ours; starting afresh", flush=True)
        # the nodes of a Kafka quorum start together: one alone never has a majority to register with
        for node in [c for c in selected if isinstance(c, Kafka)] if isinstance(component, Kafka) else [component]:
            if node.pid() is None:
                print(f"  {node.name:<11} preparing ...", flush=True)
                node.start_if_down()
            node.hold(False)   # after the start: the supervisor never sees it released and not yet started
        print(f"  {component.name:<11} waiting for health check on port {component.port} ...", flush=True)
        if not wait_until(partial(healthy, component), settings.start_timeout_s, 1.0):
            reason = "exited" if component.pid() is None else f"not healthy after {settings.start_timeout_s:.0f} s"
            raise StackError(component.name, f"{reason}; see {component.log_file} (kintsmesh stack logs {component.name})")
        component.after_start()
        print(f"  {component.name:<11} up in {time.monotonic() - started:.1f} s (port {component.port}, pid {component.pid()})", flush=True)
        _after_up(settings, component)
    return status(settings)


def configure_postgres(settings: Settings) -> tuple[dict[str, list[str]], list[str]]:
    """Migrations, then every component's role and grants (grants name the tables); returns what was applied."""
    applied = migrate_all(settings)
    return applied, apply_roles(settings)


def configure_kafka(settings: Settings) -> dict[str, int]:
    """Every principal and its ACLs, then every pipeline topic (created as admin); returns ACLs per principal."""
    principals = kafka_acls.apply(settings)
    ensure_pipeline_topics(settings)
    return principals


def _after_up(settings: Settings, component: Component) -> None:
    # migrations before the workers that need them, once both clusters answer
    if isinstance(component, Postgres) and all(healthy(c) for c in _select(settings, ["departments", "postgres"])):
        for database, applied in configure_postgres(settings)[0].items():
            if applied:
                print(f"  migrations  {database}: applied {', '.join(applied)}", flush=True)
    if isinstance(component, Kafka) and component.node == 1:   # once for the cluster
        principals = configure_kafka(settings)
        print(f"  kafka       {len(principals)} principals, {sum(principals.values())} ACLs", flush=True)


def down(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """Stop only the processes this stack started (by pid file), in reverse start order (the supervisor
    first); each is held down until the next ``up``."""
    stopped = []
    chosen = _select(settings, names)
    if not names:   # brokers of an earlier replicated run (KINTSMESH_KAFKA_BROKERS=3) that this one does not know
        chosen += [node for node in (Kafka(settings, n) for n in range(settings.kafka_brokers + 1, 4))
                   if node.pid() is not None]
    for component in reversed(chosen):
        component.hold(True)   # the supervisor leaves it down until the next `stack up`
        if component.stop():
            stopped.append(component.name)
            print(f"  {component.name:<11} stopped", flush=True)
    return stopped


def reset(settings: Settings) -> None:
    """Stop everything and delete all data (databases, topics, connector offsets, simulator state, secrets).

    Resolved jars and the Maven cache are kept, so the next ``up`` is quick.
    """
    down(settings)
    every = [*components(settings), *(Kafka(settings, n) for n in range(settings.kafka_brokers + 1, 4))]
    for component in every:
        shutil.rmtree(component.home, ignore_errors=True)
        component.log_file.unlink(missing_ok=True)   # an old traceback would read as the new stack's
    # every simulated city, the benchmarks' too: their rows lived in the databases just deleted
    for city in [settings.stack_dir / "sim", *(settings.stack_dir / "bench").glob("*/sim")]:
        shutil.rmtree(city, ignore_errors=True)
    # a new installation: new passwords, CA and signing keys (tokens issued before are void)
    shutil.rmtree(settings.secrets_dir, ignore_errors=True)


def status(settings: Settings) -> list[Status]:
    return [component.status() for component in components(settings)]


def log_path(settings: Settings, name: str) -> str:
    return str(_select(settings, [name])[0].log_file)
