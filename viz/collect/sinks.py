"""Where accepted events go: a :class:`Sink` is a bounded, acknowledged queue to the broker.

:class:`KafkaSink` produces with confluent-kafka; :class:`MemorySink` keeps messages in a list
for unit tests and can be told to fail the way the real one fails. Both have the same interface,
so every request path runs unchanged against either.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from viz._fast._select import NO_EXTENSIONS
from viz.collect.errors import (
    CollectError,
    DeliveryFailed,
    DeliveryTimeout,
    Internal,
    MessageTooLarge,
    QueueFull,
    ShuttingDown,
)
from viz.collect.settings import ProducerSettings
from viz.common.settings import KafkaSettings

log = logging.getLogger(__name__)

_POLL_INTERVAL_S = 0.001
"""Delivery reports are served this often while anything is in flight (never when idle)."""

RECREATE_REASONS = ("fatal", "poll_error")
"""Why :class:`KafkaSink` replaced its producer: librdkafka raised or reported a fatal error,
or ``poll`` raised something else (the producer is then in a state nobody can reason about)."""

_RECREATE_MIN_INTERVAL_S = 1.0
"""A producer that fails again at once is not replaced more often than this."""

_CANARY_KEY = b"viz-collect-canary"
_CANARY_HEADERS: list[tuple[str, str | bytes | None]] = [("viz-canary", b"producer-recreated")]

Report = Callable[[CollectError | None], None]
"""Told a request's outcome by :meth:`Sink.send_to`: ``None`` once every value is acknowledged,
else the error."""


class Sink(Protocol):
    """A bounded queue of messages to the broker with per-request acknowledgement."""

    def send(self, key: bytes, values: Sequence[bytes]) -> asyncio.Future[None]:
        """Queue ``values`` under ``key``; called on the event loop, once per request.

        Never blocks. Raises :class:`QueueFull` (none or only some queued: the caller answers
        503 and the tracker resends all of them; the consumer drops duplicates by event id) or
        :class:`MessageTooLarge` synchronously. The returned future resolves to ``None`` once
        the broker acknowledged every value, or fails with :class:`DeliveryTimeout`,
        :class:`DeliveryFailed` or :class:`MessageTooLarge`; it always completes, at the
        latest at the sink's delivery deadline.
        """
        ...

    def send_to(self, key: bytes, values: Sequence[bytes], report: Report) -> None:
        """:meth:`send` without a future: ``report`` is called exactly once, on the event loop
        and never from inside ``send_to``, with ``None`` or the error the future would carry.

        Raises synchronously like :meth:`send` (then ``report`` is never called). This is
        the request path's form: no future, no callback scheduled through the loop.
        """
        ...

    def ready(self) -> bool:
        """Cached answer to "can a send succeed now?" (the broker answers, and the producer
        is not one recreated that has not delivered yet); cheap, never blocks."""
        ...

    def queued(self) -> int:
        """Messages queued locally or in flight (waiting for a delivery report)."""
        ...

    async def start(self) -> None:
        """Start background work (delivery polling, the readiness probe)."""
        ...

    async def close(self) -> None:
        """Flush what is queued (bounded by the flush timeout) and release the client."""
        ...


class _Batch:
    """The messages of one request; ``report`` is told once all are acknowledged, or the first
    failure. ``report`` is ``None`` once told: later reports change nothing."""

    __slots__ = ("report", "remaining", "deadline")

    def __init__(self, report: Report, remaining: int, deadline: float) -> None:
        self.report: Report | None = report
        self.remaining = remaining
        self.deadline = deadline

    def on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Called by librdkafka from ``poll`` on the loop thread, once per message.
        report = self.report
        if report is None:  # failed, timed out or abandoned
            return
        if err is None:
            remaining = self.remaining - 1
            if remaining:
                self.remaining = remaining
                return
            self.report = None
            outcome: CollectError | None = None
        else:
            self.report = None
            outcome = delivery_error(err)
        try:
            report(outcome)
        except Exception:
            # An exception escaping a delivery callback would abort ``poll`` (and with it the
            # reports of the other requests in this tick): log it here instead.
            log.exception("delivery report callback raised")

    def expire(self, error: CollectError) -> None:
        report = self.report
        if report is not None:
            self.report = None
            try:
                report(error)
            except Exception:
                log.exception("delivery report callback raised")


def _resolve(future: asyncio.Future[None], outcome: CollectError | None) -> None:
    """The :data:`Report` behind :meth:`KafkaSink.send`'s future."""
    if future.done():
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


