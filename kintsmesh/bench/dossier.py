"""``kintsmesh bench dossier`` and ``kintsmesh bench events``.

dossier: a scratch resource library of ``--people`` persons (default 1,000,000) is
filled by SQL (``generate_series``, the library's own tables and indexes): adults,
and one child of school age for every 50 people with a mother and a father among
them, 70% registered in the household registry, 24 months of social insurance for
60% of the parents, a birth certificate each, rental filings for the mothers of
unregistered children. A dossier endpoint (``kintsmesh api serve``) runs on that
library in its own process; one client asks for ``--requests`` random children,
one request at a time over a kept-alive connection, and times each round trip
(assembly, verdict, audit insert and commit, HTTP). The library is kept between
runs (rebuilt when its size differs).

evidence: the same library and endpoint, the newborn registration's evidence for random parents
(the household registration office's token): what the library holds, and what is still to present.

services: the same library and endpoint, "services for me" of random residents (the residents'
portal's token): every rule judged on the resident's profile.

events: commit → life event published lag at ``--rate`` changes/s through the
whole stack (the merge benchmark's city), and the daily pass's duration over the
scratch library of ``--people``.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from collections.abc import Callable
from typing import Any

import psycopg
import requests

from kintsmesh.bench import write_result
from kintsmesh.bench.plot import write_lag_plot
from kintsmesh.bench.resolve import scratch_library
from kintsmesh.errors import KintsmeshError
from kintsmesh.security.tokens import issue
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.stack.migrate import migrate
from kintsmesh.watch import percentile
from monitoring.lag import wait_for_pipeline

LIBRARY = "kintsmesh_bench_people"
PORT_OFFSET = 10   # the bench's endpoint listens on api_port + 10, beside the stack's

FILL_SQL = """
CREATE TEMP TABLE people AS
SELECT i, '4403' || lpad(i::text, 13, '0') || 'X' AS ric,
       CASE WHEN i > %(adults)s THEN %(today)s::date - 1826 - (i %% 730)        -- children: five to seven
            ELSE date '1950-01-01' + (i::bigint * 7919 %% 20000)::int END AS born            -- adults: 1950 - 2004
FROM generate_series(1, %(people)s) AS i;

INSERT INTO person (person_id, ric, name, name_key, gender, birth_date, household_no, address,
                    mother_ric, father_ric, version, updated_at)
SELECT p.ric, p.ric, '居民' || p.i, 'ju min ' || p.i, CASE WHEN p.i %% 2 = 0 THEN '2' ELSE '1' END, p.born,
       CASE WHEN p.i %% 10 < 7 THEN '44' || lpad((p.i / 3)::text, 10, '0') END,
       jsonb_build_object('district', (ARRAY['福田区', '罗湖区', '南山区', '宝安区', '龙岗区'])[1 + p.i %% 5],
                          'full', (ARRAY['福田区', '罗湖区', '南山区', '宝安区', '龙岗区'])[1 + p.i %% 5] || p.i || '号'),
       CASE WHEN p.i > %(adults)s THEN '4403' || lpad((2 * (p.i - %(adults)s))::text, 13, '0') || 'X' END,
       CASE WHEN p.i > %(adults)s THEN '4403' || lpad((2 * (p.i - %(adults)s) - 1)::text, 13, '0') || 'X' END,
       1, now()
FROM people p;

INSERT INTO social_insurance (fact_id, person_ric, person_id, insured_no, month, insurance_type, version, updated_at)
SELECT p.ric || '|' || to_char(%(today)s::date - make_interval(months => m), 'YYYYMM') || '|110', p.ric, p.ric,
       'SB' || p.i, to_char(%(today)s::date - make_interval(months => m), 'YYYYMM'), '110', 1, now()
FROM people p, generate_series(1, 24) AS m
WHERE p.i <= 2 * (%(people)s - %(adults)s) AND p.i %% 5 < 3;

INSERT INTO certificate (certificate_id, certificate_type, certificate_no, holder_ric, holder_name, holder_person_id,
                         issued_date, details, version, updated_at)
