"""Every listener authenticates and every principal has least privilege, tried from outside as an attacker
would: no credentials, wrong credentials, another component's role, another client's scope."""

from __future__ import annotations

import os
import stat
from datetime import datetime

import psycopg
import pytest
import requests
from psycopg.conninfo import make_conninfo

from connect.client import ConnectClient
from connect.connectors import connector_name
from kintsmesh.security import audit
from kintsmesh.security.tokens import issue
from kintsmesh.settings import CLUSTERS, RESOURCE_LIBRARY_DB

pytestmark = pytest.mark.integration


def api(settings, path: str, token: str | None = None, **params) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(f"{settings.api_endpoint}{path}", params=params, headers=headers, timeout=10,
                        verify=str(settings.trusted_ca))


# ---------------------------------------------------------------- PostgreSQL


def test_postgres_refuses_clients_without_the_password_or_without_tls(settings):
    base = dict(host=settings.pg_host, port=settings.pg_port, dbname=RESOURCE_LIBRARY_DB, user=settings.pg_user,
                connect_timeout=5)
    with pytest.raises(psycopg.OperationalError):   # no password: no trust line anywhere
        psycopg.connect(make_conninfo(**base, sslmode="require"))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(make_conninfo(**base, password="kintsmesh", sslmode="require"))   # the old default
    with pytest.raises(psycopg.OperationalError):   # the right password, in clear text over TCP
        psycopg.connect(make_conninfo(**base, password=settings.role_password("admin"), sslmode="disable"))
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:   # verify-full against the local CA
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_the_socket_is_private_and_asks_for_a_password_too(settings, cluster):
    socket_dir = settings.stack_dir / ("postgres" if cluster == "library" else cluster)
    sockets = list(socket_dir.glob(".s.PGSQL.*"))
    assert sockets and all(stat.S_IMODE(s.stat().st_mode) & 0o077 == 0 for s in sockets), sockets
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(make_conninfo(host=str(socket_dir), port=settings.pg_endpoint(cluster)[1], dbname="postgres",
                                      user=settings.pg_user, connect_timeout=5))


def test_no_component_role_is_superuser_and_each_does_only_its_part(settings):
    for cluster in CLUSTERS:
        with psycopg.connect(settings.dsn("postgres", role="admin", cluster=cluster)) as conn:
            roles = dict(conn.execute("SELECT rolname, rolsuper FROM pg_roles WHERE rolname LIKE 'kintsmesh\\_%'").fetchall())
        assert roles and not any(roles.values()), (cluster, roles)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB, role="api")) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM person").fetchone() == (True,)
        for statement in ("UPDATE access_audit SET purpose = 'x'", "DELETE FROM access_audit",
                          "INSERT INTO person (person_id) VALUES ('forged')", "SELECT * FROM outbox LIMIT 1"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB, role="merge")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM access_audit LIMIT 1")
    with pytest.raises(psycopg.OperationalError):   # a department's connector reaches no other department
        psycopg.connect(settings.dsn("health", role="capture_police"))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB, role="capture_police"))


def test_only_the_department_databases_cluster_is_decoded(settings):
    # Debezium's slots read the departments' WAL; the library's writes are in another cluster's WAL
    for cluster, level, slots in (("departments", "logical", True), ("library", "replica", False)):
        with psycopg.connect(settings.dsn("postgres", role="admin", cluster=cluster)) as conn:
            assert conn.execute("SHOW wal_level").fetchone() == (level,)
            assert conn.execute("SELECT count(*) > 0 FROM pg_replication_slots").fetchone() == (slots,)


