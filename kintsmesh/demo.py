"""``make demo``'s live part: department activity flowing into change events, GLDM candidates and golden records."""

from __future__ import annotations

import argparse
import json
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import requests

from kintsmesh import kafka
from kintsmesh.settings import CITY_TZ, DEPARTMENTS, Settings
from kintsmesh.simulate.events import LiveStats
from kintsmesh.simulate.runner import run_simulation
from kintsmesh.watch import RawTopicWatcher, percentile, wait_for_capture_to_settle
from monitoring.lag import wait_for_group, wait_for_pipeline, wait_for_zero


def normalize_summary(settings: Settings) -> None:
    """Per department: raw events normalized, GLDM candidates, retractions, DLQ records (from the worker's metrics)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    from connect.connectors import raw_topics
    from kintsmesh.topics import NORMALIZE_GROUP

    behind = wait_for_group(settings, NORMALIZE_GROUP, raw_topics(settings), timeout_s=600,
                            report=lambda n: print(f"  normalize worker catching up: {n:,} raw events to go", flush=True))
    text = requests.get(f"http://127.0.0.1:{settings.normalize_metrics_port}/metrics", timeout=5).text
    table: dict[str, dict[str, float]] = {d: {} for d in DEPARTMENTS}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total") and "department" in sample.labels:
                column = sample.name.removeprefix("kintsmesh_normalize_").removesuffix("_total")
                row = table.setdefault(sample.labels["department"], {})
                row[column] = row.get(column, 0) + sample.value
    print(f"normalize (raw -> GLDM){' (still ' + format(behind, ',') + ' behind)' if behind else ''}:")
    print(f"  {'department':<14}{'raw events':>12}{'candidates':>12}{'retractions':>13}{'DLQ':>8}")
    for department, row in table.items():
        print(f"  {department:<14}{row.get('events_in', 0):>12,.0f}{row.get('candidates_out', 0):>12,.0f}"
              f"{row.get('retractions', 0):>13,.0f}{row.get('rejected', 0):>8,.0f}")


LIBRARY_COUNTS = (
    "SELECT (SELECT count(*) FROM person), (SELECT count(*) FROM legal_entity), (SELECT count(*) FROM house),"
    " (SELECT count(*) FROM certificate), (SELECT count(*) FROM relationship), (SELECT count(*) FROM social_insurance),"
    " (SELECT count(*) FROM contribution), (SELECT count(*) FROM review_queue WHERE status = 'open')")


def library_counts(settings: Settings) -> str:
    import psycopg

    from kintsmesh.settings import RESOURCE_LIBRARY_DB

    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute(LIBRARY_COUNTS).fetchone()
    assert row is not None
    persons, firms, houses, certificates, relationships, insurance, links, review = row
    return (f"persons={persons:,} legal_entities={firms:,} houses={houses:,} certificates={certificates:,} "
            f"relationships={relationships:,} insurance_months={insurance:,} | source links={links:,} review={review:,}")


def library_summary(settings: Settings, since: float) -> None:
    """Golden records, how their sources were linked, and commit -> golden-visible lag of the live window."""
    import psycopg

    from kintsmesh.settings import RESOURCE_LIBRARY_DB
    from monitoring.lag import wait_for_merge
    from sinks.library.review import sync_lags_ms

    behind = wait_for_merge(settings, timeout_s=600,
                            report=lambda n: print(f"  merge worker catching up: {n:,} candidates to go", flush=True))
    print(f"resource library (golden records){' (still ' + format(behind, ',') + ' behind)' if behind else ''}:")
    print(f"  {library_counts(settings)}")
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        methods = conn.execute("SELECT entity, method, count(*) FROM contribution GROUP BY 1, 2 ORDER BY 1, 3 DESC").fetchall()
        lags = [ms for _, ms in sync_lags_ms(conn, datetime.fromtimestamp(since, timezone.utc))]
    by_entity: dict[str, list[str]] = {}
    for entity, method, n in methods:
        by_entity.setdefault(entity, []).append(f"{method} {n:,}")
    for entity, parts in by_entity.items():
        print(f"  links  {entity:<17} {', '.join(parts)}")
    if lags:
        print(f"  sync lag, department commit -> golden record visible: p50 {percentile(lags, 50):,.0f} ms,"
              f" p99 {percentile(lags, 99):,.0f} ms over {len(lags):,} live changes")
    print("  look up one: kintsmesh explain <person id>   review queue: kintsmesh review list")


def catch_up(settings: Settings) -> None:
    """Let normalize and merge finish the initial load first, so that the live lag means something."""
    print("normalize and merge working through what was captured ...", flush=True)
    wait_for_pipeline(settings, timeout_s=900,
                      report=lambda stage, n: print(f"  {stage}: {n:,} to go", flush=True))
    print(f"  library {library_counts(settings)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    settings = Settings()
    print("capturing what is already in the department databases (snapshot / bulk load) ...", flush=True)
    total = wait_for_capture_to_settle(
        settings, report=lambda n: print(f"  {n:,} change events on raw.* so far", flush=True))
    print(f"capture caught up: {total:,} change events on raw.* topics", flush=True)
    catch_up(settings)
    watcher = RawTopicWatcher(settings).start()
    live_since = time.time()
    print(f"live department activity: {args.rate:.0f} changes/s for {args.duration:.0f} s; "
          "change events on raw.<dept>.* (commit -> topic latency):", flush=True)
    result: list[LiveStats | None] = []
    simulation = threading.Thread(target=lambda: result.append(run_simulation(
        settings, seed=args.seed, initial=None, rate=args.rate, duration_s=args.duration,
        dirty_rate=0.03, truth_path=None)))
    simulation.start()
    while simulation.is_alive():
        simulation.join(timeout=10)
        counts, latencies = watcher.snapshot()
        line = "  ".join(f"{d}={counts.get(d, 0):,}" for d in DEPARTMENTS)
        print(f"[{time.strftime('%H:%M:%S')}] events {line}  | p50 {percentile(latencies, 50):.0f} ms "
              f"p99 {percentile(latencies, 99):.0f} ms", flush=True)
        print(f"           library {library_counts(settings)}", flush=True)
    if not result or result[0] is None:
        watcher.stop()
        raise SystemExit("demo: the live simulation failed (see the error above)")
    written = result[0].changes
    watcher.wait_for(written, timeout_s=60)
    counts, latencies = watcher.snapshot()
    watcher.stop()
    print(f"changes committed: {written:,}; change events captured: {sum(counts.values()):,} "
          f"(p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms commit -> topic)")
    normalize_summary(settings)
    library_summary(settings, live_since)
    life_events_summary(settings, live_since)
    calendar_backfill(settings)
    subscribers_summary(settings)
    evidence_summary(settings)
    services_summary(settings)
    aggregates_summary(settings)
    nightly_batch(settings)


def life_events_summary(settings: Settings, since: float) -> None:
    """Life events published on events.life.* (change-triggered and the daily pass), and one example."""
    import psycopg

    from kintsmesh.settings import RESOURCE_LIBRARY_DB
    from monitoring.lag import events_lag

    wait_for_zero(lambda: events_lag(settings), 300, lambda n: print(f"  life-event worker: {n:,} to go", flush=True))
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        rows = conn.execute(
            "SELECT event_type, count(*) FILTER (WHERE detected_at >= to_timestamp(%s)), count(*),"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM published_at)"
            "  - (event->>'source_committed_at')::bigint / 1000.0) FILTER (WHERE detected_at >= to_timestamp(%s))"
            " FROM life_event GROUP BY 1 ORDER BY 1", (since, since)).fetchall()
        example = conn.execute("SELECT event FROM life_event WHERE detected_at >= to_timestamp(%s)"
                               " AND event_type <> 'RESIDENCE_CHANGED' ORDER BY seq DESC LIMIT 1", (since,)).fetchone()
    print("life events (events.life.<type>):")
    for event_type, live, total, p99 in rows:
        lag = f"  commit -> published p99 {p99:,.1f} s" if p99 is not None else ""
        print(f"  {event_type:<26} {live:>6,} during the live run  {total:>8,} in all{lag}")
    if example:
        print(f"  latest: {json.dumps(example[0], ensure_ascii=False)[:400]}")
    print("  more: kintsmesh events list --type SCHOOL_AGE_REACHED   rules: kintsmesh events rules")


def calendar_backfill(settings: Settings, days: int = 60) -> None:
    """The daily pass back-filled over the last ``days`` days (``kintsmesh events daily --date --until``):
    a small city has few birthdays that cross an age on any single day."""
    from streams.events.worker import run_daily

    today = datetime.now(CITY_TZ).date()
    first = today - timedelta(days=days)
    results = run_daily(settings, first, today)
    found: dict[str, int] = {}
    for result in results[:-1]:
        for event_type, n in result.get("by_type", {}).items():
            found[event_type] = found.get(event_type, 0) + n
    print(f"daily pass back-filled {first} .. {today} (kintsmesh events daily --date {first} --until {today}): "
          + (", ".join(f"{t} {n}" for t, n in sorted(found.items())) or "nobody crossed an age")
          + "; the education bureau fetches a SCHOOL_AGE_REACHED child's dossier from the API")


def subscribers_summary(settings: Settings, subscriber: str = "education_bureau") -> None:
    """What each subscriber received on sub.<name>.life, and the education bureau's newest school-age
    event read back as a downstream system would: Confluent's stock consumer and AvroDeserializer."""
    import psycopg
    from confluent_kafka import TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    from kintsmesh.settings import RESOURCE_LIBRARY_DB
    from streams.events.subscriptions import subscriptions

    def behind() -> int:
        with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
            row = conn.execute("SELECT coalesce((SELECT max(seq) FROM life_event), 0)"
                               " - coalesce((SELECT min(last_seq) FROM subscription), 0)").fetchone()
        return int(row[0]) if row else 0

    wait_for_zero(behind, 120, lambda n: print(f"  subscription sinks: {n:,} events to look at", flush=True))
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        delivered: dict[str, int] = dict(conn.execute("SELECT subscriber, delivered FROM subscription").fetchall())
    print("subscribers (sub.<name>.life, only their event types, filters and fields):")
    for name, subscription in subscriptions().items():
        print(f"  {name:<24} {delivered.get(name, 0):>7,} delivered   {', '.join(subscription.events)}")
    topic = subscriptions()[subscriber].topic
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.registry_client_config()))
    consumer = kafka.consumer(settings, "kintsmesh-demo-reader", enable_auto_commit=False)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in metadata.partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in ends])
        newest: dict[str, Any] | None = None
        left = {p for p, end in ends.items() if end > 0}
        while left:
            for message in consumer.consume(1000, timeout=2.0):
                offset = message.offset()
                if message.error() or offset is None:
                    continue
                if offset + 1 >= ends[message.partition()]:
                    left.discard(message.partition())
                event = deserialize(message.value(), SerializationContext(topic, MessageField.VALUE))
                if event and event["event_type"] == "SCHOOL_AGE_REACHED":
                    newest = event
    finally:
        consumer.close()
    if newest is not None:
        print(f"  {subscriber} read with the stock AvroDeserializer: SCHOOL_AGE_REACHED {newest['subject_code']}"
              f" {newest.get('attributes')}")
        # the event carries no dossier: the bureau asks the API for it, with a token of its scope (audited)
        from kintsmesh.security.tokens import issue

        attributes = newest.get("attributes") or {}
        answer = requests.get(f"{settings.api_endpoint}/dossiers/school-enrolment/{newest['subject_code']}",
                              verify=str(settings.trusted_ca),
                              params={"level": attributes.get("level") or "primary",
                                      "year": attributes.get("enrolment_year")},
                              headers={"Authorization": f"Bearer {issue(settings.secrets_dir, 'education-bureau')}"},
                              timeout=10)
        dossier = answer.json() if answer.ok else {}
        verdict = dossier.get("verdict") or {}
        print(f"    dossier from the API (HTTP {answer.status_code}, token of education-bureau):"
              f" {verdict.get('verdict')} ({'; '.join(verdict.get('reasons') or [])}),"
              f" {len(dossier.get('guardians') or [])} guardians")
    print(f"  read it yourself: the consumer example in README.md (Subscriptions), topic {topic}")


