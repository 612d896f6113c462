"""Evidence sharing over HTTP on the stack's library: what a parent of a newborn still has to present,
each held evidence traced to the department's record, the answer audited, other clients refused."""

import psycopg
import pytest
import requests

from kintsmesh.security.tokens import issue
from kintsmesh.settings import RESOURCE_LIBRARY_DB

pytestmark = pytest.mark.integration
ITEM = "newborn_household_registration"


def get(settings, path: str, client: str | None) -> requests.Response:
    headers = {"Authorization": f"Bearer {issue(settings.secrets_dir, client)}"} if client else {}
    return requests.get(f"{settings.api_endpoint}{path}", headers=headers, timeout=10, verify=str(settings.trusted_ca))


def test_a_newborns_parent_gets_the_library_s_evidence_with_its_source_and_the_rest_to_present(settings):
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute(
            "SELECT c.details->>'mother_ric' FROM certificate c JOIN person p"
            " ON p.ric = c.details->>'mother_ric' WHERE c.certificate_type = 'BIRTH_MEDICAL_CERTIFICATE'"
            " AND c.issued_date >= current_date - 366 AND p.household_no IS NOT NULL"
            " ORDER BY c.issued_date DESC LIMIT 1").fetchone()
        assert row, "the test city has no recent birth whose mother is in the household registry"
        (mother,) = row
        # the police's own rows linked to her golden record (by RIC, or matched when a row's RIC was unusable):
        # the household number the library holds must be one of theirs
        police_rows = {(t, k): h for t, k, h in conn.execute(
            "SELECT c.source_table, c.primary_key, c.record->>'household_no' FROM contribution c JOIN person p"
            " ON c.entity = 'person' AND c.canonical_id = p.person_id WHERE p.ric = %s AND c.department = 'police'"
            " AND NOT c.retracted", (mother,))}
        police_households = set(police_rows.values())
    response = get(settings, f"/items/{ITEM}/evidence/{mother}", "household-registration-office")
    assert response.status_code == 200, response.text
    result = response.json()
    held = {h["evidence"]: h for h in result["held"]}
    birth = held["birth_medical_certificate"]
    assert birth["department"] == "health" and birth["record"]["table"] == "cszm"
    assert birth["record"]["entity"] == "certificate" and birth["date"]
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:   # the certificate names her as the mother
        assert conn.execute("SELECT details->>'mother_ric' FROM certificate WHERE certificate_id = %s",
                            (birth["record"]["id"],)).fetchone() == (mother,)
    if "household_register" in held:
        record = held["household_register"]["record"]
        assert held["household_register"]["value"] in police_households
        assert police_rows[(record["table"], record["primary_key"])] == held["household_register"]["value"]
    else:
        assert not police_households - {None}
    assert [m["evidence"] for m in result["to_present"]][0] == "applicant_id_card"
    assert result["presentations"] == len(result["to_present"]) <= 3 < result["presentations_before"]

    accesses = get(settings, f"/audit/{mother}", "audit-office").json()["accesses"]
    mine = [a for a in accesses if a["resource"] == f"evidence:{ITEM}" and a["requester"] == "household-registration-office"]
    assert mine and mine[0]["fields"] == [h["evidence"] for h in result["held"]]
    assert mine[0]["outcome"] == f"{result['presentations']} to present"


def test_evidence_is_refused_to_clients_without_the_item_s_scope_and_for_unknown_items(settings):
    ric = "440305202011036718"
    assert get(settings, f"/items/{ITEM}/evidence/{ric}", None).status_code == 401
    assert get(settings, f"/items/{ITEM}/evidence/{ric}", "education-bureau").status_code == 403
    assert get(settings, f"/items/marriage_registration/evidence/{ric}", "household-registration-office"
               ).status_code == 403
    assert get(settings, f"/items/school_enrolment/evidence/{ric}", "education-bureau").status_code == 200
    unknown = get(settings, "/items/passport/evidence/" + ric, "household-registration-office")
    assert unknown.status_code == 403   # its scope would be evidence:passport: no client holds it
    outcomes = [(a["resource"], a["outcome"]) for a in get(settings, f"/audit/{ric}", "audit-office").json()["accesses"]]
    assert (f"evidence:{ITEM}", "refused: the token's scopes do not allow this") in outcomes, outcomes