def test_each_stack_process_runs_as_its_own_role(settings):
    bureau = issue(settings.secrets_dir, "education-bureau")
    assert api(settings, "/dossiers/school-enrolment/110101190001010010", token=bureau).status_code == 200
    users = set()
    for cluster in CLUSTERS:
        with psycopg.connect(settings.dsn("postgres", role="admin", cluster=cluster)) as conn:
            users |= {u for (u,) in conn.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE usename IS NOT NULL")}
    assert {"kintsmesh_merge", "kintsmesh_resolve", "kintsmesh_events", "kintsmesh_api",
            "kintsmesh_capture_police"} <= users, users


# ---------------------------------------------------------------- Connect


def test_connect_rest_refuses_callers_without_credentials(settings):
    for auth in (None, ("admin", "guess"), ("anyone", settings.connect_credentials[1])):
        response = requests.get(f"{settings.connect_endpoint}/connectors/{connector_name('police')}/config",
                                auth=auth, timeout=10)
        assert response.status_code == 401, (auth and auth[0], response.status_code)
    assert requests.put(f"{settings.connect_endpoint}/connectors/kintsmesh-forged/config", json={}, timeout=10
                        ).status_code == 401


def test_a_connector_config_holds_no_password(settings):
    config = ConnectClient.of(settings).config(connector_name("police"))
    password = settings.role_password("capture_police")
    assert password not in str(config) and config["database.password"].startswith("${file:")


# ---------------------------------------------------------------- API


def test_the_api_refuses_without_a_valid_token_and_audits_the_refusal(settings):
    ric = "440305202011036718"
    assert api(settings, f"/dossiers/school-enrolment/{ric}").status_code == 401
    assert api(settings, f"/dossiers/school-enrolment/{ric}", token="not.a.token").status_code == 401
    assert api(settings, f"/audit/{ric}").status_code == 401
    for path in ("/docs", "/openapi.json", "/redoc"):
        assert api(settings, path).status_code == 404, path
    auditor = issue(settings.secrets_dir, "audit-office")
    assert api(settings, f"/dossiers/school-enrolment/{ric}", token=auditor).status_code == 403   # not its scope
    accesses = api(settings, f"/audit/{ric}", token=auditor).json()["accesses"]
    outcomes = [(a["requester"], a["outcome"]) for a in accesses]
    assert ("audit-office", "refused: the token's scopes do not allow this") in outcomes, outcomes
    assert any(r.startswith("unauthenticated") and o.startswith("refused: a bearer token") for r, o in outcomes)


def test_an_adult_or_unknown_ric_gets_the_same_answer_as_a_child_without_data(settings):
    bureau = issue(settings.secrets_dir, "education-bureau")
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        (adult,) = conn.execute("SELECT ric FROM person WHERE birth_date < '1990-01-01' AND ric IS NOT NULL"
                                " LIMIT 1").fetchone()
    known, unknown = (api(settings, f"/dossiers/school-enrolment/{r}", token=bureau) for r in (adult, "110101190001010010"))
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content and known.json()["verdict"]["verdict"] == "NO_DATA"


def test_a_citizen_sees_who_looked_at_their_data_and_nobody_elses(settings):
    ric, other = "440305202011036718", "110101190001010010"
    citizen = issue(settings.secrets_dir, citizen_ric=ric)
    assert api(settings, f"/audit/{ric}", token=citizen).status_code == 200
    assert api(settings, f"/audit/{other}", token=citizen).status_code == 403


# ---------------------------------------------------------------- audit


def test_the_audit_refuses_changes_and_its_chain_reveals_tampering(settings):
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        assert audit.verify(conn).intact
        with pytest.raises(psycopg.errors.InsufficientPrivilege):   # even the superuser, through the trigger
            conn.execute("UPDATE access_audit SET purpose = 'nothing to see' WHERE chain_seq = 1")
        conn.rollback()
        # a superuser who also disables the trigger: the chain shows it (rolled back: the stack's audit stays whole)
        conn.execute("ALTER TABLE access_audit DISABLE TRIGGER access_audit_no_change")
        conn.execute("UPDATE access_audit SET purpose = 'nothing to see' WHERE chain_seq = 1")
        report = audit.verify(conn)
        assert not report.intact and report.findings[0]["chain_seq"] == 1 and report.findings[0]["altered"]
        conn.rollback()
        conn.execute("ALTER TABLE access_audit DISABLE TRIGGER access_audit_no_change")
        conn.execute("DELETE FROM access_audit WHERE chain_seq = 2")
        report = audit.verify(conn)
        assert not report.intact and report.findings[0]["unlinked"] and report.findings[0]["gap"]
        conn.rollback()
        assert audit.verify(conn).intact


def test_secrets_are_private_to_their_owner(settings):
    folder = settings.secrets_dir
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in folder.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0 or path.suffix == ".pem", path
        assert path.stat().st_uid == os.getuid()


# ---------------------------------------------------------------- Kafka


def kafka_error(settings, principal: str | None, *, read: str | None = None, write: str | None = None,
                group: str = "kintsmesh-test-reader", **override) -> str | None:
    """The error code a client of ``principal`` meets reading or writing a topic (None: it worked)."""
    from confluent_kafka import Consumer, KafkaException, Producer

    from kintsmesh import kafka

    config = {**kafka.client_config(settings), **(kafka.security_config(settings, principal) if principal else {}),
              **override}
    if read:
        consumer = Consumer({**config, "group.id": group, "enable.auto.commit": False})
        try:
            metadata = consumer.list_topics(read, timeout=10).topics[read]
            if metadata.error is not None:
                return metadata.error.name()
            consumer.subscribe([read])   # joins the group: the group's ACL is checked too
            for _ in range(10):
                message = consumer.poll(1.0)
                if message is not None and message.error():
                    return message.error().name()
                if message is not None:
                    return None
            return None
        except KafkaException as exc:
            return exc.args[0].name()
        finally:
            consumer.close()
    errors: list[str] = []
    producer = Producer({**config, "message.timeout.ms": 8000})
    producer.produce(write, b'{"forged": true}', on_delivery=lambda err, _: err and errors.append(err.name()))
    producer.flush(15)
    return errors[0] if errors else None


def test_kafka_refuses_clients_without_tls_or_with_a_wrong_password(settings):
    from confluent_kafka.admin import AdminClient

    from kintsmesh import kafka

    plain = AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "security.protocol": "PLAINTEXT",
                         "socket.timeout.ms": 3000, "log_level": 0})
    with pytest.raises(Exception):
        plain.list_topics(timeout=5)
    wrong = AdminClient({**kafka.client_config(settings), "sasl.password": "guess", "log_level": 0})
    with pytest.raises(Exception):
        wrong.list_topics(timeout=5)


