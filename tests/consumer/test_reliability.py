"""The consumer across broker restarts, retries after its own restart, stalls and stuck groups.

Real Tansu brokers of their own (they are stopped, restarted and SIGSTOPped here) and the
session's chDB engine. Each test reproduces a failure of issue 11 and, where it adds one, its
negative control shows the assertion catching the failure.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from test_pipeline import count, drain, golden_events, produce, settle

from viz.common.clock import SystemClock
from viz.common.settings import ClickHouseSettings, HttpSettings, KafkaSettings
from viz.common.web import METRICS_KEY
from viz.consumer.ops import OpsThread, attach_health, create_ops_app
from viz.consumer.runner import ConsumerLoop, build_loop
from viz.consumer.settings import ConsumerSettings
from viz.embedded import EmbeddedKafka, free_port
from viz.migrations.clickhouse import migrate_clickhouse
from viz.migrations.kafka import ensure_topics


@pytest.fixture
def brokers(tmp_path: Path) -> Iterator[Callable[[], EmbeddedKafka]]:
    """Starts brokers of this test's own (each a new, empty incarnation); stops them all."""
    started: list[EmbeddedKafka] = []

    def start() -> EmbeddedKafka:
        broker = EmbeddedKafka(tmp_path / f"kafka{len(started)}")
        broker.start()
        started.append(broker)
        return broker

    yield start
    for broker in started:
        pid = broker_pid(broker)
        if pid is not None:
            try:
                os.kill(pid, signal.SIGCONT)  # a stopped process cannot be killed cleanly
            except ProcessLookupError:
                pass
        broker.stop()


def broker_pid(broker: EmbeddedKafka) -> int | None:
    pid = getattr(broker, "broker_pid", None)
    if pid is None and broker._server is not None and broker._server.proc is not None:
        pid = broker._server.proc.pid
    return pid


def consumer_settings(bootstrap: str, clickhouse_dsn: str, db: str, *, topic: str = "raw",
                      **overrides: Any) -> ConsumerSettings:
    kafka = KafkaSettings(bootstrap=bootstrap, topic_raw=topic, topic_dlq=f"{topic}.dlq",
                          partitions=4)
    ensure_topics(kafka)
    base = ConsumerSettings(
        kafka=kafka, clickhouse=ClickHouseSettings(dsn=clickhouse_dsn, database=db),
        group_id="viz-consumer", batch_max_events=100, flush_interval_s=0.3,
        session_timeout_ms=6000, retry_initial_s=0.05, retry_max_s=0.2,
        seen_ids_per_partition=10_000, retention_days=4000, log_level="INFO",
        dedup_horizon_s=10 * 365 * 86_400.0, stall_timeout_s=30.0, unready_after_s=30.0,
        http=HttpSettings("127.0.0.1", 0))
    return replace(base, **overrides)


# A loop on a thread shares the session's chDB client with the test: one lock serialises
# them, as in the warehouse process.
CHDB_LOCK = threading.Lock()


def new_loop(settings: ConsumerSettings, client: Any,
             registry: CollectorRegistry | None = None) -> ConsumerLoop:
    return build_loop(settings, client, clock=SystemClock(),
                      registry=registry or CollectorRegistry(), lock=CHDB_LOCK)


def stored(client: Any, db: str) -> int:
    with CHDB_LOCK:
        return count(client, db)


def with_new_ids(events: list[bytes], prefix: str) -> list[bytes]:
    """The same events (same sites, so the same partitions and offsets) with other event ids."""
    out = []
    for value in events:
        doc = json.loads(value)
        doc["data"]["eid"] = prefix + doc["data"]["eid"]
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out


@pytest.fixture
def db(clickhouse_client: Any, ch_database: str) -> str:
    migrate_clickhouse(clickhouse_client, ch_database, retention_days=4000)
    return ch_database


# -- offsets belong to a broker incarnation --------------------------------------------------


