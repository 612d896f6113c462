"""The person ids a set-based insert writes at once (``linked_at_insert``): the same precedence as ``link_people``."""

from sinks.library.links import linked_at_insert
from sinks.library.tables import PERSON_ID_COLUMNS


def test_every_person_column_of_an_entity_is_linked_at_insert():
    for entity, columns in PERSON_ID_COLUMNS.items():
        assert set(linked_at_insert(entity, "r")) == set(columns), entity
    assert linked_at_insert("house", "r") == {}


def test_an_insurance_fact_takes_its_insured_persons_row_before_a_ric():
    expr = linked_at_insert("social_insurance", "r")["person_id"]
    assert expr.startswith("COALESCE(")
    insured, ric = expr.index("c.primary_key = r.insured_no"), expr.index("p.ric = r.person_ric")
    assert insured < ric   # link_people runs the RIC link first and the insured number's over it


def test_a_relationship_links_its_object_only_when_the_object_is_a_person():
    exprs = linked_at_insert("relationship", "r")
    assert exprs["object_person_id"].startswith("CASE WHEN r.object_kind = 'PERSON'")
    assert "p.ric = r.subject_ric" in exprs["subject_person_id"] and "CASE" not in exprs["subject_person_id"]

