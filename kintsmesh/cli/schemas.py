"""``kintsmesh schemas``: the Avro schemas in the schema registry."""

from __future__ import annotations

import argparse
import json
from typing import Any

from kintsmesh.errors import KintsmeshError
from kintsmesh.registry.catalog import LEVELS
from kintsmesh.settings import Settings


def cmd_schemas(args: argparse.Namespace, settings: Settings) -> int:
    from kintsmesh.registry.client import SchemaRegistry

    registry = SchemaRegistry(settings)
    if args.action == "register":
        if not args.file or not args.subject:
            raise KintsmeshError("schemas register: give FILE (an .avsc) and --subject")
        with open(args.file) as fh:
            version = registry.register(args.subject, json.load(fh))
        print(f"{version.subject} version {version.version} id {version.id}")
        return 0
    if args.action == "compatibility":
        if args.level:
            registry.client.set_compatibility(args.subject, args.level)
        print(f"{args.subject or '(global)'}: {registry.client.get_compatibility(args.subject)}")
        return 0
    versions = registry.versions()
    if args.action == "show":
        if args.subject not in versions:
            raise KintsmeshError(f"schemas show: no subject {args.subject!r} (kintsmesh schemas list)")
        print(json.dumps(versions[args.subject][-1].schema, ensure_ascii=False, indent=2))
        return 0
    for subject, held in sorted(versions.items()):
        print(f"{subject:<48} versions {len(held):<3} latest {held[-1].version} id {held[-1].id}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("schemas", help="Avro schemas in the schema registry (KINTSMESH_REGISTRY_URL)")
    p.add_argument("action", choices=["list", "register", "show", "compatibility"])
    p.add_argument("file", nargs="?", help="register: the .avsc file")
    p.add_argument("--subject", help="register / show / compatibility: subject, e.g. gldm.person.candidates-value")
    p.add_argument("--level", choices=LEVELS, help="compatibility: set this level (the subject's, or the global one)")
    p.set_defaults(handler=cmd_schemas)
