"""ClickHouse migrations build the traffic table and its views, once, with dedup switched on."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from viz.migrations.clickhouse import Migration, MigrationError, migrate_clickhouse

DEDUP = {"deduplicate_blocks_in_dependent_materialized_views": 1}
COLUMNS = ["event_id", "site_id", "ts", "client_ts", "event_type", "path", "bid", "active_ms",
           "medium", "source"]
NOON = dt.datetime(2026, 11, 28, 12, 0, tzinfo=dt.UTC)


def _rows(batch: int, n: int = 10) -> list[list[Any]]:
    return [[f"e{batch}-{i}", "site-a", NOON, NOON, "pageview", "/p", f"b{(i % 4) + batch}", 0,
             "search", "google"] for i in range(n)]


def test_applies_from_empty_then_reruns_as_a_no_op(clickhouse_client: Any, ch_database: str) -> None:
    assert migrate_clickhouse(clickhouse_client, ch_database) == [
        "0001_traffic", "0002_site_hourly", "0003_rollups_uniq_combined",
        "0004_consumer_ranges_topic_id"]
    assert migrate_clickhouse(clickhouse_client, ch_database) == []
    tables = {row[0] for row in clickhouse_client.query(
        "SELECT name FROM system.tables WHERE database = {db:String}",
        parameters={"db": ch_database}).result_rows}
    assert {"traffic", "pageviews_hourly", "pageviews_daily", "referrers_daily", "site_hourly",
            "site_daily", "mv_pageviews_hourly", "mv_pageviews_daily", "mv_referrers_daily",
            "mv_site_hourly", "mv_site_daily",
            "schema_migrations"} <= tables


def test_every_table_has_deduplication_switched_on(clickhouse_client: Any, ch_database: str) -> None:
    migrate_clickhouse(clickhouse_client, ch_database)
    for table in ("traffic", "pageviews_hourly", "pageviews_daily", "referrers_daily",
                  "site_hourly", "site_daily"):
        ddl = clickhouse_client.query(f"SHOW CREATE TABLE {ch_database}.{table}").result_rows[0][0]
        assert "non_replicated_deduplication_window = 10000" in ddl, table


def test_a_replayed_batch_counts_once_in_the_table_and_the_views(
        clickhouse_client: Any, ch_database: str) -> None:
    migrate_clickhouse(clickhouse_client, ch_database)
    for batch in range(3):
        clickhouse_client.insert(f"{ch_database}.traffic", _rows(batch), column_names=COLUMNS,
                                 settings={"insert_deduplication_token": f"raw-0-{batch}", **DEDUP})
    clickhouse_client.insert(f"{ch_database}.traffic", _rows(0), column_names=COLUMNS,
                             settings={"insert_deduplication_token": "raw-0-0", **DEDUP})
    assert clickhouse_client.query(
        f"SELECT count(), uniq(bid) FROM {ch_database}.traffic").result_rows == [(30, 6)]
    for view in ("pageviews_hourly", "pageviews_daily", "referrers_daily", "site_hourly",
                 "site_daily"):
        clickhouse_client.command(f"OPTIMIZE TABLE {ch_database}.{view} FINAL")
        # Merged rows must keep summing pageviews and merging (not picking) visitor states.
        assert clickhouse_client.query(
            f"SELECT sum(pageviews), uniqCombinedMerge(12)(visitors) FROM {ch_database}.{view}"
        ).result_rows == [(30, 6)], view


def test_the_rollup_rebuild_backfills_what_traffic_already_held(
        clickhouse_client: Any, ch_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from viz.migrations import clickhouse as migrations

    every = migrations.load_migrations()
    monkeypatch.setattr(migrations, "load_migrations", lambda: every[:2])
    migrate_clickhouse(clickhouse_client, ch_database)
    for batch in range(2):
        clickhouse_client.insert(f"{ch_database}.traffic", _rows(batch), column_names=COLUMNS,
                                 settings={"insert_deduplication_token": f"raw-0-{batch}", **DEDUP})
    monkeypatch.setattr(migrations, "load_migrations", lambda: every)
    assert migrate_clickhouse(clickhouse_client, ch_database) == [
        "0003_rollups_uniq_combined", "0004_consumer_ranges_topic_id"]
    # Rows inserted before the rebuild count once; rows inserted after it flow through the views.
    clickhouse_client.insert(f"{ch_database}.traffic", _rows(2), column_names=COLUMNS,
                             settings={"insert_deduplication_token": "raw-0-2", **DEDUP})
    for view in ("pageviews_hourly", "pageviews_daily", "referrers_daily", "site_hourly",
                 "site_daily"):
        assert clickhouse_client.query(
            f"SELECT sum(pageviews), uniqCombinedMerge(12)(visitors) FROM {ch_database}.{view}"
        ).result_rows == [(30, 6)], view


def test_refuses_a_migration_edited_after_it_was_applied(
        clickhouse_client: Any, ch_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    migrate_clickhouse(clickhouse_client, ch_database)
    edited = [Migration(1, "traffic", "CREATE TABLE IF NOT EXISTS {database}.x (a UInt8) "
                                      "ENGINE = Memory")]
    monkeypatch.setattr("viz.migrations.clickhouse.load_migrations", lambda: edited)
    with pytest.raises(MigrationError, match="was changed after it was applied"):
        migrate_clickhouse(clickhouse_client, ch_database)


def test_rejects_a_database_name_that_is_not_an_identifier(clickhouse_client: Any) -> None:
    with pytest.raises(MigrationError, match="invalid ClickHouse database name"):
        migrate_clickhouse(clickhouse_client, "viz; DROP TABLE x")


def test_the_ranges_table_created_by_an_older_consumer_gains_the_topic_id(
        clickhouse_client: Any, ch_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from viz.migrations import clickhouse as migrations

    every = migrations.load_migrations()
    monkeypatch.setattr(migrations, "load_migrations", lambda: every[:3])
    migrate_clickhouse(clickhouse_client, ch_database)
    # The table as consumers before 0004 created it, holding one range in flight.
    clickhouse_client.command(
        f"CREATE TABLE {ch_database}.consumer_ranges (topic String, partition UInt32, "
        "first_offset Int64, last_offset Int64, recorded_ns UInt64) "
        "ENGINE = ReplacingMergeTree(recorded_ns) ORDER BY (topic, partition)")
    clickhouse_client.command(f"INSERT INTO {ch_database}.consumer_ranges VALUES ('raw', 3, 10, 19, 1)")
    monkeypatch.setattr(migrations, "load_migrations", lambda: every)
    assert migrate_clickhouse(clickhouse_client, ch_database) == ["0004_consumer_ranges_topic_id"]

    from viz.consumer.writer import ClickHouseWriter, RecordedRange

    writer = ClickHouseWriter(clickhouse_client, ch_database)
    writer.ensure_state_table()  # what build_loop does: a no-op on the migrated table
    assert writer.recorded_range("raw", 3) == RecordedRange("", 10, 19)