def test_a_new_broker_at_the_same_offsets_is_neither_held_back_nor_deduplicated(
        brokers: Callable[[], EmbeddedKafka], clickhouse_dsn: str, clickhouse_client: Any,
        db: str, caplog: pytest.LogCaptureFixture) -> None:
    """`viz up` restarted on an empty (in-memory) broker: the same partitions count from 0 again
    while ClickHouse still holds the previous run's ranges and deduplication tokens."""
    events = golden_events()[:120]
    first = brokers()
    # One batch per partition (offsets 0..n), so the next run's first batches rebuild exactly
    # the recorded ranges: the case where the old tokens collided and ClickHouse dropped them.
    one_batch = {"batch_max_events": 1000, "flush_interval_s": 2.0}
    settings = consumer_settings(first.bootstrap, clickhouse_dsn, db, **one_batch)
    produce(first.bootstrap, "raw", events)
    drain(new_loop(settings, clickhouse_client), lambda: count(clickhouse_client, db) >= 120)
    first.stop()

    second = brokers()
    settings = consumer_settings(second.bootstrap, clickhouse_dsn, db, **one_batch)
    again = with_new_ids(events, "run2-")  # new events, landing at the very same offsets
    produce(second.bootstrap, "raw", again)
    caplog.set_level(logging.WARNING, logger="viz.consumer.runner")
    loop = new_loop(settings, clickhouse_client)
    drain(loop, lambda: loop.metrics.events._value.get() >= 120)
    settle(loop, settings)
    assert count(clickhouse_client, db) == 240
    ignored = [r for r in caplog.records if "belongs to another incarnation" in r.getMessage()]
    assert ignored, "an ignored range of another incarnation must be logged"


def test_a_range_in_flight_in_the_same_incarnation_is_still_replayed_with_its_token(
        brokers: Callable[[], EmbeddedKafka], clickhouse_dsn: str, clickhouse_client: Any,
        db: str) -> None:
    """The incarnation check keeps the crash replay: a batch inserted but not committed is
    rebuilt by the next owner with the same (incarnation-scoped) token and dropped."""
    from test_pipeline import crash_at, run_until_crash

    broker = brokers()
    settings = consumer_settings(broker.bootstrap, clickhouse_dsn, db, batch_max_events=37)
    events = golden_events()[:200]
    produce(broker.bootstrap, "raw", events)
    crashing = build_loop(settings, clickhouse_client, clock=SystemClock(),
                          registry=CollectorRegistry(), fault=crash_at("before_commit"))
    run_until_crash(crashing)
    # The survivor fetches far more per poll than the crashed batch held, as under live
    # traffic: the replayed range ends inside a fetch and must not grow past its recorded end
    # (it did: another token, the whole range inserted twice, seen after a broker stall).
    survivor = new_loop(replace(settings, batch_max_events=1000), clickhouse_client)
    drain(survivor, lambda: count(clickhouse_client, db) >= 200)
    settle(survivor, settings)
    assert count(clickhouse_client, db) == 200


# -- event-id de-duplication that survives restarts -------------------------------------------


@pytest.mark.parametrize("horizon_s", [10 * 365 * 86_400.0, 0.0], ids=["warmed", "control"])
def test_a_retry_after_a_consumer_restart_counts_once(
        horizon_s: float, brokers: Callable[[], EmbeddedKafka], clickhouse_dsn: str,
        clickhouse_client: Any, db: str) -> None:
    """Negative control: with the warm-up off (horizon 0) the same retries count twice."""
    broker = brokers()
    settings = consumer_settings(broker.bootstrap, clickhouse_dsn, db, dedup_horizon_s=horizon_s)
    events = golden_events()[:60]
    produce(broker.bootstrap, "raw", events[:40])
    drain(new_loop(settings, clickhouse_client), lambda: count(clickhouse_client, db) >= 40)

    # A new consumer process: nothing of the first one's memory is left.
    produce(broker.bootstrap, "raw", events[:20] + events[40:])  # 20 retries, 20 new events
    loop = new_loop(settings, clickhouse_client)
    drain(loop, lambda: loop.metrics.events._value.get()
              + loop.metrics.duplicates._value.get() >= 40)
    settle(loop, settings)
    if horizon_s:
        assert loop.metrics.duplicates._value.get() == 20
        assert count(clickhouse_client, db) == 60
    else:
        assert count(clickhouse_client, db) == 80  # the control: every retry counted again


# -- broker stalls, stuck groups, health ----------------------------------------------------


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s:.0f} s"
        time.sleep(0.1)


