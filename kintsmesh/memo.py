"""Values made once per object and found again by the object's identity.

For objects whose hash is dear (a mapping's rules hashed per row would cost more than applying them)
or whose equality is too loose for the purpose (two schema versions with the same subject, version and
id but not the same schema, as tests build them): ``compiled.apply`` keeps each mapping's function here,
``codec.encode`` each schema version's writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

V = TypeVar("V")


def made_once(kept: dict[int, tuple[Any, V]], obj: Any, make: Callable[[Any], V]) -> V:
    """``make(obj)``, made on the first call for ``obj`` and kept in ``kept`` by its id; the object is kept with
    its value, so its id is not reused by another object while the entry lives."""
    entry = kept.get(id(obj))
    if entry is None or entry[0] is not obj:
        entry = kept[id(obj)] = (obj, make(obj))
    return entry[1]