def test_a_subscriber_reads_only_its_own_topic(settings):
    from streams.events.subscriptions import subscriptions

    names = list(subscriptions())
    me, other = names[0], names[1]
    principal = f"sub-{me}"
    group = f"sub.{me}.reader"   # its own group prefix
    assert kafka_error(settings, principal, read=f"sub.{me}.life", group=group) is None
    assert kafka_error(settings, principal, read=f"sub.{me}.life", group=f"sub.{other}.reader") \
        == "GROUP_AUTHORIZATION_FAILED"
    for topic in (f"sub.{other}.life", "raw.police.public.rk_jbxx", "gldm.person.changes", "gldm.person.candidates",
                  "dlq.police", "dlq.merge", "events.life.death_registered", "_kintsmesh_connect_configs"):
        assert kafka_error(settings, principal, read=topic, group=group) == "TOPIC_AUTHORIZATION_FAILED", topic


def test_no_component_can_forge_another_ones_topic(settings):
    # a department's connector writes only its own raw topics; a stage only its outputs
    assert kafka_error(settings, "capture-police", write="raw.health.public.cs_yxzm") == "TOPIC_AUTHORIZATION_FAILED"
    assert kafka_error(settings, "normalize", write="gldm.person.changes") == "TOPIC_AUTHORIZATION_FAILED"
    assert kafka_error(settings, "events", write="raw.police.public.rk_jbxx") == "TOPIC_AUTHORIZATION_FAILED"
    assert kafka_error(settings, "monitor", write="dlq.police") == "TOPIC_AUTHORIZATION_FAILED"


def test_topics_are_not_created_by_writing_to_them(settings):
    assert kafka_error(settings, None, write=f"made.up.{os.getpid()}") in ("UNKNOWN_TOPIC_OR_PART", "_MSG_TIMED_OUT")


# ---------------------------------------------------------------- schema registry


def test_the_registry_needs_a_principal_and_only_producers_change_it(settings):
    url, ca = settings.registry_endpoint, str(settings.trusted_ca)
    assert url.startswith("https://")
    assert requests.get(f"{url}/subjects", timeout=10, verify=ca).status_code == 401
    assert requests.get(f"{url}/subjects", timeout=10, verify=ca, auth=("admin", "guess")).status_code == 401
    subscriber = ("sub-education_bureau", settings.kafka_password("sub-education_bureau"))
    assert requests.get(f"{url}/subjects", timeout=10, verify=ca, auth=subscriber).status_code == 200   # reads
    forbidden = [requests.put(f"{url}/config", json={"compatibility": "NONE"}, timeout=10, verify=ca, auth=subscriber),
                 requests.post(f"{url}/subjects/gldm.person.changes-value/versions", timeout=10, verify=ca,
                               auth=subscriber, json={"schema": '"string"'}),
                 requests.delete(f"{url}/config/dlq-value", timeout=10, verify=ca, auth=subscriber)]
    assert [r.status_code for r in forbidden] == [403, 403, 403]
    assert all(r.json()["error_code"] == 40301 for r in forbidden)
    level = requests.get(f"{url}/config", timeout=10, verify=ca, auth=subscriber).json()["compatibilityLevel"]
    assert level == "BACKWARD"