def test_survives_a_broker_stall_reports_it_and_a_stop_during_a_stall_ends_promptly(
        brokers: Callable[[], EmbeddedKafka], clickhouse_dsn: str, clickhouse_client: Any,
        db: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="viz.consumer")
    broker = brokers()
    pid = broker_pid(broker)
    assert pid is not None
    settings = consumer_settings(broker.bootstrap, clickhouse_dsn, db, unready_after_s=1.0)
    ops = create_ops_app()
    loop = new_loop(settings, clickhouse_client, registry=ops[METRICS_KEY])
    attach_health(ops, loop.health)
    port = free_port()
    ops_thread = OpsThread(ops, "127.0.0.1", port)
    ops_thread.start()
    base = f"http://127.0.0.1:{port}"
    events = golden_events()
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), kwargs={"drain_timeout_s": 120.0})
    try:
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/readyz")[0] == 503  # nothing assigned yet
        produce(broker.bootstrap, "raw", events[:100])
        runner.start()
        wait_for(lambda: stored(clickhouse_client, db) >= 100, 60, "first events stored")
        wait_for(lambda: get(base + "/readyz")[0] == 200, 30, "ready")
        metrics = get(base + "/metrics")[1]
        assert "viz_consumer_consuming 1.0" in metrics
        assert "viz_consumer_assigned_partitions 4.0" in metrics

        # A stall longer than the session timeout: the group expires under the consumer.
        os.kill(pid, signal.SIGSTOP)
        wait_for(lambda: not loop.health()["consuming"], 30, "the stall reported")
        wait_for(lambda: get(base + "/readyz")[0] == 503, 10, "not ready during the stall")
        os.kill(pid, signal.SIGCONT)
        produce(broker.bootstrap, "raw", events[100:200])
        wait_for(lambda: stored(clickhouse_client, db) >= 200, 60, "consuming after the stall")
        wait_for(lambda: get(base + "/readyz")[0] == 200, 30, "ready after the stall")
        messages = [r.getMessage() for r in caplog.records]
        assert any(m.startswith("not consuming") for m in messages), messages
        assert any(m.startswith("consuming raw") and "again" in m for m in messages), messages

        # Stopped while the broker is stalled: the drain gives up in seconds, not in 120 s.
        produce(broker.bootstrap, "raw", events[200:300])
        os.kill(pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        stop.set()
        runner.join(30)
        assert not runner.is_alive(), "the stop waited on the stalled broker"
        print(f"stopped {time.monotonic() - stopped_at:.1f} s into the stall")
    finally:
        stop.set()
        os.kill(pid, signal.SIGCONT)
        if runner.ident is not None:
            runner.join(60)
        ops_thread.stop()
    assert not runner.is_alive()
    assert stored(clickhouse_client, db) <= 300


def test_a_consumer_stuck_over_unread_data_is_recreated_and_its_drain_does_not_hang(
        brokers: Callable[[], EmbeddedKafka], clickhouse_dsn: str, clickhouse_client: Any,
        db: str, caplog: pytest.LogCaptureFixture) -> None:
    """Assigned but fetching nothing while the topic has data (what was seen after the broker
    stall: the group never consumed again, nothing logged, and the stop's drain waited its full
    120 s). Stood in for by pausing the partitions behind the loop's back: the watchdog must
    notice and start over, and a drain while stuck must not wait out its timeout."""
    caplog.set_level(logging.INFO, logger="viz.consumer")
    broker = brokers()
    settings = consumer_settings(broker.bootstrap, clickhouse_dsn, db, stall_timeout_s=5.0)
    events = golden_events()
    produce(broker.bootstrap, "raw", events[:50])
    loop = new_loop(settings, clickhouse_client)
    loop.subscribe()
    deadline = time.monotonic() + 90
    try:
        while count(clickhouse_client, db) < 50:
            assert time.monotonic() < deadline, "first events not stored"
            loop.step()
        loop.consumer.pause(loop.consumer.assignment())
        produce(broker.bootstrap, "raw", events[50:150])
        while count(clickhouse_client, db) < 150:
            assert time.monotonic() < deadline, "the stuck consumer never consumed again"
            loop.step()
        assert loop.metrics.recreated.labels("stalled")._value.get() >= 1
        assert any("recreating the Kafka consumer" in r.getMessage() for r in caplog.records)

        loop.consumer.pause(loop.consumer.assignment())
        produce(broker.bootstrap, "raw", events[150:250])
        started = time.monotonic()
        assert loop.drain(120.0) is False
        assert time.monotonic() - started < 20, "the drain waited on a consumer fetching nothing"
        assert any("drain stopped early" in r.getMessage() for r in caplog.records)
    finally:
        loop.shutdown()
    assert count(clickhouse_client, db) == 150