SELECT 'BIRTH_MEDICAL_CERTIFICATE:Q' || p.i, 'BIRTH_MEDICAL_CERTIFICATE', 'Q' || p.i, p.ric, '居民' || p.i, p.ric,
       p.born + 3, jsonb_build_object('born_at', p.born,
                                      'mother_ric', '4403' || lpad((2 * (p.i - %(adults)s))::text, 13, '0') || 'X',
                                      'father_ric', '4403' || lpad((2 * (p.i - %(adults)s) - 1)::text, 13, '0') || 'X'),
       1, now()
FROM people p WHERE p.i > %(adults)s
UNION ALL
SELECT 'RENTAL_FILING:ZL' || p.i, 'RENTAL_FILING', 'ZL' || p.i, m.ric, '居民', m.ric, %(today)s::date - 400,
       jsonb_build_object('house_code', 'H' || p.i), 1, now()
FROM people p JOIN people m ON m.i = 2 * (p.i - %(adults)s)
WHERE p.i > %(adults)s AND p.i %% 10 >= 7
UNION ALL   -- four couples in five married: the father holds the certificate, the mother is its spouse
SELECT 'MARRIAGE:J' || p.i, 'MARRIAGE', 'J' || p.i, f.ric, '居民', f.ric, %(today)s::date - 3000 - p.i %% 1000,
       jsonb_build_object('spouse_ric', m.ric), 1, now()
FROM people p JOIN people m ON m.i = 2 * (p.i - %(adults)s) JOIN people f ON f.i = m.i - 1
WHERE p.i > %(adults)s AND p.i %% 5 < 4;

