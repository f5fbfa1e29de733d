"""Writes batches into ClickHouse and keeps the per-partition record of the range in flight.

The record is written *before* the rows: after a crash the next owner of the partition reads
it and rebuilds exactly that offset range, so the retried insert carries the same
``insert_deduplication_token`` and ClickHouse drops it if the first attempt had landed (the
design of ClickHouse's own Kafka Connect sink). All calls block: the consumer loop is a thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from viz._fast.native import native_block
from viz.common.errors import UnavailableError
from viz.consumer.batch import Batch


@dataclass(frozen=True)
class RecordedRange:
    """The last range recorded for a partition; ``topic_id`` "" for a range recorded before
    ranges carried the topic's id (migration 0004)."""

    topic_id: str
    first: int
    last: int

COLUMNS = (
    "event_id", "site_id", "tenant_id", "ts", "client_ts", "event_type", "path", "title",
    "event_name", "bid", "consent_tier", "referrer", "referrer_host", "medium", "source",
    "utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "browser",
    "browser_version", "os", "device", "is_bot", "active_ms", "exit_href", "kafka_partition",
    "kafka_offset",
)

# Replayed blocks must also be dropped by the views fed from `traffic`, or they double.
_INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}
_RANGE_COLUMNS = ("topic", "topic_id", "partition", "first_offset", "last_offset", "recorded_ns")
_RANGE_TYPES = ("String", "String", "UInt32", "Int64", "Int64", "UInt64")  # as created below


class WriteError(UnavailableError):
    """ClickHouse refused or could not be reached; the batch is kept and retried."""


class ClickHouseWriter:
    """``lock`` serialises calls when several threads share one chDB client (embedded mode)."""

    def __init__(self, client: Any, database: str, *, lock: threading.Lock | None = None) -> None:
        self.client = client
        self.database = database
        self._lock = lock or nullcontext()
        # The Native block is built from `traffic`'s column types: read them once, on the
        # first write (ClickHouse may be down when the loop starts).
        self._traffic_types: list[str] | None = None

    def ensure_state_table(self) -> None:
        """The ranges table as migration 0004 leaves it (for a database never migrated; an
        existing table is upgraded by the migration, not here)."""
        with self._lock:
            self.client.command(
                f"CREATE TABLE IF NOT EXISTS {self.database}.consumer_ranges "
                "(topic String, topic_id String DEFAULT '', partition UInt32, first_offset Int64, "
                "last_offset Int64, recorded_ns UInt64) ENGINE = ReplacingMergeTree(recorded_ns) "
                "ORDER BY (topic, partition)"
            )

    def recorded_range(self, topic: str, partition: int) -> RecordedRange | None:
        """The last range recorded for a partition (any incarnation), or None if it never had one.

        One row per (topic, partition): only the latest range can be in flight, whichever
        incarnation of the topic wrote it; the caller compares its ``topic_id``."""
        try:
            with self._lock:
                rows = self.client.query(
                    f"SELECT topic_id, first_offset, last_offset "
                    f"FROM {self.database}.consumer_ranges FINAL "
                    "WHERE topic = {t:String} AND partition = {p:UInt32}",
                    parameters={"t": topic, "p": partition},
                ).result_rows
        except Exception as exc:
            raise WriteError(f"reading consumer ranges failed: {type(exc).__name__}") from exc
        if not rows:
            return None
        return RecordedRange(str(rows[0][0]), int(rows[0][1]), int(rows[0][2]))

    def recent_ids(self, partitions: list[int], since_ms: int, limit: int,
                   skip: dict[int, tuple[int, int]]) -> dict[int, list[str]]:
        """Event ids stored from each Kafka partition since ``since_ms``, at most ``limit`` per
        partition, the most recent ones, oldest first (to warm the duplicate filter).

        ``skip`` maps a partition to an offset range whose rows are left out: a range about to
        be replayed must be rebuilt from the same filter state it was first built with, which
        did not hold its own ids."""
        if not partitions or limit <= 0:
            return {}
        params: dict[str, Any] = {"ps": partitions, "since": since_ms, "n": limit}
        skipped = ""
        for i, (p, (first, last)) in enumerate(sorted(skip.items())):
            skipped += (f" AND NOT (kafka_partition = {{sp{i}:UInt16}} AND kafka_offset "
                        f"BETWEEN {{sf{i}:UInt64}} AND {{sl{i}:UInt64}})")
            params.update({f"sp{i}": p, f"sf{i}": max(first, 0), f"sl{i}": max(last, 0)})
        try:
            with self._lock:
                rows = self.client.query(
                    f"SELECT kafka_partition, event_id FROM {self.database}.traffic "
                    "WHERE kafka_partition IN {ps:Array(UInt16)} "
                    "AND ts >= fromUnixTimestamp64Milli({since:Int64})" + skipped +
                    " ORDER BY ts DESC LIMIT {n:UInt32} BY kafka_partition",
                    parameters=params,
                ).result_rows
        except Exception as exc:
            raise WriteError(f"reading recent event ids failed: {type(exc).__name__}: "
                             f"{str(exc)[:200]}") from exc
        found: dict[int, list[str]] = {p: [] for p in partitions}
        for partition, event_id in reversed(rows):
            found[int(partition)].append(str(event_id))
        return found

    def _column_types(self) -> list[str]:
        """The ``traffic`` types of COLUMNS, read once (call under the lock)."""
        if self._traffic_types is None:
            rows = self.client.query(f"DESCRIBE TABLE {self.database}.traffic").result_rows
            types = {str(row[0]): str(row[1]) for row in rows}
            self._traffic_types = [types[name] for name in COLUMNS]
        return self._traffic_types

    def write(self, batch: Batch, recorded_ns: int,
              before_insert: Callable[[], None] = lambda: None) -> None:
        """Record the batch's range, then insert its rows with the range's dedup token."""
        try:
            with self._lock:
                types = self._column_types() if batch.rows else []
                self.client.insert(
                    f"{self.database}.consumer_ranges",
                    [[batch.topic, batch.topic_id, batch.partition, batch.first_offset,
                      batch.last_offset, recorded_ns]],
                    column_names=_RANGE_COLUMNS, column_type_names=_RANGE_TYPES,
                    settings={"insert_deduplicate": 0},
                )
                before_insert()
                if batch.rows:
                    # Serialised here (compiled, straight from the rows) rather than by
                    # clickhouse-connect's insert, which builds every column in Python.
                    self.client.raw_insert(
                        f"{self.database}.traffic", COLUMNS,
                        native_block(COLUMNS, types, batch.rows), fmt="Native",
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": batch.token},
                    )
        except Exception as exc:
            # The types are read again next time, in case a migration changed the table.
            self._traffic_types = None
            raise WriteError(f"insert into ClickHouse failed: {type(exc).__name__}: "
                             f"{str(exc)[:200]}") from exc
