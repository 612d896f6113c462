from kintsmesh.security.postgres import roles
from kintsmesh.settings import DEPARTMENTS, RESOURCE_LIBRARY_DB
from kintsmesh.stack.workers import WORKERS


def test_each_department_connector_has_its_own_role_reaching_only_its_database():
    capture = {r.login: r for r in roles() if r.name.startswith("capture_")}
    assert set(capture) == {f"kintsmesh_capture_{d}" for d in DEPARTMENTS}
    for department in DEPARTMENTS:
        role = capture[f"kintsmesh_capture_{department}"]
        assert role.replication and {g.database for g in role.grants} == {department}
        assert {p for g in role.grants for p in g.privileges} == {"SELECT", "UPDATE"}   # UPDATE: the heartbeat only
        assert [g.table for g in role.grants if "UPDATE" in g.privileges] == ["kintsmesh_heartbeat"]


def test_the_audit_is_append_only_for_every_role_and_written_only_by_the_api():
    audit = [(r.name, g.privileges) for r in roles() for g in r.grants if g.table == "access_audit"]
    assert audit == [("api", ("SELECT", "INSERT"))]


def test_the_api_reads_golden_records_and_writes_nothing_else():
    api = next(r for r in roles() if r.name == "api")
    writes = {g.table for g in api.grants if set(g.privileges) - {"SELECT"}}
    assert writes == {"access_audit"} and {g.database for g in api.grants} == {RESOURCE_LIBRARY_DB}


def test_every_stack_process_that_reaches_postgres_has_a_declared_role():
    declared = {r.name for r in roles()}
    for spec in WORKERS:
        assert spec.pg_role in ("none", "admin") or spec.pg_role in declared, spec
    # only the supervisor, which checks every component's health, is the stack's own administrator
    assert [s.name for s in WORKERS if s.pg_role == "admin"] == ["supervisor"]
    assert next(s for s in WORKERS if s.name == "normalize").pg_role == "none"