def evidence_summary(settings: Settings) -> None:
    """Certificate sharing: how many presentations registering a newborn still needs, over every parent of
    a birth of the last year, and one parent's answer from the API as a household registration counter
    gets it (``GET /items/newborn_household_registration/evidence/{ric}``, audited)."""
    import psycopg

    from kintsmesh.security.tokens import issue
    from kintsmesh.settings import RESOURCE_LIBRARY_DB
    from sinks.library.evidence import newborn_presentations

    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        report = newborn_presentations(conn)
    print(f"certificate sharing, registering a newborn (presentations before shared data: "
          f"{report['presentations_before']}): {report['parents']:,} parents of a birth of the last year;"
          f" presentations still needed {report['by_presentations']}; {report['complete']:,} with every shared"
          f" evidence in the library need only the {report['in_person']} in person; missing most:"
          f" {report['still_to_present']}")
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute("SELECT details->>'mother_ric' FROM certificate WHERE certificate_type ="
                           " 'BIRTH_MEDICAL_CERTIFICATE' AND details ? 'mother_ric' ORDER BY issued_date DESC"
                           " LIMIT 1").fetchone()
    if row:
        answer = requests.get(f"{settings.api_endpoint}/items/newborn_household_registration/evidence/{row[0]}",
                              verify=str(settings.trusted_ca), timeout=10, headers={
                                  "Authorization": f"Bearer {issue(settings.secrets_dir, 'household-registration-office')}"})
        result = answer.json() if answer.ok else {}
        held = ", ".join(f"{h['evidence']} ({h['department']} {h['record']['table']}, {h['date']})"
                         for h in result.get("held", []))
        print(f"  the newest birth's mother, from the API (HTTP {answer.status_code}): held {held or 'nothing'};"
              f" to present: {', '.join(m['evidence'] for m in result.get('to_present', []))}")
    print("  more: kintsmesh evidence items;  kintsmesh evidence <item> <RIC> --requester .. --purpose ..")


