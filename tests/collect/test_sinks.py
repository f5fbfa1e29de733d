"""KafkaSink's mapping of librdkafka outcomes to request outcomes, without a broker."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from viz._fast._select import NO_EXTENSIONS
from viz.collect.errors import DeliveryFailed, DeliveryTimeout, MessageTooLarge, QueueFull
from viz.collect.sinks import KafkaSink, MemorySink, producer_config

from .support import make_settings


class FakeProducer:
    """Queues produce() calls; poll() reports them with ``report_error`` (None = success)."""

    def __init__(self) -> None:
        self.queue: list[tuple[bytes, bytes, Any]] = []
        self.raise_after: int | None = None
        self.raise_with: BaseException | None = None
        self.report_error: KafkaError | None = None
        self.closed = False

    def __len__(self) -> int:
        return len(self.queue)

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Any) -> None:
        if self.raise_with is not None and (self.raise_after is None
                                            or len(self.queue) >= self.raise_after):
            raise self.raise_with
        self.queue.append((key, value, on_delivery))

    def poll(self, timeout: float = 0) -> int:
        served, self.queue = self.queue, []
        for _, _, callback in served:
            callback(self.report_error, None)
        return len(served)

    def purge(self, **kwargs: Any) -> None:
        self.queue.clear()

    def close(self) -> None:
        self.closed = True

    def list_topics(self, topic: str, timeout: float) -> Any:
        raise KafkaException(KafkaError(KafkaError._TRANSPORT))


COMPILED = [True]
"""Whether the sinks of this test use the compiled send path (``_lane_c.Sender`` and
``Batch``); :func:`sink_twin` runs every test with both."""


@pytest.fixture(autouse=True, params=["python"] if NO_EXTENSIONS else ["python", "compiled"])
def sink_twin(request: pytest.FixtureRequest) -> Iterator[str]:
    COMPILED[0] = request.param == "compiled"
    yield request.param
    COMPILED[0] = True


def make_sink(producer: FakeProducer, **environ: str) -> KafkaSink:
    settings = make_settings(VIZ_COLLECT_READY_CHECK_INTERVAL_S="60", **environ)
    return KafkaSink(settings.kafka, settings.producer, producer=producer,  # type: ignore[arg-type]
                     compiled=COMPILED[0])


async def test_a_started_sink_sends_through_the_twin_it_was_built_for(
        producer: FakeProducer, sink_twin: str) -> None:
    sink = make_sink(producer)
    assert sink.send_to.__self__ is sink  # the Python method until started
    await sink.start()
    sender = sink.send_to.__self__
    assert type(sender).__name__ == ("Sender" if sink_twin == "compiled" else "KafkaSink")
    await sink.close()


@pytest.fixture
async def producer() -> FakeProducer:
    return FakeProducer()


async def test_resolves_only_once_every_message_is_acknowledged(producer: FakeProducer) -> None:
    sink = make_sink(producer)
    await sink.start()
    future = sink.send(b"site", [b"a", b"b", b"c"])
    assert len(producer.queue) == 3
    assert not future.done()
    await asyncio.wait_for(future, 2)  # the loop timer polls the producer
    assert producer.queue == []
    await sink.close()
    assert producer.closed


async def test_refuses_a_request_that_would_overflow_the_local_queue(
        producer: FakeProducer) -> None:
    sink = make_sink(producer, VIZ_COLLECT_MAX_QUEUE_MESSAGES="4")
    await sink.start()
    sink.send(b"site", [b"a", b"b", b"c"])
    with pytest.raises(QueueFull):
        sink.send(b"site", [b"d", b"e"])
    assert len(producer.queue) == 3  # nothing of the refused request was queued
    await sink.close()


async def test_buffer_error_midway_is_queue_full_and_late_reports_change_nothing(
        producer: FakeProducer) -> None:
    sink = make_sink(producer)
    await sink.start()
    producer.raise_with, producer.raise_after = BufferError("full"), 1
    with pytest.raises(QueueFull):
        sink.send(b"site", [b"a", b"b"])
    producer.poll()  # the one queued message reports later: ignored, no error raised
    await sink.close()


async def test_message_too_large_at_produce_is_413_not_retryable(producer: FakeProducer) -> None:
    sink = make_sink(producer)
    await sink.start()
    producer.raise_with = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    with pytest.raises(MessageTooLarge) as info:
        sink.send(b"site", [b"a"])
    assert info.value.status == 413 and not info.value.retryable
    await sink.close()


@pytest.mark.parametrize(("code", "error"), [
    (KafkaError.MSG_SIZE_TOO_LARGE, MessageTooLarge),
    (KafkaError._MSG_TIMED_OUT, DeliveryTimeout),
    (KafkaError.NOT_ENOUGH_REPLICAS, DeliveryFailed),
])
async def test_a_failed_delivery_report_fails_the_request(
        producer: FakeProducer, code: int, error: type[Exception]) -> None:
    sink = make_sink(producer)
    await sink.start()
    producer.report_error = KafkaError(code)
    future = sink.send(b"site", [b"a", b"b"])
    with pytest.raises(error):
        await asyncio.wait_for(future, 2)
    await sink.close()


async def test_the_delivery_deadline_fails_a_request_whose_reports_never_come() -> None:
    class Silent(FakeProducer):
        def poll(self, timeout: float = 0) -> int:
            return 0

    producer = Silent()
    sink = make_sink(producer, VIZ_COLLECT_DELIVERY_TIMEOUT_S="0.1",
                     VIZ_COLLECT_FLUSH_TIMEOUT_S="0.1")
    await sink.start()
    future = sink.send(b"site", [b"a"])
    with pytest.raises(DeliveryTimeout):
        await asyncio.wait_for(future, 2)
    await sink.close()


async def test_not_ready_until_the_broker_answered_a_metadata_probe(
        producer: FakeProducer) -> None:
    sink = make_sink(producer)
    await sink.start()
    await asyncio.sleep(0)
    assert not sink.ready()
    await sink.close()


async def test_librdkafka_refuses_an_oversized_message_synchronously() -> None:
    settings = make_settings(VIZ_KAFKA_BOOTSTRAP="127.0.0.1:1")
    producer = Producer({**producer_config(settings.kafka, settings.producer),
                         "message.max.bytes": 2000, "log_level": 0})
    sink = KafkaSink(settings.kafka, settings.producer, producer=producer, compiled=COMPILED[0])
    await sink.start()
    with pytest.raises(MessageTooLarge):
        sink.send(b"site", [b"x" * 5000])
    await sink.close()


def test_producer_settings_follow_the_spec() -> None:
    settings = make_settings(VIZ_COLLECT_COMPRESSION="zstd", VIZ_COLLECT_LINGER_MS="3",
                             VIZ_COLLECT_DELIVERY_TIMEOUT_S="4")
    config = producer_config(settings.kafka, settings.producer)
    # At least once (docs/decisions.md): a success report must always mean "appended".
    assert config["enable.idempotence"] is False
    assert config["acks"] == "all"
    assert config["max.in.flight.requests.per.connection"] == 5
    assert config["partitioner"] == "murmur2_random"
    assert config["compression.type"] == "zstd"
    assert config["linger.ms"] == 3
    assert config["message.timeout.ms"] == 4000
    assert config["queue.buffering.max.messages"] == 100_000


# -- send_to: the request path's form (a report callback instead of a future) ----------------

async def test_send_to_reports_once_when_every_message_is_acknowledged(
        producer: FakeProducer) -> None:
    sink = make_sink(producer)
    await sink.start()
    reports: list[object] = []
    sink.send_to(b"site", [b"a", b"b", b"c"], reports.append)
    assert reports == []  # never from inside send_to
    producer.poll()
    assert reports == [None]
    producer.poll()
    assert reports == [None]
    await sink.close()


async def test_send_to_reports_the_first_failure_once(producer: FakeProducer) -> None:
    sink = make_sink(producer)
    await sink.start()
    reports: list[object] = []
    producer.report_error = KafkaError(KafkaError.NOT_ENOUGH_REPLICAS)
    sink.send_to(b"site", [b"a", b"b"], reports.append)
    producer.poll()
    assert len(reports) == 1 and isinstance(reports[0], DeliveryFailed)
    await sink.close()


async def test_send_to_raises_synchronously_and_never_reports(producer: FakeProducer) -> None:
    sink = make_sink(producer, VIZ_COLLECT_MAX_QUEUE_MESSAGES="2")
    await sink.start()
    reports: list[object] = []
    with pytest.raises(QueueFull):
        sink.send_to(b"site", [b"a", b"b", b"c"], reports.append)
    producer.raise_with, producer.raise_after = BufferError("full"), 1
    with pytest.raises(QueueFull):
        sink.send_to(b"site", [b"a", b"b"], reports.append)
    producer.poll()  # the one queued message of the refused request reports: ignored
    await sink.close()
    assert reports == []


async def test_send_to_reports_a_timeout_at_the_delivery_deadline() -> None:
    class Silent(FakeProducer):
        def poll(self, timeout: float = 0) -> int:
            return 0

    sink = make_sink(Silent(), VIZ_COLLECT_DELIVERY_TIMEOUT_S="0.1",
                     VIZ_COLLECT_FLUSH_TIMEOUT_S="0.1")
    await sink.start()
    reported = asyncio.get_running_loop().create_future()
    sink.send_to(b"site", [b"a"], reported.set_result)
    assert isinstance(await asyncio.wait_for(reported, 2), DeliveryTimeout)
    await sink.close()


async def test_a_report_that_raises_does_not_stop_the_other_reports(
        producer: FakeProducer, caplog: pytest.LogCaptureFixture) -> None:
    sink = make_sink(producer)
    await sink.start()
    reports: list[object] = []

    def broken(outcome: object) -> None:
        raise RuntimeError("bug in a report callback")

    sink.send_to(b"site", [b"a"], broken)
    sink.send_to(b"site", [b"b"], reports.append)
    producer.poll()
    assert reports == [None]
    assert "delivery report callback raised" in caplog.text
    await sink.close()


async def test_memory_sink_send_to_reports_like_its_future() -> None:
    sink = MemorySink(acknowledge=False)
    reports: list[object] = []
    sink.send_to(b"site", [b"a"], reports.append)
    sink.send_to(b"site", [b"b"], reports.append)
    sink.release_last()
    sink.fail_pending(DeliveryFailed)
    await asyncio.sleep(0)
    assert reports[0] is None and isinstance(reports[1], DeliveryFailed)
    assert sink.messages == [(b"site", b"b")]
