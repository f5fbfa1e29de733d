"""The consumer loop: poll → batch per partition → write → commit, in that order only.

Offsets are committed only after ClickHouse confirmed the insert. ClickHouse trouble pauses
every assigned partition and retries with capped backoff, committing nothing; a poison message
goes to the dead-letter topic and its partition keeps flowing; a rebalance abandons uncommitted
batches (the next owner replays them from the recorded range). The loop watches itself: a group
that stops consuming (no assignment, never steady again, no progress over unread data) gets a
new Kafka consumer, and :meth:`ConsumerLoop.health` says whether it is consuming.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from viz._fast.envelope import decode_row
from viz._fast.errors import EnvelopeError, UnknownVersion
from viz.common.clock import Clock
from viz.consumer.batch import Batch, SeenIds
from viz.consumer.enrich import agent_columns, attribution_columns
from viz.consumer.settings import ConsumerSettings
from viz.consumer.writer import ClickHouseWriter, RecordedRange, WriteError

log = logging.getLogger(__name__)

FaultHook = Callable[[str], None]
"""Called at ``before_record``, ``before_insert`` and ``before_commit`` (crash tests)."""

ConsumerFactory = Callable[[Mapping[str, Any]], Any]
"""Makes a Kafka consumer from extra configuration (the loop's callbacks); called at start and
whenever the loop replaces a consumer that stopped consuming."""

TopicIdLookup = Callable[[str], str]
"""Kafka's id of a topic's current incarnation ("" when the broker has none); raises when the
broker cannot be asked. Blocks for at most a few seconds."""

STATS_INTERVAL_MS = 2000
_MAX_RECREATE_BACKOFF_S = 300.0
_DRAIN_IDLE_S = 5.0  # the drain ends after this long without a message while data is unread
# A group (re)joining takes seconds, more after a member died (Tansu waits out its session):
# a stop right after a start or a stall waits this long for partitions before giving up.
_DRAIN_JOIN_GRACE_S = 30.0
_BLOCKED_AFTER_S = 10.0  # one step taking longer than this reports "not consuming"


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
        self.rebalances = Counter("viz_consumer_rebalances_total",
                                  "Partitions assigned, revoked or lost", ["kind"],
                                  registry=registry)
        self.recreated = Counter("viz_consumer_recreated_total",
                                 "Kafka consumers replaced because the group stopped consuming",
                                 ["reason"], registry=registry)
        self.kafka_errors = Counter("viz_consumer_kafka_errors_total",
                                    "Errors reported by the Kafka client", ["code"],
                                    registry=registry)
        self.foreign_ranges = Counter(
            "viz_consumer_foreign_ranges_total",
            "Recorded ranges ignored because another incarnation of the topic wrote them",
            registry=registry)
        self.warmed_ids = Counter("viz_consumer_warmed_ids_total",
                                  "Event ids read back from ClickHouse into the duplicate filter",
                                  registry=registry)
        self.lag = Gauge("viz_consumer_lag", "Messages not yet consumed, per assigned partition "
                         "(librdkafka statistics, every 2 s)", ["partition"], registry=registry)


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
                 fault: FaultHook | None = None, poll_timeout_s: float = 0.2,
                 consumer_factory: ConsumerFactory | None = None,
                 topic_id: TopicIdLookup | None = None) -> None:
        self.settings = settings
        self.writer = writer
        self.dead_letters = dead_letters
        self.clock = clock
        self.metrics = Metrics(registry)
        self.fault = fault or (lambda _point: None)
        self.poll_timeout_s = poll_timeout_s
        self.topic = settings.kafka.topic_raw
        self._factory = consumer_factory
        self._lookup_topic_id = topic_id or (lambda _topic: "")
        self._generation = 0
        self.consumer = consumer if consumer is not None or consumer_factory is None \
            else self._new_consumer()
        self._batches: dict[int, Batch] = {}
        # Replayed ranges complete before the fetch that completed them ended: written as
        # recorded (same token) before anything newer of their partition.
        self._sealed: list[Batch] = []
        self._seen: dict[int, SeenIds] = {}
        self._replay: dict[int, RecordedRange] = {}
        self._assigned: set[int] = set()
        self._unchecked: set[int] = set()  # partitions whose recorded range is not read yet
        self._paused = False
        self._retry_at = 0.0
        self._backoff_s = settings.retry_initial_s
        self._topic_id: str | None = None  # the incarnation the assigned partitions belong to
        self._check_at = 0.0  # no partition check before (the broker failed the last one)
        self._unread_check_at = 0.0
        self._stalled: str | None = None  # why an idle loop is not just caught up
        self._check_error = ""
        # Health, read by the ops endpoints from another thread (plain attributes, GIL-safe).
        now = clock.monotonic()
        self._started_at = now
        self._last_progress = now  # a message consumed, or confirmed caught up
        self._last_write: float | None = None
        self._group_state = ""  # librdkafka's cgrp join_state, from the statistics
        self._lag: dict[int, int] = {}
        self._fatal: str | None = None
        self._ever_consumed = False
        self._not_consuming_since: float | None = now
        self._not_consuming_reason = "no partitions assigned"
        self._recreate_after_s = settings.stall_timeout_s
        self._watched_at = 0.0
        self._stepped_at = now  # the end of the last step (health sees a blocked loop)
        registry_gauges(self, registry)

    # -- the Kafka consumer and its callbacks (all run inside consume(), on this thread) --

    def _new_consumer(self) -> Any:
        assert self._factory is not None, "no consumer factory to build a consumer with"
        self._generation += 1
        generation = self._generation

        # Statistics and errors of a replaced consumer (closed in the background) are ignored.
        def on_stats(raw: str) -> None:
            if generation == self._generation:
                self._on_stats(raw)

        def on_error(err: KafkaError) -> None:
            if generation == self._generation:
                self._on_error(err)

        return self._factory({"statistics.interval.ms": STATS_INTERVAL_MS,
                              "stats_cb": on_stats, "error_cb": on_error})

    def _on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        group = stats.get("cgrp", {})
        state = str(group.get("join_state", ""))
        if self._assigned and not int(group.get("assignment_size", 0)) and state != "steady":
            # Taken before the assignment this loop already holds (statistics are queued and
            # served after the rebalance callback): not news about the group.
            state = ""
        self._group_state = state
        partitions = stats.get("topics", {}).get(self.topic, {}).get("partitions", {})
        lag: dict[int, int] = {}
        for key, part in partitions.items():
            p = int(key)
            if p < 0 or p not in self._assigned:
                continue
            high = int(part.get("hi_offset", -1))
            position = int(part.get("app_offset", -1))
            if position < 0:
                position = int(part.get("committed_offset", -1))
            if high >= 0 and position >= 0:
                lag[p] = max(high - position, 0)
        for p in set(self._lag) - set(lag):
            self._forget_lag(p)
        for p, behind in lag.items():
            self.metrics.lag.labels(str(p)).set(behind)
        self._lag = lag

    def _forget_lag(self, p: int) -> None:
        self._lag.pop(p, None)
        try:
            self.metrics.lag.remove(str(p))
        except KeyError:
            pass

    def _on_error(self, err: KafkaError) -> None:
        self.metrics.kafka_errors.labels(err.name()).inc()
        if err.fatal():
            log.error("kafka consumer fatal error: %s; the consumer will be recreated", err)
            self._fatal = str(err)
        else:
            log.warning("kafka consumer error: %s", err)

    def _on_assign(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("assigned partitions %s of %s", sorted(tp.partition for tp in partitions),
                 self.topic)
        self.metrics.rebalances.labels("assigned").inc(len(partitions))
        for tp in partitions:
            self._assigned.add(tp.partition)
            self._unchecked.add(tp.partition)
        # Nothing is consumed from a partition until its recorded range was read. Assigning
        # here (instead of letting the client do it after the callback) makes the pause stick.
        consumer.assign(partitions)
        consumer.pause(partitions)
        self._last_progress = self.clock.monotonic()
        self._group_state = ""  # until statistics taken after this assignment say otherwise
        self._check_ranges()

    def _on_revoke(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        log.info("partitions %s of %s revoked", sorted(tp.partition for tp in partitions),
                 self.topic)
        self.metrics.rebalances.labels("revoked").inc(len(partitions))
        self._forget([tp.partition for tp in partitions])

    def _on_lost(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        # The group went on without us (session timeout, broker stall): another member may own
        # these partitions already; our uncommitted batches are its to replay or re-read.
        log.warning("partitions %s of %s lost (the group session expired); rejoining",
                    sorted(tp.partition for tp in partitions), self.topic)
        self.metrics.rebalances.labels("lost").inc(len(partitions))
        self._forget([tp.partition for tp in partitions])

    def _forget(self, partitions: list[int]) -> None:
        gone = set(partitions)
        for sealed in [b for b in self._sealed if b.partition in gone]:
            log.info("partition %d: abandoning replayed offsets %d-%d", sealed.partition,
                     sealed.first_offset, sealed.last_offset)
        self._sealed = [b for b in self._sealed if b.partition not in gone]
        for p in partitions:
            batch = self._batches.pop(p, None)
            if batch is not None and not batch.empty:
                log.info("partition %d: abandoning uncommitted offsets %d-%d (%d events)",
                         p, batch.first_offset, batch.last_offset, len(batch.rows))
            self._seen.pop(p, None)
            self._replay.pop(p, None)
            self._assigned.discard(p)
            self._unchecked.discard(p)
            self._forget_lag(p)

    # -- what each newly assigned partition needs before it is consumed --

    def _check_ranges(self) -> bool:
        """Read the incarnation, the recorded ranges and the recent ids of the unchecked
        partitions, then resume them. On failure they stay paused and this runs again: after
        the ClickHouse backoff when ClickHouse failed (counted as a write failure, like a
        flush), after a second when the broker did."""
        if not self._unchecked:
            return True
        pending = sorted(self._unchecked)
        try:
            topic_id = self._lookup_topic_id(self.topic)
        except Exception as exc:
            self._check_failed(f"cannot read the id of topic {self.topic}: {exc}")
            return False
        if topic_id != self._topic_id:
            if not topic_id:
                log.warning("the broker gives topic %s no id: ranges recorded by another "
                            "incarnation of the topic cannot be told apart", self.topic)
            elif self._topic_id:
                log.warning("topic %s is a new incarnation (id %s, was %s): its offsets start "
                            "again", self.topic, topic_id, self._topic_id)
            else:
                log.info("topic %s has id %s", self.topic, topic_id)
            self._topic_id = topic_id
        replays: dict[int, RecordedRange] = {}
        try:
            for p in pending:
                recorded = self.writer.recorded_range(self.topic, p)
                if recorded is not None:
                    replay = self._replay_of(p, recorded, topic_id)
                    if replay is not None:
                        replays[p] = replay
            started = time.perf_counter()
            warm = self._recent_ids(pending, replays)
        except WriteError as exc:
            self.metrics.write_failures.inc()
            self._pause(exc)
            return False
        except KafkaException as exc:
            self._check_failed(f"cannot read committed offsets: {exc}")
            return False
        self._check_error = ""
        warmed = 0
        for p in pending:
            seen = self._seen[p] = SeenIds(self.settings.seen_ids_per_partition)
            seen.warm(warm.get(p, []))
            warmed += len(seen)
            if p in replays:
                self._replay[p] = replays[p]
                log.info("partition %d: replaying recorded range %d-%d", p, replays[p].first,
                         replays[p].last)
        if warm:
            self.metrics.warmed_ids.inc(warmed)
            log.info("partitions %s: duplicate filter warmed with %d event ids from ClickHouse "
                     "in %.0f ms", pending, warmed, (time.perf_counter() - started) * 1000)
        self._unchecked.difference_update(pending)
        if not self._paused:
            self.consumer.resume([TopicPartition(self.topic, p) for p in pending])
        return True

    def _check_failed(self, error: str) -> None:
        if error != self._check_error:
            log.warning("newly assigned partitions wait: %s", error)
        self._check_error = error
        self._check_at = self.clock.monotonic() + 1.0

    def _replay_of(self, p: int, recorded: RecordedRange, topic_id: str) -> RecordedRange | None:
        """The recorded range to rebuild before anything else of partition ``p``, if any."""
        first, last = recorded.first, recorded.last
        if topic_id and recorded.topic_id and recorded.topic_id != topic_id:
            log.warning("partition %d: recorded range %d-%d belongs to another incarnation of "
                        "%s (topic id %s, now %s): ignored, not replayed", p, first, last,
                        self.topic, recorded.topic_id, topic_id)
            self.metrics.foreign_ranges.inc()
            return None
        committed = self.consumer.committed([TopicPartition(self.topic, p)], timeout=5)
        position = committed[0].offset if committed else -1
        if topic_id and not recorded.topic_id and position < 0:
            # Recorded before ranges carried ids, and this group never committed here: the
            # topic was most likely recreated since; replaying would hold back new events.
            log.warning("partition %d: recorded range %d-%d predates topic ids and the group "
                        "has no offset in topic id %s: taken for another incarnation, ignored",
                        p, first, last, topic_id)
            self.metrics.foreign_ranges.inc()
            return None
        if last >= max(position, 0) and (position < 0 or first >= position):
            # Crashed between recording and committing: rebuild that exact range.
            return recorded
        return None

    def _recent_ids(self, partitions: list[int],
                    replays: dict[int, RecordedRange]) -> dict[int, list[str]]:
        horizon_s = self.settings.dedup_horizon_s
        if horizon_s <= 0 or self.settings.seen_ids_per_partition <= 0:
            return {}
        since_ms = int((self.clock.time() - horizon_s) * 1000)
        return self.writer.recent_ids(partitions, since_ms, self.settings.seen_ids_per_partition,
                                      {p: (r.first, r.last) for p, r in replays.items()})

    # -- the loop --

    def subscribe(self) -> None:
        generation = self._generation

        # A replaced consumer, closed in the background, calls back too: ignored.
        def current(callback: Callable[[Any, list[TopicPartition]], None]) -> Any:
            def call(consumer: Any, partitions: list[TopicPartition]) -> None:
                if generation == self._generation:
                    callback(consumer, partitions)
            return call

        self.consumer.subscribe([self.topic], on_assign=current(self._on_assign),
                                on_revoke=current(self._on_revoke),
                                on_lost=current(self._on_lost))

    def run(self, stop: threading.Event, *, drain_timeout_s: float = 0.0) -> None:
        """Loop until ``stop``; then drain (see :meth:`drain`) and shut down."""
        self.subscribe()
        while not stop.is_set():
            self.step()
        self.drain(drain_timeout_s)
        self.shutdown()

    def drain(self, timeout_s: float) -> bool:
        """Keep consuming, for up to ``timeout_s``, until every assigned partition is caught up
        (``viz up`` drains its in-memory broker this way); True when it is.

        Ends early, with a warning, when the Kafka side is not delivering (no partitions or
        group not steady after ``_DRAIN_JOIN_GRACE_S``, a fatal error) or nothing was consumed
        for a few seconds while data is unread: waiting out the timeout would not get that data
        into ClickHouse either."""
        now = self.clock.monotonic()
        started, deadline = now, now + timeout_s
        self._last_progress = max(self._last_progress, now)
        # What the topic held when the stop began: reaching it is enough when producers go on
        # (a consumer restarted alone); what came later waits for the next consumer.
        ends = self._ends() if timeout_s > 0 else None
        past_ends = 0
        # Idle is empty polls in a row, measured from the first: a step that spent seconds
        # writing batches into a busy ClickHouse is not a broker with nothing to give.
        idle_since: float | None = None
        while self.clock.monotonic() < deadline:
            consumed = self.step()
            if consumed:
                idle_since = None
            elif idle_since is None:
                idle_since = self.clock.monotonic()
            if consumed and ends is not None and self._reached(ends):
                # Tansu reports an end one record batch short; the rest of that batch came
                # with the same fetch and is in the local queue: two more polls take it.
                past_ends += 1
                if past_ends > 2:
                    return True
            # An empty poll as well: some brokers (the embedded Tansu) report a high watermark
            # one batch short, so "position >= high" alone could stop before the last batch.
            if consumed == 0:
                if self.caught_up():
                    return True
                now = self.clock.monotonic()
                reason = self._kafka_trouble()
                if reason is not None and self._fatal is None \
                        and now - started < _DRAIN_JOIN_GRACE_S and self._broker_answers():
                    idle_since = now  # the idle clock starts once partitions come
                    continue
                if reason is None and idle_since is not None \
                        and now - idle_since >= _DRAIN_IDLE_S:
                    reason = f"nothing consumed for {now - idle_since:.0f} s"
                if reason is not None and not self._unchecked and not self._paused:
                    log.warning("drain stopped early: %s; what is left is consumed after the "
                                "next start", reason)
                    return False
        if timeout_s > 0:
            log.warning("drain not finished after %.0f s", timeout_s)
        return False

    def _ends(self) -> dict[int, int] | None:
        """Every partition's high watermark now; None when the broker does not answer."""
        try:
            topic = self.consumer.list_topics(self.topic, timeout=1.0).topics.get(self.topic)
            if topic is None or topic.error is not None:
                return None
            ends = {}
            for p in topic.partitions:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=1, cached=False)
                ends[p] = high
        except KafkaException:
            return None
        return ends

    def _reached(self, ends: dict[int, int]) -> bool:
        """Whether every assigned partition was consumed up to ``ends`` (its committed offset
        stands in for a position not known yet)."""
        if not self._assigned or self._unchecked or self._paused:
            return False
        try:
            at = self._positions()
        except KafkaException:
            return False
        return all(offset >= ends.get(p, 0) or ends.get(p, 0) <= 0 for p, offset in at.items())

    def _positions(self) -> dict[int, int]:
        """Each assigned partition's position, its committed offset where no message was
        consumed yet (raises KafkaException when the broker does not answer)."""
        tps = [TopicPartition(self.topic, p) for p in sorted(self._assigned)]
        at = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
        unknown = [TopicPartition(self.topic, p) for p, offset in at.items() if offset < 0]
        if unknown:
            at.update({tp.partition: tp.offset
                       for tp in self.consumer.committed(unknown, timeout=2)})
        return at

    def _broker_answers(self) -> bool:
        """Whether the broker answers a metadata request within a second (a group can join)."""
        try:
            self.consumer.list_topics(self.topic, timeout=1.0)
        except KafkaException:
            return False
        return True

    def caught_up(self) -> bool:
        """True when nothing is left to consume on any assigned partition (never while no
        partition is assigned: a group still joining has not said what is left)."""
        if self._unchecked or self._paused or not self._assigned:
            return False
        for p in self._assigned:
            tp = TopicPartition(self.topic, p)
            try:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=1, cached=False)
                position = self.consumer.position([tp])[0].offset
            except KafkaException:
                return False
            if high > 0 and position < high:
                return False
        return True

    def step(self) -> int:
        """One poll and whatever flushes are due; returns how many messages the poll brought.

        Never raises for data, Kafka or ClickHouse trouble."""
        try:
            return self._step()
        finally:
            self._stepped_at = self.clock.monotonic()

    def _step(self) -> int:
        try:
            messages = self.consumer.consume(self.settings.batch_max_events, self.poll_timeout_s)
        except KafkaException as exc:
            log.error("kafka consume failed: %s", exc)
            self._fatal = str(exc)
            messages = []
        self._take(messages)
        now = self.clock.monotonic()
        if messages:
            self._last_progress = now
        self._watch(now)
        if self._paused and now < self._retry_at:
            return len(messages)
        if self._unchecked and now >= self._check_at and not self._check_ranges():
            return len(messages)
        while self._sealed:
            if not self._flush(self._sealed[0]):
                return len(messages)
            self._sealed.pop(0)
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
            if batch is not None and batch.replay_until is not None \
                    and offset > batch.replay_until:
                # The replayed range is complete; grown by the rest of this fetch it would get
                # another token and be inserted a second time.
                self._sealed.append(batch)
                batch = None
            if batch is None:
                batch = batches[p] = self._new_batch(p)
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

    def _new_batch(self, p: int) -> Batch:
        replay = self._replay.pop(p, None)
        if replay is not None:
            # Rebuilt with the id it was recorded with ("" before ids): the same token.
            return Batch(self.topic, p, self.clock.monotonic(), replay_until=replay.last,
                         topic_id=replay.topic_id)
        return Batch(self.topic, p, self.clock.monotonic(), topic_id=self._topic_id or "")

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
            self._last_write = self.clock.monotonic()
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

    # -- watching itself --

    def _kafka_trouble(self) -> str | None:
        """Why the Kafka side is not delivering, or None (ClickHouse pauses are not counted)."""
        if self._fatal is not None:
            return f"fatal error: {self._fatal}"
        if not self._assigned:
            return "no partitions assigned"
        if self._group_state and self._group_state != "steady":
            return f"group not steady ({self._group_state})"
        return None

    def _not_consuming(self, now: float) -> str | None:
        """Why the loop is not consuming right now, or None when it is (or is idle, caught up).

        The reasons are fixed phrases: a change of reason is logged."""
        reason = self._kafka_trouble()
        if reason is not None:
            return reason
        if self._paused:
            return "paused: ClickHouse writes failing"
        if self._unchecked:
            return "waiting to check newly assigned partitions"
        if now - self._last_progress < self.settings.stall_timeout_s:
            self._stalled = None
            return None
        # Nothing consumed for a while: idle, or stuck over unread data? A consumer that does
        # not fetch does not learn the high watermarks either, so ask the broker.
        if now >= self._unread_check_at:
            self._unread_check_at = now + self.settings.stall_timeout_s / 3
            unread = self._unread()
            if unread == 0:
                self._last_progress = now
                self._stalled = None
                return None
            stalled = ("no progress: the broker does not answer" if unread is None
                       else "no progress while messages are unread")
            if stalled != self._stalled:
                log.info("%s (%s unread, nothing consumed for %.0f s)", stalled,
                         "?" if unread is None else unread, now - self._last_progress)
            self._stalled = stalled
        return self._stalled

    def _unread(self) -> int | None:
        """Messages on the broker past this loop's position, summed over the assigned
        partitions; None when the broker does not answer (blocks up to a second per partition)."""
        try:
            unread = 0
            for p, at in self._positions().items():
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=1, cached=False)
                unread += max(high - max(at, low), 0)
        except KafkaException:
            return None
        return unread

    def _watch(self, now: float) -> None:
        """Log every change between consuming and not; replace a consumer that stays stuck."""
        if now - self._watched_at < 0.5 and self._fatal is None:
            return
        self._watched_at = now
        reason = self._not_consuming(now)
        if reason is None:
            if self._not_consuming_since is not None:
                log.info("consuming %s (partitions %s)%s", self.topic, sorted(self._assigned),
                         "" if not self._ever_consumed else
                         f" again after {now - self._not_consuming_since:.1f} s")
            self._not_consuming_since = None
            self._ever_consumed = True
            self._recreate_after_s = self.settings.stall_timeout_s
            return
        if self._not_consuming_since is None:
            self._not_consuming_since = now
            log.warning("not consuming %s: %s", self.topic, reason)
        elif reason != self._not_consuming_reason:
            log.warning("still not consuming %s: %s", self.topic, reason)
        self._not_consuming_reason = reason
        kafka_side = self._kafka_trouble() is not None or self._stalled is not None
        if self._factory is None or not kafka_side:
            return
        if self._fatal is not None or now - self._not_consuming_since >= self._recreate_after_s:
            self._recreate(reason)

    def _recreate(self, reason: str) -> None:
        """Leave the stuck consumer behind (uncommitted batches are read again; a recorded
        range is replayed by the range check) and join the group with a new one."""
        log.warning("recreating the Kafka consumer of %s: %s", self.topic, reason)
        self.metrics.recreated.labels("fatal" if self._fatal else "stalled").inc()
        self._forget(sorted(self._assigned))
        old = self.consumer
        self._fatal = None
        self._stalled = None
        self._group_state = ""
        self.consumer = self._new_consumer()
        self._paused = False
        self._backoff_s = self.settings.retry_initial_s
        # Closing leaves the group, which can wait on a broker that does not answer: in the
        # background, its callbacks ignored (they are bound to a generation of consumers).
        threading.Thread(target=_close_quietly, args=(old,), name="viz-consumer-close",
                         daemon=True).start()
        self.subscribe()
        now = self.clock.monotonic()
        self._not_consuming_since = now
        self._last_progress = now
        self._recreate_after_s = min(self._recreate_after_s * 2, _MAX_RECREATE_BACKOFF_S)

    def _blocked_s(self, now: float) -> float:
        """How long the loop has been inside one step, when that is longer than a step can
        normally take (a synchronous commit waits as long as a stalled broker does)."""
        blocked = now - self._stepped_at
        return blocked if blocked > _BLOCKED_AFTER_S else 0.0

    def health(self) -> dict[str, Any]:
        """A snapshot for /readyz and /metrics (called from another thread)."""
        now = self.clock.monotonic()
        since = self._not_consuming_since
        reason = self._not_consuming_reason
        blocked = self._blocked_s(now)
        if blocked and since is None:
            since = self._stepped_at
            reason = "the loop is blocked in a Kafka or ClickHouse call"
        consuming = since is None
        ready = self._ever_consumed and (
            consuming or (since is not None and now - since < self.settings.unready_after_s))
        return {
            "consuming": consuming,
            "ready": ready,
            "reason": None if consuming else reason,
            "not_consuming_s": 0.0 if since is None else round(now - since, 1),
            "assigned": sorted(self._assigned),
            "since_progress_s": round(now - self._last_progress, 1),
            "since_write_s": None if self._last_write is None
            else round(now - self._last_write, 1),
            "lag": sum(self._lag.values()),
            "topic_id": self._topic_id,
        }

    def shutdown(self, attempts: int = 3) -> None:
        """Flush what can be flushed, commit it, leave the group."""
        for _ in range(attempts):
            while self._sealed and self._flush(self._sealed[0]):
                self._sealed.pop(0)
            if self._sealed:
                continue
            pending = [b for b in self._batches.values() if not b.empty]
            if not pending:
                break
            for batch in pending:
                if not self._flush(batch):
                    break
        left = sum(len(b.rows) for b in [*self._sealed, *self._batches.values()])
        if left:
            log.warning("stopping with %d uncommitted events; they will be consumed again", left)
        self.consumer.close()