def services_summary(settings: Settings) -> None:
    """Services for me: who became eligible for what during the run (events.service.eligible), and one
    sixty-year-old's services from the API as the residents' portal gets them."""
    import psycopg

    from kintsmesh.security.tokens import issue
    from kintsmesh.settings import RESOURCE_LIBRARY_DB

    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        told = conn.execute("SELECT event->'attributes'->>'service', count(*) FROM life_event"
                            " WHERE event_type = 'SERVICE_ELIGIBLE' GROUP BY 1 ORDER BY 2 DESC").fetchall()
        row = conn.execute("SELECT ric FROM person WHERE birth_date <= current_date - interval '60 years'"
                           " AND household_no IS NOT NULL AND death_date IS NULL AND ric IS NOT NULL LIMIT 1").fetchone()
    print("services for me: SERVICE_ELIGIBLE on events.service.eligible (residents already known who became"
          f" eligible): {dict(told) or 'none yet'}")
    if row:
        answer = requests.get(f"{settings.api_endpoint}/residents/{row[0]}/services", verify=str(settings.trusted_ca),
                              timeout=10, headers={"Authorization": f"Bearer {issue(settings.secrets_dir, 'services-portal')}"})
        listed = answer.json().get("services", []) if answer.ok else []
        print(f"  a resident over sixty, from the API (HTTP {answer.status_code}, token of services-portal): "
              + "; ".join(f"{s['service']} ({s['status']}: {', '.join(s['reasons'])})" for s in listed[:4]))
    print("  more: GET /residents/<RIC>/services; rules: streams/events/services.yaml")


