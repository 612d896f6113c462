"""The GLDM Avro schemas (``schemas/avro``): the record name of each entity, and each schema as registered."""

from __future__ import annotations

from functools import cache
from typing import Any

import fastavro.schema

from kintsmesh.settings import REPO_ROOT

SCHEMAS_DIR = REPO_ROOT / "schemas" / "avro"
RECORD_NAMES: dict[str, str] = {
    "person": "gov.gldm.Person",
    "legal_entity": "gov.gldm.LegalEntity",
    "house": "gov.gldm.House",
    "certificate": "gov.gldm.Certificate",
    "relationship": "gov.gldm.Relationship",
    "social_insurance": "gov.gldm.SocialInsuranceContribution",
}
REJECTED_RECORD = "gov.gldm.RejectedRecord"


@cache
def schema(record_name: str) -> dict[str, Any]:
    """The schema with every named type it references defined inline where it is first used, and named
    after that (what gets registered: Avro allows one definition of a name per schema)."""
    loaded = fastavro.schema.load_schema(str(SCHEMAS_DIR / f"{record_name}.avsc"), _write_hint=False)
    expanded: dict[str, Any] = fastavro.schema.expand_schema(loaded)  # type: ignore[assignment]
    return _define_once(expanded, set())


def _define_once(schema: Any, defined: set[str]) -> Any:
    """``schema`` with a named type's second and later definitions replaced by its (full) name, in the
    order a reader meets them (fastavro's ``expand_schema`` inlines every use)."""
    if isinstance(schema, list):
        return [_define_once(branch, defined) for branch in schema]
    if not isinstance(schema, dict):
        return schema
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        if schema["name"] in defined:
            return schema["name"]
        defined.add(schema["name"])
    if kind in ("record", "error"):
        return {**schema, "fields": [{**f, "type": _define_once(f["type"], defined)} for f in schema["fields"]]}
    if kind == "array":
        return {**schema, "items": _define_once(schema["items"], defined)}
    if kind == "map":
        return {**schema, "values": _define_once(schema["values"], defined)}
    return schema
