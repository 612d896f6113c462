"""Services for me on the stack: a resident's services over HTTP (the portal, the resident's own token,
nobody else's), and a birth that makes its mother eligible told on events.service.eligible."""

import time
from datetime import datetime

import psycopg
import pytest
import requests
from confluent_kafka import Consumer

from kintsmesh import kafka
from kintsmesh.security.tokens import issue
from kintsmesh.settings import CITY_TZ, RESOURCE_LIBRARY_DB
from sinks.library.residents import gained_services
from tests.integration.test_capture import insert, unique
from tests.integration.test_life_events import published_since, topic_ends

pytestmark = pytest.mark.integration
TOPIC = "events.service.eligible"


def get(settings, path: str, token: str) -> requests.Response:
    return requests.get(f"{settings.api_endpoint}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10,
                        verify=str(settings.trusted_ca))


def test_a_residents_services_are_read_by_the_portal_and_the_resident_and_by_nobody_else(settings):
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        ric, other = (r for (r,) in conn.execute(
            "SELECT ric FROM person WHERE birth_date <= current_date - interval '61 years' AND household_no IS NOT NULL"
            " AND death_date IS NULL AND ric IS NOT NULL ORDER BY ric LIMIT 2"))
    portal = get(settings, f"/residents/{ric}/services", issue(settings.secrets_dir, "services-portal"))
    assert portal.status_code == 200, portal.text
    listed = {s["service"]: s for s in portal.json()["services"]}
    assert listed["senior_card"]["status"] == "eligible" and listed["senior_card"]["department"] == "civil_affairs"
    assert any(r.startswith("aged ") for r in listed["senior_card"]["reasons"])
    assert listed["senior_card"]["missing_evidence"] == ["a recent one-inch photo"]
    assert portal.json()["rules"] >= 20
    own = get(settings, f"/residents/{ric}/services", issue(settings.secrets_dir, citizen_ric=ric))
    assert own.status_code == 200 and own.json()["services"] == portal.json()["services"]
    assert get(settings, f"/residents/{other}/services", issue(settings.secrets_dir, citizen_ric=ric)).status_code == 403
    assert get(settings, f"/residents/{ric}/services", issue(settings.secrets_dir, "education-bureau")).status_code == 403
    accesses = get(settings, f"/audit/{ric}", issue(settings.secrets_dir, "audit-office")).json()["accesses"]
    read = [a for a in accesses if a["resource"] == "services_for_me" and a["requester"] == "services-portal"]
    assert read and "senior_card" in read[0]["fields"]


def test_a_birth_makes_the_mother_eligible_and_the_topic_says_so(settings):
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute(
            "SELECT p.person_id, p.ric, p.name FROM person p WHERE p.gender = '2' AND p.birth_date BETWEEN current_date"
            " - interval '40 years' AND current_date - interval '22 years' AND p.ric IS NOT NULL AND p.death_date IS NULL"
            " AND NOT EXISTS (SELECT FROM person c WHERE c.mother_ric = p.ric AND c.birth_date > current_date - interval"
            " '8 years') AND NOT EXISTS (SELECT FROM service_eligibility s WHERE s.person_id = p.person_id"
            " AND s.service = 'postnatal_care') ORDER BY p.ric LIMIT 1").fetchone()
        assert row, "no woman of 22-40 without a young child in the library"
        person_id, mother, name = row
        # her baseline, as the life-event stage keeps it for everyone its changes touched (a first evaluation
        # tells nothing): what follows is a change to an evaluated resident
        with conn.transaction():
            gained_services(conn, {person_id}, datetime.now(CITY_TZ).date())
    consumer = Consumer({**kafka.client_config(settings), "group.id": "t-service-ends", "log_level": 0})
    start = topic_ends(consumer, [TOPIC])
    consumer.close()
    now = datetime.now().astimezone()
    number = unique("S", 12)
    with psycopg.connect(settings.dsn("health")) as conn:
        insert(conn, "cszm", {"cszmbh": number, "xsexm": "", "xsexb": "女", "cssj": now, "qfrq": now.replace(tzinfo=None),
                              "jsjg": "深圳市妇幼保健院", "mqxm": name, "mqsfzh": mother})
        conn.commit()
    deadline, found = time.monotonic() + 180, []
    while not found and time.monotonic() < deadline:
        time.sleep(3)
        found = [e for e in published_since(settings, start, [TOPIC])
                 if e["subject_code"] == mother and e["attributes"]["service"] == "postnatal_care"]
    assert found, f"no SERVICE_ELIGIBLE postnatal_care for {mother} on {TOPIC} within 180 s"
    event = found[0]
    assert event["event_type"] == "SERVICE_ELIGIBLE" and event["trigger"] == "CHANGE"
    assert "a child aged 0 (<= 0)" in event["attributes"]["reasons"]
    assert {(e["department"], e["table"]) for e in event["evidence"]} == {("health", "cszm")}
