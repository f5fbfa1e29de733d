"""The consumer loop: poll → batch per partition → write → commit, in that order only.

Offsets are committed only after ClickHouse confirmed the insert. ClickHouse trouble pauses
every assigned partition and retries with capped backoff, committing nothing; a poison message
goes to the dead-letter topic and its partition keeps flowing; a rebalance abandons uncommitted
batches (the next owner replays them from the recorded range).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Histogram

from viz._fast.envelope import decode_row
from viz._fast.errors import EnvelopeError, UnknownVersion
from viz.common.clock import Clock
from viz.consumer.batch import Batch, SeenIds
from viz.consumer.enrich import agent_columns, attribution_columns
from viz.consumer.settings import ConsumerSettings
from viz.consumer.writer import ClickHouseWriter, WriteError

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]
"""Called at ``before_record``, ``before_insert`` and ``before_commit`` (crash tests)."""


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter("viz_consumer_events_total", "Events inserted into ClickHouse",
                              registry=registry)
        self.duplicates = Counter("viz_consumer_duplicates_total",
                                  "Events dropped as tracker retries (same event id)",
                                  registry=registry)
        self.dead_letters = Counter("viz_consumer_dead_letters_total",
                                    "Messages sent to the dead-letter topic", ["reason"],
                                    registry=registry)
        self.write_failures = Counter("viz_consumer_write_failures_total",
                                      "Failed ClickHouse writes (retried)", registry=registry)
        self.flush_seconds = Histogram("viz_consumer_flush_seconds",
                                       "Time to write and commit one batch", registry=registry)


class DeadLetters:
    """Produces undecodable messages, untouched, to the DLQ with the reason and source offset."""

    def __init__(self, producer: Any, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._failed: list[str] = []

    def send(self, msg: Message, reason: str) -> None:
        headers = [("viz-reason", reason.encode()), ("viz-source-topic", (msg.topic() or "").encode()),
                   ("viz-source-partition", str(msg.partition()).encode()),
                   ("viz-source-offset", str(msg.offset()).encode())]
        self.producer.produce(self.topic, value=msg.value(), key=msg.key(), headers=headers,
                              on_delivery=self._delivered)
        self.producer.poll(0)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._failed.append(str(err))

    def flush(self, timeout_s: float) -> None:
        """Raises WriteError unless every dead letter so far was acknowledged."""
        left = self.producer.flush(timeout_s)
        if left or self._failed:
            failed, self._failed = self._failed, []
            raise WriteError(f"dead-letter produce incomplete ({left} queued, {failed[:1]})")


def event_row(msg_value: bytes, partition: int, offset: int) -> tuple[str, list[Any]]:
    """Decode and enrich one message into a ``traffic`` row, in ``writer.COLUMNS`` order
    (raises EnvelopeError). Timestamps and ``active_ms`` are clamped to fit their columns."""
    row = decode_row(msg_value, partition, offset, agent_columns, attribution_columns)
    return row[0], row


class ConsumerLoop:
    def __init__(self, settings: ConsumerSettings, consumer: Any, writer: ClickHouseWriter,
                 dead_letters: DeadLetters, *, clock: Clock, registry: CollectorRegistry,
                 fault: FaultHook | None = None, poll_timeout_s: float = 0.2) -> None:
        self.settings = settings
        self.consumer = consumer
        self.writer = writer
        self.dead_letters = dead_letters
        self.clock = clock
        self.metrics = Metrics(registry)
        self.fault = fault or (lambda _point: None)
        self.poll_timeout_s = poll_timeout_s
        self.topic = settings.kafka.topic_raw
        self._batches: dict[int, Batch] = {}
        self._seen: dict[int, SeenIds] = {}
        self._replay: dict[int, int] = {}
        self._assigned: set[int] = set()
        self._unchecked: set[int] = set()  # partitions whose recorded range is not read yet
        self._paused = False
        self._retry_at = 0.0
        self._backoff_s = settings.retry_initial_s

    # -- rebalance callbacks (run inside consume(), on this thread) --

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._assigned.add(tp.partition)
            self._unchecked.add(tp.partition)
        # Nothing is consumed from a partition until its recorded range was read. Assigning
        # here (instead of letting the client do it after the callback) makes the pause stick.
        consumer.assign(partitions)
        consumer.pause(partitions)
        self._check_ranges()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            p = tp.partition
            batch = self._batches.pop(p, None)
            if batch is not None and not batch.empty:
                log.info("partition %d revoked: abandoning uncommitted offsets %d-%d",
                         p, batch.first_offset, batch.last_offset)
            self._seen.pop(p, None)
            self._replay.pop(p, None)
            self._assigned.discard(p)
            self._unchecked.discard(p)

    def _check_ranges(self) -> None:
        if not self._unchecked:
            return
        checked = []
        for p in sorted(self._unchecked):
            try:
                recorded = self.writer.recorded_range(self.topic, p)
            except WriteError as exc:
                log.warning("cannot read recorded ranges yet: %s", exc)
                return
            if recorded is not None:
                committed = self.consumer.committed([TopicPartition(self.topic, p)], timeout=10)
                position = committed[0].offset if committed else -1
                first, last = recorded
                if last >= max(position, 0) and (position < 0 or first >= position):
                    # Crashed between recording and committing: rebuild that exact range.
                    self._replay[p] = last
                    log.info("partition %d: replaying recorded range %d-%d", p, first, last)
            checked.append(p)
        self._unchecked.difference_update(checked)
        if checked and not self._paused:
            self.consumer.resume([TopicPartition(self.topic, p) for p in checked])

    # -- the loop --

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def run(self, stop: threading.Event, *, drain_timeout_s: float = 0.0) -> None:
        """Loop until ``stop``; then, for up to ``drain_timeout_s``, keep consuming until every
        assigned partition is caught up (``viz up`` drains its in-memory broker this way)."""
        self.subscribe()
        while not stop.is_set():
            self.step()
        deadline = self.clock.monotonic() + drain_timeout_s
        while self.clock.monotonic() < deadline:
            # An empty poll as well: some brokers (the embedded Tansu) report a high watermark
            # one batch short, so "position >= high" alone could stop before the last batch.
            if self.step() == 0 and self.caught_up():
                break
        self.shutdown()

    def caught_up(self) -> bool:
        """True when nothing is left to consume on any assigned partition."""
        if self._unchecked or self._paused:
            return False
        for p in self._assigned:
            tp = TopicPartition(self.topic, p)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                position = self.consumer.position([tp])[0].offset
            except KafkaException:
                return False
            if high > 0 and position < high:
                return False
        return True

    def step(self) -> int:
        """One poll and whatever flushes are due; returns how many messages the poll brought.

        Never raises for data or ClickHouse trouble."""
        messages = self.consumer.consume(self.settings.batch_max_events, self.poll_timeout_s)
        self._take(messages)
        now = self.clock.monotonic()
        if self._unchecked:
            self._check_ranges()
        if self._paused and now < self._retry_at:
            return len(messages)
        for batch in list(self._batches.values()):
            if self._paused or batch.ready(now, self.settings.batch_max_events,
                                           self.settings.flush_interval_s):
                if not self._flush(batch):
                    return len(messages)
        if self._paused:
            self._resume()
        return len(messages)

    def _take(self, messages: list[Message]) -> None:
        """Decode each message into its partition's batch (the per-event hot loop)."""
        batches, seen_ids = self._batches, self._seen
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err)
                continue
            p, offset = msg.partition() or 0, msg.offset() or 0
            batch = batches.get(p)
            if batch is None:
                batch = batches[p] = Batch(self.topic, p, self.clock.monotonic(),
                                           replay_until=self._replay.pop(p, None))
            batch.add_offset(offset)
            try:
                row = decode_row(msg.value() or b"", p, offset, agent_columns,
                                 attribution_columns)
            except UnknownVersion as exc:
                self._dead_letter(msg, f"unknown_version:{exc.version}")
                continue
            except EnvelopeError as exc:
                self._dead_letter(msg, f"undecodable:{exc}"[:200])
                continue
            seen = seen_ids.get(p)
            if seen is None:
                seen = seen_ids[p] = SeenIds(self.settings.seen_ids_per_partition)
            if seen.seen(row[0]):
                self.metrics.duplicates.inc()
                continue
            batch.rows.append(row)

    def _dead_letter(self, msg: Message, reason: str) -> None:
        self.dead_letters.send(msg, reason)
        self.metrics.dead_letters.labels(reason.partition(":")[0]).inc()

    def _flush(self, batch: Batch) -> bool:
        """Write then commit one batch; on failure pause everything and schedule a retry."""
        with self.metrics.flush_seconds.time():
            try:
                self.fault("before_record")
                self.dead_letters.flush(10.0)
                self.writer.write(batch, recorded_ns=int(self.clock.time() * 1e9),
                                  before_insert=lambda: self.fault("before_insert"))
                self.fault("before_commit")
            except WriteError as exc:
                self.metrics.write_failures.inc()
                self._pause(exc)
                return False
            try:
                self.consumer.commit(offsets=[TopicPartition(batch.topic, batch.partition,
                                                             batch.last_offset + 1)],
                                     asynchronous=False)
            except KafkaException as exc:
                # Lost the partition meanwhile: the new owner replays the recorded range and the
                # dedup token makes its insert a no-op.
                log.warning("commit of partition %d failed (%s); the range will be replayed",
                            batch.partition, exc)
            self.metrics.events.inc(len(batch.rows))
            if self._batches.get(batch.partition) is batch:
                del self._batches[batch.partition]
            return True

    def _pause(self, exc: Exception) -> None:
        if not self._paused:
            log.warning("ClickHouse write failed, pausing consumption: %s", exc)
            self.consumer.pause([TopicPartition(self.topic, p) for p in self._assigned])
            self._paused = True
        else:
            self._backoff_s = min(self._backoff_s * 2, self.settings.retry_max_s)
        self._retry_at = self.clock.monotonic() + self._backoff_s

    def _resume(self) -> None:
        log.info("ClickHouse writes succeed again, resuming consumption")
        self._paused = False
        self._backoff_s = self.settings.retry_initial_s
        ready = [TopicPartition(self.topic, p) for p in self._assigned - self._unchecked]
        if ready:
            self.consumer.resume(ready)

    def shutdown(self, attempts: int = 3) -> None:
        """Flush what can be flushed, commit it, leave the group."""
        for _ in range(attempts):
            pending = [b for b in self._batches.values() if not b.empty]
            if not pending:
                break
            for batch in pending:
                if not self._flush(batch):
                    break
        left = sum(len(b.rows) for b in self._batches.values())
        if left:
            log.warning("stopping with %d uncommitted events; they will be consumed again", left)
        self.consumer.close()


def kafka_consumer_config(settings: ConsumerSettings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka.bootstrap,
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": max(settings.session_timeout_ms // 3, 100),
        "enable.partition.eof": False,
    }


def build_loop(settings: ConsumerSettings, client: Any, *, clock: Clock,
               registry: CollectorRegistry, fault: FaultHook | None = None,
               lock: threading.Lock | None = None) -> ConsumerLoop:
    """A loop wired to real Kafka clients and a clickhouse-connect ``client``."""
    from confluent_kafka import Consumer, Producer

    writer = ClickHouseWriter(client, settings.clickhouse.database, lock=lock)
    writer.ensure_state_table()
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap,
                         "enable.idempotence": True, "acks": "all"})
    return ConsumerLoop(settings, Consumer(kafka_consumer_config(settings)), writer,
                        DeadLetters(producer, settings.kafka.topic_dlq), clock=clock,
                        registry=registry, fault=fault)