def delivery_error(err: KafkaError) -> CollectError:
    """The request outcome of a librdkafka error (a delivery report's or ``produce``'s)."""
    code = err.code()
    if code == KafkaError.MSG_SIZE_TOO_LARGE:
        return MessageTooLarge(err.str())
    if code == KafkaError._MSG_TIMED_OUT:
        return DeliveryTimeout(err.str())
    if code == KafkaError._QUEUE_FULL:
        return QueueFull(err.str())
    return DeliveryFailed(err.str())


def producer_config(kafka: KafkaSettings, producer: ProducerSettings) -> dict[str, Any]:
    """librdkafka settings of collect's producer (see SPEC §5 and docs/decisions.md, "collect
    produces at least once")."""
    return {
        "bootstrap.servers": kafka.bootstrap,
        "client.id": "viz-collect",
        # At least once, so that a success report always means "appended": an idempotent
        # producer bumps its epoch by itself after every delivery timeout, Tansu fences each
        # new epoch, and once the 16-bit epoch wrapped to the one Tansu knew it took new batches
        # for duplicates and answered success without storing them (issue 11). Without
        # idempotence no broker answer means "already have it". A retried batch can be stored
        # twice; the consumer drops repeated event ids (tracker retries make them anyway).
        "enable.idempotence": False,
        "acks": "all",
        # librdkafka's default without idempotence is 1,000,000. Five (the idempotent cap we
        # had) keeps pipelining; only a retried batch can land after a later one, and nothing
        # downstream reads order from offsets (events carry their own timestamps).
        "max.in.flight.requests.per.connection": 5,
        # Same placement as the Java client: all events of a site land in one partition.
        "partitioner": "murmur2_random",
        "compression.type": producer.compression,
        "linger.ms": producer.linger_ms,
        "queue.buffering.max.messages": producer.max_queue_messages,
        "queue.buffering.max.kbytes": producer.max_queue_kbytes,
        # librdkafka gives up on a message at the same deadline a request waits for it.
        "message.timeout.ms": int(producer.delivery_timeout_s * 1000),
    }