def aggregates_summary(settings: Settings) -> None:
    """Decision support: the actual residents and the needs per district, from the planning office's API,
    and the Parquet export and charts written next to the stack."""
    import psycopg

    from kintsmesh.security.tokens import issue
    from kintsmesh.settings import RESOURCE_LIBRARY_DB
    from sinks.library.population import export_parquet, plot_districts

    answer = requests.get(f"{settings.api_endpoint}/aggregates/needs", verify=str(settings.trusted_ca), timeout=30,
                          headers={"Authorization": f"Bearer {issue(settings.secrets_dir, 'planning-office')}"})
    report = answer.json() if answer.ok else {}
    print(f"decision support (API /aggregates/needs, HTTP {answer.status_code}, token of planning-office; kept"
          f" current from golden changes; cells under 10 suppressed): school year {report.get('school_year')}")
    def shown(count: int | None) -> str:
        return "<10" if count is None else f"{count:,}"

    for row in report.get("districts", []):
        print(f"  {row['district']:<14} residents {shown(row['residents']):>7}  health centres needed"
              f" {row['health_centres_needed']} (has {row['health_centres_existing']})  school places next September"
              f" {shown(row['school_places_next_september'])}")
    out = settings.stack_dir / "aggregates"
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        rows = export_parquet(conn, out / "population-community.parquet", "community")
        charts = plot_districts(conn, out)
    print(f"  {rows:,} community cells in {out / 'population-community.parquet'}; {len(charts)} district charts"
          f" in {out}/population-*.png   (kintsmesh aggregates population|needs|export|plot)")


def nightly_batch(settings: Settings) -> None:
    """T+1: social insurance also delivers yesterday's contributions as a nightly extract."""
    from streams.batch import load as batch

    business_day = (datetime.now(CITY_TZ) - timedelta(days=1)).date()
    path = settings.stack_dir / "batches" / f"hrss-{business_day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = batch.extract(settings, "hrss", None, str(path))
    print(f"T+1: hrss extract for {business_day}, {rows:,} rows -> kintsmesh batch load (same mapping, resolve, merge)",
          flush=True)
    print(batch.summary(batch.load_batch(settings, "hrss", business_day, path)), flush=True)


if __name__ == "__main__":
    main()