# ---------------------------------------------------------------- subscribers' allowance


def test_a_subscriber_gets_only_its_allowance_in_key_headers_and_value(settings):
    import re
    import time
    from datetime import timedelta

    from confluent_kafka import Consumer, TopicPartition

    from kintsmesh import kafka
    from kintsmesh.settings import CITY_TZ
    from sinks.events import LifeEvents
    from sinks.subscriptions import SubscriptionSink
    from streams.events.subscriptions import Subscription

    name = f"test_minimal_{int(time.time())}"
    narrow = Subscription(name=name, description="test", events=("BIRTH_REGISTERED", "DEATH_REGISTERED",
                                                                   "RESIDENCE_CHANGED", "SENIOR_AGE_REACHED"),
                          fields=("event_id", "event_type", "occurred_on", "attributes"), attributes=("district",),
                          backfill_from=datetime.now(CITY_TZ).date() - timedelta(days=60))
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        rics = {r for (r,) in conn.execute("SELECT ric FROM person WHERE ric IS NOT NULL")}
        events = LifeEvents(settings, conn)
        sink = SubscriptionSink(settings, conn, events.producer, events.registry, {name: narrow})
        sink.prepare()
        sent = sink.deliver()[name]
        events.close()
        conn.execute("DELETE FROM subscription WHERE subscriber = %s", (name,))
        conn.commit()
    assert sent > 0, "no event to deliver: the life-event tests before this one publish some"
    consumer = Consumer({**kafka.client_config(settings), "group.id": "t-minimal", "enable.auto.commit": False})
    messages = []
    try:
        consumer.assign([TopicPartition(narrow.topic, p, 0) for p in range(settings.kafka_partitions)])
        deadline = time.monotonic() + 60
        while len(messages) < sent and time.monotonic() < deadline:
            messages += [m for m in consumer.consume(500, timeout=1.0) if not m.error()]
    finally:
        consumer.close()
    assert len(messages) == sent
    digits = re.compile(rb"\d{17}[\dX]")
    for message in messages:
        raw = (message.key() or b"") + (message.value() or b"") + b"".join(v for _, v in message.headers() or [])
        assert not ({m.decode() for m in digits.findall(raw)} & rics), "a RIC reached a subscriber not allowed it"
        assert [k for k, _ in message.headers() or []] == ["seq"]
        assert not message.headers()[0][1].isdigit()   # sealed: no event counts to read
        assert re.fullmatch(rb"[0-9a-f]{32}", message.key())   # the subscriber's pseudonym, not a RIC


def test_an_operators_read_of_personal_data_is_audited_with_the_os_user_and_purpose(settings, capsys):
    import getpass

    from kintsmesh.cli import main

    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        (person,) = conn.execute("SELECT person_id FROM person LIMIT 1").fetchone()
    with pytest.raises(SystemExit):
        main(["explain", person])   # no purpose, no read
    purpose = f"test: a resident's request {os.getpid()}"
    assert main(["explain", person, "--purpose", purpose]) == 0
    assert main(["dlq", "show", "police", "-n", "1"]) == 2   # whole rejected rows: refused without a purpose
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        rows = conn.execute("SELECT requester, channel, resource FROM access_audit WHERE subject_ric = %s"
                            " AND purpose = %s", (person.upper(), purpose)).fetchall()
    assert rows == [(f"os:{getpass.getuser()}", "cli", "golden_record_explained")]


def test_setup_reapplies_roles_acls_and_topics_idempotently(settings):
    from kintsmesh.cli import main

    assert main(["setup"]) == 0   # what docker-compose's setup service runs: on a running stack it changes nothing
    assert kafka_error(settings, "capture-police", write="raw.health.public.cs_yxzm") == "TOPIC_AUTHORIZATION_FAILED"
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB, role="api")) as conn:
        assert conn.execute("SELECT count(*) >= 0 FROM person").fetchone() == (True,)