def _close_quietly(consumer: Any) -> None:
    try:
        consumer.close()
    except Exception as exc:  # the consumer is abandoned either way
        log.info("closing the replaced Kafka consumer: %s", exc)


def registry_gauges(loop: ConsumerLoop, registry: CollectorRegistry) -> None:
    """Gauges computed when scraped, from the loop's own state."""
    def since(value: float | None) -> float:
        now = loop.clock.monotonic()
        return now - (value if value is not None else loop._started_at)

    Gauge("viz_consumer_consuming", "1 while partitions are assigned and consumed",
          registry=registry).set_function(lambda: 1.0 if loop.health()["consuming"] else 0.0)
    Gauge("viz_consumer_assigned_partitions", "Partitions assigned to this consumer",
          registry=registry).set_function(lambda: float(len(loop._assigned)))
    Gauge("viz_consumer_seconds_since_progress",
          "Seconds since a message was consumed or the consumer was caught up",
          registry=registry).set_function(lambda: since(loop._last_progress))
    Gauge("viz_consumer_seconds_since_write",
          "Seconds since the last successful ClickHouse write (since start when none)",
          registry=registry).set_function(lambda: since(loop._last_write))


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


def topic_id_lookup(bootstrap: str) -> TopicIdLookup:
    """Kafka's topic id through the admin API (Kafka ≥ 2.8, Tansu); "" when the broker
    answers with the all-zero id (it has none)."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def lookup(topic: str) -> str:
        future = admin.describe_topics(TopicCollection([topic]), request_timeout=5)[topic]
        found = future.result(timeout=6).topic_id
        if found is None or (found.get_most_significant_bits() == 0
                             and found.get_least_significant_bits() == 0):
            return ""
        return str(found)

    return lookup


def build_loop(settings: ConsumerSettings, client: Any, *, clock: Clock,
               registry: CollectorRegistry, fault: FaultHook | None = None,
               lock: threading.Lock | None = None) -> ConsumerLoop:
    """A loop wired to real Kafka clients and a clickhouse-connect ``client``."""
    from confluent_kafka import Consumer, Producer

    writer = ClickHouseWriter(client, settings.clickhouse.database, lock=lock)
    writer.ensure_state_table()
    # At least once, as collect produces (docs/decisions.md): an idempotent producer can take a
    # broker's "duplicate" answer after a stall for a dead letter it never stored.
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap,
                         "enable.idempotence": False, "acks": "all",
                         "max.in.flight.requests.per.connection": 5})
    config = kafka_consumer_config(settings)
    return ConsumerLoop(settings, None, writer,
                        DeadLetters(producer, settings.kafka.topic_dlq), clock=clock,
                        registry=registry, fault=fault,
                        consumer_factory=lambda extra: Consumer({**config, **extra}),
                        topic_id=topic_id_lookup(settings.kafka.bootstrap))
