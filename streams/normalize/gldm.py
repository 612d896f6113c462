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
    """The schema with every named type it references expanded inline (what gets registered)."""
    loaded = fastavro.schema.load_schema(str(SCHEMAS_DIR / f"{record_name}.avsc"), _write_hint=False)
    return fastavro.schema.expand_schema(loaded)  # type: ignore[return-value]
