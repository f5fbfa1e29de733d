"""Kafka → consumer → ClickHouse: every event lands exactly once, views agree with the raw table.

Real broker, real chDB engine. The oracle recomputes each view's totals from ``traffic`` and
compares; the negative control shows the same oracle catching a double count when
deduplication is switched off.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry

from viz.common.clock import SystemClock
from viz.common.settings import ClickHouseSettings, KafkaSettings
from viz.consumer.runner import ConsumerLoop, build_loop
from viz.consumer.settings import ConsumerSettings
from viz.migrations.clickhouse import migrate_clickhouse
from viz.migrations.kafka import ensure_topics

GOLDEN = Path(__file__).parent.parent / "fixtures" / "pipeline_events.jsonl"


class Crash(BaseException):
    """Stands for the process dying at a point of the cycle (not an Exception: nothing catches it)."""


def golden_events() -> list[bytes]:
    return [line.encode() for line in GOLDEN.read_text().splitlines() if line]


@pytest.fixture
def settings(kafka_bootstrap: str, clickhouse_dsn: str, ch_database: str,
             clickhouse_client: Any) -> ConsumerSettings:
    suffix = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(bootstrap=kafka_bootstrap, topic_raw=f"raw.{suffix}",
                          topic_dlq=f"dlq.{suffix}", partitions=4)
    ensure_topics(kafka)
    migrate_clickhouse(clickhouse_client, ch_database)
    return ConsumerSettings(
        kafka=kafka, clickhouse=ClickHouseSettings(dsn=clickhouse_dsn, database=ch_database),
        group_id=f"viz-consumer-{suffix}", batch_max_events=100, flush_interval_s=0.3,
        session_timeout_ms=6000, retry_initial_s=0.05, retry_max_s=0.2,
        seen_ids_per_partition=10_000, retention_days=400, log_level="INFO",
        # The golden events are from 2026-11-29: warm the duplicate filter with all of them.
        dedup_horizon_s=10 * 365 * 86_400.0)


def produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "partitioner": "murmur2_random"})
    for value in values:
        try:
            sid = json.loads(value)["data"]["sid"]
        except (ValueError, KeyError):
            sid = "poison"
        producer.produce(topic, key=sid.encode(), value=value)
    assert producer.flush(30) == 0


def drain(loop: ConsumerLoop, done: Callable[[], bool], timeout_s: float = 60.0) -> None:
    """Run the loop until ``done()`` holds, then stop it cleanly (flush + commit + close)."""
    loop.subscribe()
    deadline = time.monotonic() + timeout_s
    try:
        while not done():
            assert time.monotonic() < deadline, "consumer did not drain in time"
            loop.step()
    finally:
        loop.shutdown()


def count(client: Any, db: str) -> int:
    return int(client.query(f"SELECT count() FROM {db}.traffic").result_rows[0][0])


def assert_views_match_raw(client: Any, db: str) -> None:
    """Every view total equals the same aggregate recomputed from the raw table."""
    raw = client.query(
        f"SELECT site_id, toStartOfHour(ts) h, path, countIf(event_type='pageview'), "
        f"countIf(event_type='hit'), sumIf(active_ms, event_type='active'), "
        f"countIf(event_type='exit'), uniqExactIf(bid, bid != '' AND event_type='pageview') "
        f"FROM {db}.traffic WHERE is_bot = 0 GROUP BY site_id, h, path ORDER BY site_id, h, path"
    ).result_rows
    view = client.query(
        f"SELECT site_id, hour, path, sum(pageviews), sum(hits), sum(active_ms), sum(exits), "
        f"uniqCombinedMerge(12)(visitors) FROM {db}.pageviews_hourly GROUP BY site_id, hour, path "
        f"ORDER BY site_id, hour, path"
    ).result_rows
    assert view == raw
    # The site rollup must equal the raw table directly (not just the per-path view summed).
    raw_site = client.query(
        f"SELECT site_id, toStartOfHour(ts) h, countIf(event_type='pageview'), "
        f"countIf(event_type='hit'), sumIf(active_ms, event_type='active'), "
        f"countIf(event_type='exit'), uniqExactIf(bid, bid != '' AND event_type='pageview') "
        f"FROM {db}.traffic WHERE is_bot = 0 GROUP BY site_id, h ORDER BY site_id, h"
    ).result_rows
    view_site = client.query(
        f"SELECT site_id, hour, sum(pageviews), sum(hits), sum(active_ms), sum(exits), "
        f"uniqCombinedMerge(12)(visitors) FROM {db}.site_hourly GROUP BY site_id, hour "
        f"ORDER BY site_id, hour"
    ).result_rows
    assert raw_site and view_site == raw_site
    raw_site_daily = client.query(
        f"SELECT site_id, toDate(ts) d, countIf(event_type='pageview'), "
        f"countIf(event_type='hit'), sumIf(active_ms, event_type='active'), "
        f"countIf(event_type='exit'), uniqExactIf(bid, bid != '' AND event_type='pageview') "
        f"FROM {db}.traffic WHERE is_bot = 0 GROUP BY site_id, d ORDER BY site_id, d"
    ).result_rows
    view_site_daily = client.query(
        f"SELECT site_id, day, sum(pageviews), sum(hits), sum(active_ms), sum(exits), "
        f"uniqCombinedMerge(12)(visitors) FROM {db}.site_daily GROUP BY site_id, day "
        f"ORDER BY site_id, day"
    ).result_rows
    assert raw_site_daily and view_site_daily == raw_site_daily
    raw_daily = client.query(
        f"SELECT site_id, toDate(ts) d, path, countIf(event_type='pageview'), "
        f"countIf(event_type='hit'), sumIf(active_ms, event_type='active'), "
        f"countIf(event_type='exit'), uniqExactIf(bid, bid != '' AND event_type='pageview') "
        f"FROM {db}.traffic WHERE is_bot = 0 GROUP BY site_id, d, path ORDER BY site_id, d, path"
    ).result_rows
    view_daily = client.query(
        f"SELECT site_id, day, path, sum(pageviews), sum(hits), sum(active_ms), sum(exits), "
        f"uniqCombinedMerge(12)(visitors) FROM {db}.pageviews_daily GROUP BY site_id, day, path "
        f"ORDER BY site_id, day, path"
    ).result_rows
    assert raw_daily and view_daily == raw_daily
    raw_ref = client.query(
        f"SELECT site_id, toDate(ts) d, medium, source, countIf(event_type='pageview'), "
        f"countIf(event_type='hit') FROM {db}.traffic WHERE is_bot = 0 "
        f"AND event_type IN ('pageview', 'hit') GROUP BY site_id, d, medium, source "
        f"ORDER BY site_id, d, medium, source"
    ).result_rows
    view_ref = client.query(
        f"SELECT site_id, day, medium, source, sum(pageviews), sum(hits) FROM "
        f"{db}.referrers_daily GROUP BY site_id, day, medium, source "
        f"ORDER BY site_id, day, medium, source"
    ).result_rows
    assert view_ref == raw_ref


def new_loop(settings: ConsumerSettings, client: Any,
             fault: Callable[[str], None] | None = None) -> ConsumerLoop:
    return build_loop(settings, client, clock=SystemClock(), registry=CollectorRegistry(),
                      fault=fault)


def test_golden_events_land_exactly_once_and_views_agree(
        settings: ConsumerSettings, clickhouse_client: Any) -> None:
    events = golden_events()
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events)
    loop = new_loop(settings, clickhouse_client)
    db = settings.clickhouse.database
    drain(loop, lambda: count(clickhouse_client, db) >= len(events))
    assert count(clickhouse_client, db) == len(events) == 600
    assert_views_match_raw(clickhouse_client, db)
    # Enrichment happened on the way in.
    bots = clickhouse_client.query(f"SELECT countIf(is_bot = 1), countIf(medium = 'email') "
                                   f"FROM {db}.traffic").result_rows[0]
    assert bots[0] > 0 and bots[1] > 0


def crash_at(point: str, after_flushes: int = 1) -> Callable[[str], None]:
    seen = {"n": 0}

    def fault(at: str) -> None:
        if at == point:
            seen["n"] += 1
            if seen["n"] == after_flushes + 1:
                raise Crash(point)
    return fault


def run_until_crash(loop: ConsumerLoop) -> None:
    """Step ``loop`` until its fault hook crashes it, then drop it as a dead process would (no
    flush, no commit; leaving the group only makes the test faster)."""
    loop.subscribe()
    with pytest.raises(Crash):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            loop.step()
    loop.consumer.close()


@pytest.mark.parametrize("point", ["before_record", "before_insert", "before_commit"])
def test_a_crash_at_any_point_of_the_cycle_neither_loses_nor_doubles(
        point: str, settings: ConsumerSettings, clickhouse_client: Any) -> None:
    events = golden_events()
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events)
    db = settings.clickhouse.database
    crashing = new_loop(settings, clickhouse_client, fault=crash_at(point))
    run_until_crash(crashing)

    survivor = new_loop(settings, clickhouse_client)
    drain(survivor, lambda: count(clickhouse_client, db) >= len(events))
    # One more quiet moment: a double insert would show up now.
    settle(survivor, settings)
    assert count(clickhouse_client, db) == len(events)
    assert_views_match_raw(clickhouse_client, db)


def settle(loop: ConsumerLoop, settings: ConsumerSettings) -> None:
    """Consume from the committed offsets once more; nothing new may be inserted."""
    again = new_loop(settings, loop.writer.client)
    again.subscribe()
    deadline = time.monotonic() + 3 * settings.flush_interval_s + 8
    try:
        while time.monotonic() < deadline:
            again.step()
    finally:
        again.shutdown()


def test_negative_control_without_dedup_the_oracle_sees_double_counts(
        settings: ConsumerSettings, clickhouse_client: Any) -> None:
    db = settings.clickhouse.database
    # ClickHouse's default for non-replicated tables: deduplication off.
    for table in ("traffic", "pageviews_hourly", "pageviews_daily", "referrers_daily",
                  "site_hourly", "site_daily"):
        clickhouse_client.command(
            f"ALTER TABLE {db}.{table} MODIFY SETTING non_replicated_deduplication_window = 0")
    events = golden_events()
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events)
    crashing = new_loop(settings, clickhouse_client, fault=crash_at("before_commit"))
    run_until_crash(crashing)
    survivor = new_loop(settings, clickhouse_client)
    drain(survivor, lambda: count(clickhouse_client, db) > len(events))
    assert count(clickhouse_client, db) > len(events)
    pageviews = clickhouse_client.query(
        f"SELECT sum(pageviews) FROM {db}.pageviews_hourly").result_rows[0][0]
    raw_pageviews = clickhouse_client.query(
        f"SELECT uniqExactIf(event_id, event_type = 'pageview' AND is_bot = 0) "
        f"FROM {db}.traffic").result_rows[0][0]
    assert pageviews > raw_pageviews  # the view counted the replayed batch twice
    site_pageviews = clickhouse_client.query(
        f"SELECT sum(pageviews) FROM {db}.site_hourly").result_rows[0][0]
    assert site_pageviews > raw_pageviews  # and so did the site rollup


def test_poison_messages_go_to_the_dead_letter_topic_and_the_rest_flows(
        settings: ConsumerSettings, clickhouse_client: Any) -> None:
    events = golden_events()[:50]
    poison = [b"not json", b'{"v":2,"ts":1,"data":{}}', b'{"v":1,"ts":1}']
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events[:25] + poison + events[25:])
    db = settings.clickhouse.database
    drain(new_loop(settings, clickhouse_client), lambda: count(clickhouse_client, db) >= 50)
    assert count(clickhouse_client, db) == 50

    reader = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": "dlq-reader",
                       "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
    reader.subscribe([settings.kafka.topic_dlq])
    dead: list[tuple[bytes, dict[str, bytes]]] = []
    deadline = time.monotonic() + 30
    try:
        while len(dead) < 3 and time.monotonic() < deadline:
            for msg in reader.consume(10, 0.5):
                if msg.error() is None:
                    dead.append((msg.value(), dict(msg.headers() or [])))
    finally:
        reader.close()
    assert sorted(v for v, _ in dead) == sorted(poison)
    reasons = {v: h["viz-reason"].decode() for v, h in dead}
    assert reasons[b'{"v":2,"ts":1,"data":{}}'] == "unknown_version:2"
    assert reasons[b"not json"].startswith("undecodable")
    assert all("viz-source-offset" in h for _, h in dead)


def test_a_tracker_retry_with_the_same_event_id_counts_once(
        settings: ConsumerSettings, clickhouse_client: Any) -> None:
    events = golden_events()[:30]
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events + events[:10])
    db = settings.clickhouse.database
    loop = new_loop(settings, clickhouse_client)
    drain(loop, lambda: loop.metrics.duplicates._value.get() >= 10)
    assert count(clickhouse_client, db) == 30


@pytest.fixture
def detached_traffic(settings: ConsumerSettings, clickhouse_client: Any) -> Iterator[None]:
    db = settings.clickhouse.database
    clickhouse_client.command(f"DETACH TABLE {db}.traffic")
    yield
    clickhouse_client.command(f"ATTACH TABLE IF NOT EXISTS {db}.traffic")


def test_clickhouse_outage_pauses_commits_nothing_and_loses_nothing(
        settings: ConsumerSettings, clickhouse_client: Any, detached_traffic: None) -> None:
    events = golden_events()[:120]
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events)
    db = settings.clickhouse.database
    loop = new_loop(settings, clickhouse_client)
    loop.subscribe()
    deadline = time.monotonic() + 60
    while loop.metrics.write_failures._value.get() < 3:
        assert time.monotonic() < deadline
        loop.step()
    assert loop._paused
    clickhouse_client.command(f"ATTACH TABLE {db}.traffic")
    try:
        while count(clickhouse_client, db) < len(events):
            assert time.monotonic() < deadline, "did not resume after ClickHouse came back"
            loop.step()
    finally:
        loop.shutdown()
    assert not loop._paused
    assert count(clickhouse_client, db) == len(events)
    assert_views_match_raw(clickhouse_client, db)


def test_stop_flushes_and_commits_what_it_consumed(
        settings: ConsumerSettings, clickhouse_client: Any) -> None:
    settings = ConsumerSettings(**{**settings.__dict__, "flush_interval_s": 3600.0,
                                   "batch_max_events": 100_000})
    events = golden_events()[:40]
    produce(settings.kafka.bootstrap, settings.kafka.topic_raw, events)
    loop = new_loop(settings, clickhouse_client)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,))
    runner.start()
    deadline = time.monotonic() + 60
    while sum(len(b.rows) for b in list(loop._batches.values())) < 40:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert count(clickhouse_client, settings.clickhouse.database) == 0  # nothing due yet
    stop.set()
    runner.join(30)
    assert count(clickhouse_client, settings.clickhouse.database) == 40
