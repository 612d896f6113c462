"""Kafka least privilege: a SCRAM principal per component, department connector and subscriber, and exactly
the ACLs ``kafka_acls.yaml`` lists (applied on every ``stack up``, stale ones deleted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, ResourcePatternType,
                                   ResourceType, ScramCredentialInfo, ScramMechanism, UserScramCredentialAlteration,
                                   UserScramCredentialUpsertion)

from kintsmesh import kafka, topics
from kintsmesh.settings import DEPARTMENTS, Settings

ACLS_FILE = Path(__file__).with_name("kafka_acls.yaml")
SUPER_USERS = ("admin", "kafka-broker")   # kafka-broker: the nodes' own TLS certificate (controller, inter-broker)
SCRAM_ITERATIONS = 8192
OPERATIONS = {
    "consume": (ResourceType.TOPIC, (AclOperation.READ, AclOperation.DESCRIBE)),
    "produce": (ResourceType.TOPIC, (AclOperation.WRITE, AclOperation.DESCRIBE, AclOperation.CREATE)),
    "describe": (ResourceType.TOPIC, (AclOperation.DESCRIBE,)),
    "groups": (ResourceType.GROUP, (AclOperation.READ, AclOperation.DESCRIBE)),
    "describe_groups": (ResourceType.GROUP, (AclOperation.DESCRIBE,)),
}


@dataclass(frozen=True)
class Grant:
    principal: str
    resource: ResourceType
    name: str
    prefixed: bool
    operation: AclOperation

    def binding(self) -> AclBinding:
        pattern = ResourcePatternType.PREFIXED if self.prefixed else ResourcePatternType.LITERAL
        return AclBinding(self.resource, self.name, pattern, f"User:{self.principal}", "*", self.operation,
                          AclPermissionType.ALLOW)


def _expand(template: str, subscribers: list[str], bound: dict[str, str] | None = None) -> list[dict[str, str]]:
    """Every assignment of the placeholders in ``template`` not ``bound`` already (a principal's own)."""
    values: list[dict[str, str]] = [dict(bound or {})]
    for key, options in (("department", list(DEPARTMENTS)), ("entity", list(topics.GLDM_ENTITIES)),
                         ("subscriber", subscribers)):
        if "{" + key + "}" in template and key not in (bound or {}):
            values = [{**v, key: option} for v in values for option in options]
    return values


def principals(subscribers: list[str] | None = None) -> dict[str, list[Grant]]:
    """Every principal (templates expanded) with its grants."""
    if subscribers is None:
        from streams.events.subscriptions import subscriptions

        subscribers = list(subscriptions())
    spec: dict[str, Any] = yaml.safe_load(ACLS_FILE.read_text())["principals"]
    found: dict[str, list[Grant]] = {}
    for template, body in spec.items():
        unknown = set(body) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"{ACLS_FILE}: {template}: unknown keys {sorted(unknown)}")
        for values in _expand(template, subscribers):
            name = template.format(**values)
            grants = found.setdefault(name, [])
            for kind, patterns in body.items():
                resource, operations = OPERATIONS[kind]
                for pattern in patterns:
                    for expanded in {pattern.format(**v) for v in _expand(pattern, subscribers, values)}:
                        prefixed = expanded.endswith("*") and expanded != "*"
                        grants += [Grant(name, resource, expanded.rstrip("*") if prefixed else expanded, prefixed, op)
                                   for op in operations]
    return found


def registry_writers() -> frozenset[str]:
    return frozenset(yaml.safe_load(ACLS_FILE.read_text()).get("registry_writers", []))


def apply(settings: Settings, subscribers: list[str] | None = None) -> dict[str, int]:
    """Create every principal's SCRAM credential (its password: the installation's secret) and set the ACLs
    to the file's; returns the number of ACLs per principal."""
    wanted = principals(subscribers)
    client = kafka.admin(settings)
    add_principals(settings, [*wanted, "admin"])
    bindings = {g.binding() for grants in wanted.values() for g in grants}
    existing = set(client.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                                                         AclOperation.ANY, AclPermissionType.ANY)).result(timeout=30))
    stale = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                              b.permission_type) for b in existing - bindings]
    if stale:
        for future in client.delete_acls(stale).values():
            future.result(timeout=30)
    missing = list(bindings - existing)
    if missing:
        for future in client.create_acls(missing).values():
            future.result(timeout=30)
    return {name: len(grants) for name, grants in wanted.items()}


def add_principals(settings: Settings, names: list[str]) -> None:
    """A SCRAM credential for each principal, its password the installation's secret (set again if it changed)."""
    users: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                                     settings.kafka_password(name).encode()) for name in names]
    client = kafka.admin(settings)   # kept: a destroyed client fails its futures
    for future in client.alter_user_scram_credentials(users).values():
        future.result(timeout=30)
