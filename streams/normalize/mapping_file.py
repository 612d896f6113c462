"""The shape of a mapping file (``streams/normalize/mappings/<dept>.<table>.yaml``), checked when it loads.

Unknown keys and wrong types are refused, each error naming the file and the key's path, so a misspelt
``requierd:`` or a ``key: rkbh`` that should be a list never loads as something else. What the keys
mean is ``streams.normalize.mapping``'s business; this module only says what may be written.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError, model_validator

Entity = Literal["person", "legal_entity", "house", "certificate", "relationship", "social_insurance"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class FieldSpec(_Strict):
    """One output field: a source column through a standardizer, a constant, or a map of columns."""
    source: StrictStr | None = Field(None, alias="from")
    standardizer: StrictStr | None = Field(None, alias="as")
    codes: StrictStr | None = None
    required: StrictBool = False
    when: dict[StrictStr, Any] | None = None
    const: Any = None
    map: dict[StrictStr, StrictStr] | None = None
    # domain checks, beside the standardizer's own (defaults per standardizer: mapping.DEFAULT_LIMITS)
    max_length: StrictInt | None = Field(None, gt=0)      # characters of the raw value, checked before anything
    minimum: date | float | None = Field(None, alias="min")   # the standardized value's range: numbers or dates
    maximum: date | float | None = Field(None, alias="max")
    invisible: Literal["strip", "reject"] = "strip"       # control, format (bidi, zero-width) characters
    # a reference that must resolve: the value names a person source row of a mapping that ``identifies:`` this
    # (an insurance month's insured number); while no accepted row does, the record is held, not merged alone
    resolves: StrictStr | None = None

    @model_validator(mode="after")
    def one_kind(self) -> FieldSpec:
        kinds = [k for k, present in (("from", self.source is not None), ("const", "const" in self.model_fields_set),
                                      ("map", self.map is not None)) if present]
        if len(kinds) != 1:
            raise ValueError(f"a field takes exactly one of from / const / map, not {kinds or 'none'}")
        return self


class SourceSpec(_Strict):
    department: StrictStr
    table: StrictStr
    key: list[StrictStr] = Field(min_length=1)


class IdentifierSpec(_Strict):
    """A person identifier other than the RIC that a source declares (an insured number, a passport, the
    department's own person number): the column it is in, its type and issuer (the pair says which values
    are comparable), and whether one value names one person (a phone number a family shares does not)."""
    source: StrictStr = Field(alias="from")
    type: StrictStr = Field(pattern=r"^[a-z][a-z0-9_]*$")
    issuer: StrictStr = Field(min_length=1)
    unique: StrictBool


class OutputSpec(_Strict):
    entity: Entity
    fields: dict[StrictStr, FieldSpec] = Field(min_length=1)
    role: StrictStr | None = None
    key: StrictStr | None = None
    when: StrictStr | None = None
    one_per_person: StrictBool = False
    identifies: StrictStr | None = None
    identifiers: list[IdentifierSpec] = []


class MappingFile(_Strict):
    source: SourceSpec
    outputs: list[OutputSpec] = Field(min_length=1)


def parse(path: Path, raw: Any) -> MappingFile:
    """``raw`` (the file's YAML) as a ``MappingFile``; ``ValueError`` naming the file and every bad key."""
    try:
        return MappingFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in error['loc']) or '(top)'}: {error['msg']}"
                             for error in exc.errors(include_url=False))
        raise ValueError(f"{path.name}: {problems}") from None
