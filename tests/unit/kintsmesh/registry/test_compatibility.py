import copy

import pytest

from kintsmesh.registry.compatibility import backward_incompatibilities

PERSON_V1 = {
    "type": "record", "name": "Person", "namespace": "gov.gldm",
    "fields": [
        {"name": "ric", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "birth", "type": {"type": "int", "logicalType": "date"}},
        {"name": "gender", "type": {"type": "enum", "name": "Gender", "symbols": ["UNKNOWN", "MALE", "FEMALE"]}},
        {"name": "aliases", "type": {"type": "array", "items": "string"}, "default": []},
        {"name": "parent", "type": ["null", "Person"], "default": None},
    ],
}


def evolve(change):
    schema = copy.deepcopy(PERSON_V1)
    change(schema)
    return schema


def test_identical_schema_is_compatible():
    assert backward_incompatibilities(PERSON_V1, PERSON_V1) == []


@pytest.mark.parametrize("change", [
    lambda s: s["fields"].append({"name": "ethnicity", "type": ["null", "string"], "default": None}),
    lambda s: s["fields"].pop(1),                                       # dropping a field: old data just has more
    lambda s: s["fields"][2].update(type="long"),                       # int -> long promotion
    lambda s: s["fields"][0].update(type=["null", "string"]),           # widening into a union
    lambda s: s["fields"][3]["type"]["symbols"].append("OTHER"),        # new enum symbol
    lambda s: s["fields"][1].update(name="full_name", aliases=["name"]),  # rename through an alias
])
def test_backward_compatible_changes(change):
    assert backward_incompatibilities(evolve(change), PERSON_V1) == []


@pytest.mark.parametrize("change, reason", [
    (lambda s: s["fields"].append({"name": "ethnicity", "type": "string"}), "new field without a default"),
    (lambda s: s["fields"][1].update(type="int"), "type changed from string to int"),
    (lambda s: s["fields"][2].update(type="string"), "type changed from int to string"),
    (lambda s: s["fields"][3]["type"].update(symbols=["MALE", "FEMALE"]), "enum symbols removed"),
    (lambda s: s["fields"][4]["type"].update(items="int"), "type changed from string to int"),
    (lambda s: (s.update(name="Human"), s["fields"][5].update(type=["null", "Human"])), "record renamed"),
])
def test_backward_incompatible_changes_are_explained(change, reason):
    problems = backward_incompatibilities(evolve(change), PERSON_V1)
    assert any(reason in p for p in problems), problems


def test_narrowing_a_union_is_refused():
    old = evolve(lambda s: s["fields"][0].update(type=["null", "string"]))
    problems = backward_incompatibilities(PERSON_V1, old)
    assert problems and "null" in problems[0]