class KafkaSink:
    """Produces to ``kafka.topic_raw``; delivery reports are served on the event loop.

    While any request waits, ``poll(0)`` runs every millisecond from a loop timer, so delivery
    callbacks report to their requests on the loop thread (no threads, no locks) and an idle
    process does no work. Deadlines are checked on the same tick: all requests share one timeout, so
    the oldest batch is always the first to expire.

    A producer that can no longer deliver (a fatal librdkafka error, or ``poll`` raising) is
    replaced: every request in flight is answered :class:`DeliveryFailed` (503, the tracker
    resends), :attr:`recreated` counts it by reason, one line is logged, and :meth:`ready` is
    false until the new producer delivered something (a request's events, or a canary message
    to the dead-letter topic that the readiness probe sends when no request does).
    """

    def __init__(self, kafka: KafkaSettings, settings: ProducerSettings,
                 *, producer: Producer | None = None, compiled: bool = True) -> None:
        self._topic = kafka.topic_raw
        self._canary_topic = kafka.topic_dlq
        self._settings = settings
        self._config = producer_config(kafka, settings)
        self._max_messages = settings.max_queue_messages
        self._timeout_s = settings.delivery_timeout_s
        self._generation = 0
        """Bumped by every recreation; an old producer's error callbacks carry a stale one."""
        # (not ``producer or ...``: a Producer with an empty queue is falsy, it has __len__)
        self._producer = producer if producer is not None else self._new_producer()
        self._inflight: deque[_Batch] = deque()
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._ready = False
        self._last_error: str | None = None
        self._compiled = compiled and not NO_EXTENSIONS
        self._sender: Any = None
        self._direct_send: Callable[[bytes, Sequence[bytes], Report], None] | None = None
        """What :meth:`send_to` is outside a recovery (the compiled Sender's, or the method)."""
        self.recreated = dict.fromkeys(RECREATE_REASONS, 0)
        """Producer recreations by reason (exported as viz_collect_producer_recreated_total)."""
        self._recovering = False
        self._canary_pending = False
        self._recreate_handle: asyncio.TimerHandle | None = None
        self._last_recreate = float("-inf")
        self._disposals: set[asyncio.Future[None]] = set()
        self._closing = False

    # -- Sink ---------------------------------------------------------------------------------

    def send(self, key: bytes, values: Sequence[bytes]) -> asyncio.Future[None]:
        if self._loop is None:
            raise RuntimeError("KafkaSink.send before start()")
        future = self._loop.create_future()
        try:
            self.send_to(key, values, partial(_resolve, future))
        except BaseException:
            future.cancel()
            raise
        return future

    def send_to(self, key: bytes, values: Sequence[bytes], report: Report) -> None:
        loop = self._loop
        if loop is None:
            raise RuntimeError("KafkaSink.send before start()")
        producer = self._producer
        if len(producer) + len(values) > self._max_messages:
            raise QueueFull()
        batch = _Batch(report, len(values), loop.time() + self._timeout_s)
        produce = producer.produce
        topic = self._topic
        on_delivery = batch.on_delivery
        try:
            for value in values:
                produce(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            batch.report = None  # reports of what was queued are ignored
            self._track(batch)
            raise QueueFull() from None
        except KafkaException as exc:
            batch.report = None
            self._track(batch)
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                raise delivery_error(err) from None
            raise DeliveryFailed(str(exc)) from None
        self._inflight.append(batch)
        if self._tick_handle is None:
            self._tick_handle = loop.call_later(_POLL_INTERVAL_S, self._tick)

    def ready(self) -> bool:
        return self._ready and not self._recovering

    @property
    def producer(self) -> Producer:
        """The producer in use now (a recreation replaces it)."""
        return self._producer

    @property
    def recovering(self) -> bool:
        """The producer was recreated and has not delivered anything yet."""
        return self._recovering

    def queued(self) -> int:
        return len(self._producer)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sender = self._compiled_sender()
        if sender is not None:
            # The compiled twin of send_to (and of _Batch), bound to this sink's queue.
            self._sender = sender
            self.send_to = sender.send_to  # type: ignore[method-assign]
        self._direct_send = self.send_to
        self._probe_task = asyncio.create_task(self._probe(), name="viz-collect-kafka-probe")

    async def close(self) -> None:
        self._closing = True
        if self._recreate_handle is not None:
            self._recreate_handle.cancel()
            self._recreate_handle = None
        if self._probe_task is not None:
            self._probe_task.cancel()
            await asyncio.gather(self._probe_task, return_exceptions=True)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.flush_timeout_s
        # Delivery callbacks must run on this thread (they complete loop futures), so flush by
        # polling here instead of handing ``flush`` to an executor thread.
        while len(self._producer) > 0 and loop.time() < deadline:
            try:
                self._producer.poll(0.05)
            except Exception:
                log.exception("kafka producer failed while flushing")
                break
            self._expire(loop.time())
            await asyncio.sleep(0)
        left = len(self._producer)
        if left:
            # Every request was answered before the sink closes, so these belong to requests
            # that already got a 503 (the tracker resends them).
            log.error("kafka sink closed with %d message(s) not delivered", left)
            self._producer.purge(in_queue=True, in_flight=True)
            try:
                self._producer.poll(0)
            except Exception:
                log.exception("kafka producer failed while purging")
        self._expire(float("inf"))
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        await asyncio.gather(*self._disposals, return_exceptions=True)
        self._producer.close()

    # -- internals ----------------------------------------------------------------------------

    def _new_producer(self) -> Producer:
        return Producer({**self._config,
                         "error_cb": partial(self._on_error, self._generation),
                         "logger": logging.getLogger("viz.collect.kafka")})

    def _compiled_sender(self) -> Any:
        """``viz.collect._lane_c.Sender`` for this sink, or ``None`` (``compiled=False``,
        ``VIZ_NO_EXTENSIONS=1`` or not built: :meth:`send_to` and :class:`_Batch` serve)."""
        if not self._compiled:
            return None
        try:
            from viz.collect._lane_c import Sender
        except ImportError:
            return None
        return Sender(self, self._producer, self._topic, self._max_messages, self._timeout_s,
                      self._inflight, self._loop.time)  # type: ignore[union-attr]

    def _track(self, batch: _Batch) -> None:
        self._inflight.append(batch)
        self._arm()

    def _arm(self) -> None:
        """Start polling for delivery reports, unless the timer already runs."""
        if self._tick_handle is None and self._loop is not None:
            self._tick_handle = self._loop.call_later(_POLL_INTERVAL_S, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        self._poll()
        self._expire(self._loop.time())  # type: ignore[union-attr]
        if self._inflight:
            self._tick_handle = self._loop.call_later(  # type: ignore[union-attr]
                _POLL_INTERVAL_S, self._tick)

    def _expire(self, now: float) -> None:
        inflight = self._inflight
        while inflight:
            head = inflight[0]
            if head.report is None:
                inflight.popleft()
            elif head.deadline <= now:
                inflight.popleft()
                head.expire(DeliveryTimeout())
            else:
                break

    def _poll(self) -> None:
        """Serve the producer's callbacks. Nothing escapes to the loop's timer callback: if
        ``poll`` raises (confluent-kafka raises librdkafka's fatal errors there), the producer
        is replaced."""
        try:
            self._producer.poll(0)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            fatal = isinstance(err, KafkaError) and err.fatal()
            self._recreate_soon("fatal" if fatal else "poll_error", str(exc))
        except Exception as exc:  # a callback of ours raised: the producer's state is unknown
            self._recreate_soon("poll_error", repr(exc))

    def _recreate_soon(self, reason: str, detail: str) -> None:
        """Replace the producer from the loop (never from inside its ``poll``), at most once
        per :data:`_RECREATE_MIN_INTERVAL_S`."""
        loop = self._loop
        if loop is None or self._closing or self._recreate_handle is not None:
            return
        at = max(loop.time(), self._last_recreate + _RECREATE_MIN_INTERVAL_S)
        self._recreate_handle = loop.call_at(at, self._recreate, reason, detail)

    def _recreate(self, reason: str, detail: str) -> None:
        self._recreate_handle = None
        loop = self._loop
        if loop is None or self._closing:
            return
        old = self._producer
        self._generation += 1
        self._last_recreate = loop.time()
        self.recreated[reason] += 1
        self._producer = self._new_producer()
        if self._sender is not None:
            self._sender.use(self._producer)
        self._recovering = True
        self._canary_pending = False
        self.send_to = self._send_watched  # type: ignore[method-assign]
        # Switched first: a report below may start the next pipelined request's send.
        batches = [batch for batch in self._inflight if batch.report is not None]
        self._inflight.clear()
        log.error("kafka producer recreated (%s: %s); %d request(s) in flight answered 503, "
                  "not ready until the new producer delivers", reason, detail, len(batches))
        error = DeliveryFailed("the Kafka producer was recreated")
        for batch in batches:
            batch.expire(error)
        # Every batch of the old producer is told, so its last callbacks (served by the purge,
        # off the loop) change nothing.
        disposal = loop.run_in_executor(None, _dispose, old)
        del old  # the executor holds the last reference (see _dispose)
        self._disposals.add(disposal)
        disposal.add_done_callback(self._disposals.discard)

    def _send_watched(self, key: bytes, values: Sequence[bytes], report: Report) -> None:
        """:meth:`send_to` while a recreated producer has not delivered yet."""
        self._direct_send(key, values, partial(self._watch, report))  # type: ignore[misc]

    def _watch(self, report: Report, outcome: CollectError | None) -> None:
        if outcome is None:
            self._recovered("a request's events")
        report(outcome)

    def _recovered(self, what: str) -> None:
        if self._recovering:
            self._recovering = False
            self.send_to = self._direct_send  # type: ignore[assignment]
            log.warning("kafka producer delivers again after its recreation (%s)", what)

    def _send_canary(self) -> None:
        """One message to the dead-letter topic when no request proved the recreated producer:
        behind a load balancer that honours /readyz, no request would ever come."""
        generation = self._generation

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if generation == self._generation:
                self._canary_pending = False
                if err is None:
                    self._recovered("a canary message")

        try:
            self._producer.produce(self._canary_topic, b"", _CANARY_KEY,
                                   headers=_CANARY_HEADERS, on_delivery=delivered)
        except (BufferError, KafkaException):
            return
        self._canary_pending = True

    def _on_error(self, generation: int, err: KafkaError) -> None:
        # Called from poll() on the loop thread. librdkafka retries by itself; this only
        # feeds /readyz and one log line per distinct problem, except a fatal error.
        if generation != self._generation:
            return  # a replaced producer's, on its way out
        text = err.str()
        if err.fatal():
            self._recreate_soon("fatal", text)
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT,
                          KafkaError._RESOLVE) or err.fatal():
            self._ready = False
        if text != self._last_error:
            self._last_error = text
            log.warning("kafka producer: %s", text)

    async def _probe(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self._settings.ready_check_interval_s
        timeout = min(interval, 5.0)
        while True:
            try:
                meta = await loop.run_in_executor(
                    None, lambda: self._producer.list_topics(self._topic, timeout=timeout))
                topic = meta.topics.get(self._topic)
                ok = topic is not None and topic.error is None and bool(topic.partitions)
            except KafkaException:
                ok = False
            if ok and not self._ready:
                self._last_error = None
            self._ready = ok
            if ok and self._recovering and not self._canary_pending:
                self._send_canary()
            self._poll()  # serve error callbacks even when no request is in flight
            await asyncio.sleep(interval)


def _dispose(producer: Producer) -> None:
    """Purge a replaced producer, in an executor thread. It is not closed here: the readiness
    probe may still be inside its ``list_topics`` in another thread, and the last reference to
    go (this thread's or the probe's, never the loop's) destroys it."""
    try:
        producer.purge(in_queue=True, in_flight=True, blocking=False)
        producer.poll(0)
    except Exception:
        # A fatal producer raises its error again from poll; it was logged when it was replaced.
        log.debug("purging a replaced kafka producer failed", exc_info=True)


class MemorySink:
    """A sink for tests: keeps ``(key, value)`` pairs; can hold, fail or time out deliveries.

    * ``acknowledge=True`` (default): a send's future is resolved at once.
    * ``acknowledge=False``: futures wait for :meth:`release` or :meth:`fail_pending`, or the
      delivery deadline (``delivery_timeout_s``), like the Kafka sink's.
    * ``raise_on_send``: an error class raised synchronously by the next sends
      (:class:`QueueFull`, :class:`MessageTooLarge`).
    """

    def __init__(self, *, acknowledge: bool = True, delivery_timeout_s: float = 5.0,
                 max_messages: int = 100_000) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.acknowledge = acknowledge
        self.delivery_timeout_s = delivery_timeout_s
        self.max_messages = max_messages
        self.raise_on_send: type[CollectError] | None = None
        self.is_ready = True
        self.closed = False
        self._pending: list[tuple[asyncio.Future[None], list[tuple[bytes, bytes]]]] = []

    def send(self, key: bytes, values: Sequence[bytes]) -> asyncio.Future[None]:
        if self.raise_on_send is not None:
            raise self.raise_on_send()
        if self.queued() + len(values) > self.max_messages:
            raise QueueFull()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        items = [(key, v) for v in values]
        if self.acknowledge:
            self.messages.extend(items)
            future.set_result(None)
            return future
        self._pending.append((future, items))
        loop.call_later(self.delivery_timeout_s, self._expire, future)
        return future

    def send_to(self, key: bytes, values: Sequence[bytes], report: Report) -> None:
        self.send(key, values).add_done_callback(partial(_report_future, report))

    def _expire(self, future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_exception(DeliveryTimeout())

    def release(self) -> int:
        """Acknowledge every pending send (oldest first); returns how many were released."""
        pending, self._pending = self._pending, []
        released = 0
        for future, items in pending:
            if not future.done():
                self.messages.extend(items)
                future.set_result(None)
                released += 1
        return released

    def release_last(self) -> None:
        """Acknowledge only the newest pending send (to test out-of-order completion)."""
        future, items = self._pending.pop()
        self.messages.extend(items)
        future.set_result(None)

    def fail_pending(self, error: type[CollectError]) -> None:
        pending, self._pending = self._pending, []
        for future, _ in pending:
            if not future.done():
                future.set_exception(error())

    @property
    def pending(self) -> int:
        return sum(1 for future, _ in self._pending if not future.done())

    def ready(self) -> bool:
        return self.is_ready

    def queued(self) -> int:
        return sum(len(items) for future, items in self._pending if not future.done())

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self.closed = True


def _report_future(report: Report, future: asyncio.Future[None]) -> None:
    """A future's outcome as a :data:`Report`; a cancelled send reports :class:`ShuttingDown`."""
    if future.cancelled():
        report(ShuttingDown())
        return
    err = future.exception()
    if err is not None and not isinstance(err, CollectError):
        log.error("sink failed with %r", err)
        err = Internal("sink failed")
    report(err)  # type: ignore[arg-type]