-- who supplied each value (evidence counts a department's own data only): the police the persons'
-- household numbers, health the birth certificates, housing the rental filings, civil affairs the marriages
INSERT INTO field_provenance (entity, canonical_id, fields)
SELECT 'person', person_id, jsonb_build_object('sources', jsonb_build_array(jsonb_build_object(
           'department', 'police', 'table', 'rk_jbxx', 'primary_key', person_id, 'role', 'person',
           'position', jsonb_build_array(0, 1, 1), 'committed_at', 0)),
       'fields', jsonb_build_object('name', jsonb_build_object('source', 0), 'household_no', jsonb_build_object('source', 0)))
FROM person
UNION ALL
SELECT 'certificate', certificate_id, jsonb_build_object('sources', jsonb_build_array(jsonb_build_object(
           'department', CASE certificate_type WHEN 'MARRIAGE' THEN 'civil_affairs' WHEN 'RENTAL_FILING' THEN 'housing'
                         ELSE 'health' END,
           'table', CASE certificate_type WHEN 'MARRIAGE' THEN 'hy_djxx' WHEN 'RENTAL_FILING' THEN 'zl_ba' ELSE 'cszm' END,
           'primary_key', certificate_no, 'role', 'certificate', 'position', jsonb_build_array(0, 1, 1),
           'committed_at', 0)),
       'fields', jsonb_build_object('certificate_type', jsonb_build_object('source', 0)))
FROM certificate;
"""


def ensure_library(settings: Settings, people: int) -> list[str]:
    """The scratch library of ``people`` persons (built when missing, of another size or without migration
    records; migrated when reused); its children's RICs."""
    adults = people - people // 50
    try:
        with psycopg.connect(settings.dsn(LIBRARY)) as conn:
            row = conn.execute("SELECT count(*), to_regclass('kintsmesh_schema_migrations') IS NOT NULL,"
                               " EXISTS (SELECT 1 FROM certificate WHERE certificate_type = 'MARRIAGE')"
                               " FROM person").fetchone()
            if row and row[0] == people and row[1] and row[2]:   # (a library filled before the marriages: again)
                conn.commit()
                migrate(settings, LIBRARY, RESOURCE_LIBRARY_DB)
                return _children(conn, adults)
    except psycopg.OperationalError:
        pass
    print(f"bench: filling a scratch resource library with {people:,} people ({people // 50:,} children) ...",
          flush=True)
    started = time.perf_counter()
    scratch_library(settings, LIBRARY)
    with psycopg.connect(settings.dsn(LIBRARY)) as conn:
        for statement in FILL_SQL.split(";\n\n"):   # one statement at a time: they take parameters
            conn.execute(statement, {"people": people, "adults": adults, "today": date.today()})  # type: ignore[arg-type]
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        print(f"  built in {time.perf_counter() - started:,.0f} s", flush=True)
        return _children(conn, adults)


def _children(conn: psycopg.Connection[Any], adults: int) -> list[str]:
    return [ric for (ric,) in conn.execute("SELECT ric FROM person WHERE ric > %s ORDER BY ric",
                                            (f"4403{adults:013d}X",))]


def _timed_requests(settings: Settings, people: int, client: str, paths: list[str],
                    tally: Callable[[dict[str, Any]], Any]) -> tuple[list[float], dict[str, int]]:
    """An endpoint (``kintsmesh api serve``) on the scratch library in its own process; ``client`` asks for
    the paths one at a time over a kept-alive connection. Round trips in ms, and the answers tallied."""
    port = settings.api_port + PORT_OFFSET
    server = subprocess.Popen([sys.executable, "-m", "kintsmesh.cli", "api", "serve", "--database", LIBRARY,
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"https://127.0.0.1:{port}"
    latencies: list[float] = []
    tallied: dict[str, int] = {}
    try:
        _wait_healthy(settings, base, server)
        session = requests.Session()   # as the client calls it: TLS, a bearer token of its scope
        session.verify, session.trust_env = str(settings.trusted_ca), False   # (REQUESTS_CA_BUNDLE would win)
        session.headers["Authorization"] = f"Bearer {issue(settings.secrets_dir, client)}"
        for path in paths[:200]:   # warm the pool and the caches, as a running endpoint is
            session.get(f"{base}{path}", timeout=10)
        print(f"bench: {len(paths):,} requests of {client} among {people:,} people ...", flush=True)
        for path in paths:
            started = time.perf_counter()
            response = session.get(f"{base}{path}", timeout=10)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise KintsmeshError(f"bench: {path}: HTTP {response.status_code} {response.text[:200]}")
            key = str(tally(response.json()))
            tallied[key] = tallied.get(key, 0) + 1
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:   # (what failed above is the error to see, not this)
            server.kill()
            server.wait(10)
    return latencies, dict(sorted(tallied.items()))


def _latencies(latencies: list[float], people: int) -> dict[str, Any]:
    return {"p50_ms": round(percentile(latencies, 50), 2), "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(max(latencies), 2), "people": people, "requests": len(latencies),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def run_dossier_bench(settings: Settings, people: int, count: int) -> dict[str, Any]:
    children = ensure_library(settings, people)
    rng = random.Random(7)
    paths = [f"/dossiers/school-enrolment/{rng.choice(children)}" for _ in range(count)]
    latencies, verdicts = _timed_requests(settings, people, "education-bureau", paths,
                                          lambda answer: answer["verdict"]["verdict"])
    result = {**_latencies(latencies, people), "verdicts": verdicts}
    print(f"  dossier round trip p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
          f"   (target p99 < 10 ms; token checked, every request audit-logged)   verdicts {verdicts}")
    write_result("dossier", result)
    return result


def run_evidence_bench(settings: Settings, people: int, count: int) -> dict[str, Any]:
    """``kintsmesh bench evidence``: the newborn registration's evidence for random parents of the scratch
    library's children (``GET /items/newborn_household_registration/evidence/{ric}``)."""
    children = ensure_library(settings, people)
    adults = people - len(children)
    rng = random.Random(11)
    parents = [f"4403{2 * (int(rng.choice(children)[4:17]) - adults) - rng.randint(0, 1):013d}X" for _ in range(count)]
    latencies, presentations = _timed_requests(
        settings, people, "household-registration-office",
        [f"/items/newborn_household_registration/evidence/{ric}" for ric in parents],
        lambda answer: answer["presentations"])
    result = {**_latencies(latencies, people), "item": "newborn_household_registration",
              "by_presentations": presentations}
    print(f"  evidence round trip p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
          f"   (token checked, every request audit-logged)   presentations still needed: {presentations}")
    write_result("evidence", result)
    return result


def run_services_bench(settings: Settings, people: int, count: int) -> dict[str, Any]:
    """``kintsmesh bench services``: "services for me" of random residents of the scratch library (the
    portal's token, ``GET /residents/{ric}/services``: the profile read, every rule judged, audited)."""
    from streams.events.services import services

    ensure_library(settings, people)
    rng = random.Random(13)
    paths = [f"/residents/4403{rng.randint(1, people):013d}X/services" for _ in range(count)]
    latencies, listed = _timed_requests(settings, people, "services-portal", paths,
                                        lambda answer: sum(s["status"] == "eligible" for s in answer["services"]))
    result = {**_latencies(latencies, people), "services": len(services()), "eligible_per_resident": listed}
    print(f"  services round trip p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, max {result['max_ms']} ms"
          f"   (target p99 <= 10 ms; {result['services']} rules judged, every request audit-logged)"
          f"   residents by services eligible: {listed}")
    write_result("services", result)
    return result


def _wait_healthy(settings: Settings, base: str, server: subprocess.Popen[bytes], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise KintsmeshError(f"bench: the dossier endpoint exited: {(server.stderr.read() if server.stderr else b'').decode()[-500:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=1, verify=str(settings.trusted_ca)).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise KintsmeshError(f"bench: the dossier endpoint at {base} did not become healthy")


def run_events_bench(settings: Settings, rate: float, duration_s: float, people: int) -> dict[str, Any]:
    from kintsmesh.bench.cpu import CpuWindow, format_cores
    from kintsmesh.bench.merge import SEED, bench_city
    from kintsmesh.simulate.runner import run_simulation
    from sinks.events import LifeEvents

    sim = bench_city(settings)
    print(f"bench events: {rate:,.0f} changes/s for {duration_s:.0f} s through the whole stack ...", flush=True)
    started = datetime.now(timezone.utc)
    cpu = CpuWindow(settings)
    cpu.start()
    stats = run_simulation(sim, seed=SEED, initial=None, rate=rate, duration_s=duration_s, dirty_rate=0.03,
                           truth_path=None)
    usage = cpu.stop()
    left = wait_for_pipeline(settings, 900)
    if any(left.values()):
        raise KintsmeshError(f"bench events: the pipeline did not catch up: {left}")
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        series = [(float(at), float(ms)) for at, ms in conn.execute(
            "SELECT extract(epoch FROM published_at), 1000 * extract(epoch FROM published_at)"
            " - (event->>'source_committed_at')::bigint FROM life_event"
            " WHERE detected_at >= %s AND trigger = 'CHANGE' ORDER BY published_at", (started,))]
    if not series:
        raise KintsmeshError("bench events: no change-triggered life event in the run")
    lags = [ms for _, ms in series]
    measured_rate = round(stats.changes / stats.elapsed_s, 1) if stats else rate
    stage = "events" if rate == 1000 else f"events-{rate:.0f}"   # as bench merge: the target rate is events.json
    write_lag_plot(stage, series, f"commit -> life event published at {measured_rate:,.0f} changes/s"
                   f" (p50 {percentile(lags, 50):,.0f} ms, p99 {percentile(lags, 99):,.0f} ms)", target_ms=1000)

    ensure_library(settings, people)
    with psycopg.connect(settings.dsn(LIBRARY)) as conn:
        events = LifeEvents(settings, conn)
        day = date.today() + timedelta(days=1)
        conn.execute("DELETE FROM life_event WHERE occurred_on = %s", (day,))
        conn.commit()
        passed = events.daily_pass(day)      # not published: the scratch library's people are not the city's
        events.close()
    result = {"lag_p50_ms": round(percentile(lags, 50), 1), "lag_p99_ms": round(percentile(lags, 99), 1),
              "events": len(lags), "rate_per_s": measured_rate, "daily_pass_s": passed["seconds"], "people": people,
              "daily_pass": passed, "cpu": usage, "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(f"  commit -> life event published: p50 {result['lag_p50_ms']:,.0f} ms, p99 {result['lag_p99_ms']:,.0f} ms"
          f" over {len(lags):,} events at {measured_rate:,.0f} changes/s")
    print(f"  while the simulator wrote: {format_cores(usage)}")
    print(f"  daily pass over {people:,} people: {passed['seconds']} s ({passed['people']} people crossing an age,"
          f" {passed['events']} events with their dossiers)")
    write_result(stage, result)
    return result
