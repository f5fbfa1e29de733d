"""Reading what collect produced back from a real broker, and Java-compatible placement."""

from __future__ import annotations

import asyncio
import ctypes
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from viz import _fast
from viz.common.settings import KafkaSettings
from viz.embedded.kafka import CONSUMER_SESSION_TIMEOUT_MS
from viz.migrations.kafka import ensure_topics

PARTITIONS = 12


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2`` (the Java client's default partitioner hash)."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    tail = length & ~3
    extra = length % 4
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int = PARTITIONS) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def fresh_topics(bootstrap: str) -> KafkaSettings:
    """A raw/DLQ topic pair of its own, so tests never read each other's events."""
    suffix = uuid.uuid4().hex[:10]
    settings = KafkaSettings(bootstrap=bootstrap, topic_raw=f"viz.traffic.raw.{suffix}",
                             topic_dlq=f"viz.traffic.dlq.{suffix}", partitions=PARTITIONS)
    ensure_topics(settings)
    return settings


@dataclass
class Consumed:
    key: bytes
    value: bytes
    partition: int


def _reader(kafka: KafkaSettings) -> Consumer:
    """A consumer of every partition of the raw topic from the beginning (explicit assignment:
    no group rebalance to wait for)."""
    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap,
        "group.id": "collect-tests-" + uuid.uuid4().hex[:8],
        "session.timeout.ms": CONSUMER_SESSION_TIMEOUT_MS,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    consumer.assign([TopicPartition(kafka.topic_raw, p, OFFSET_BEGINNING)
                     for p in range(kafka.partitions)])
    return consumer


def _consume(kafka: KafkaSettings, expected: int, timeout_s: float) -> list[Consumed]:
    consumer = _reader(kafka)
    try:
        out: list[Consumed] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            out.append(Consumed(msg.key(), msg.value(), msg.partition()))
        return out
    finally:
        consumer.close()


async def consume(kafka: KafkaSettings, expected: int, timeout_s: float = 20.0) -> list[Consumed]:
    """At least ``expected`` messages of the raw topic (or fewer if the deadline passes)."""
    return await asyncio.to_thread(_consume, kafka, expected, timeout_s)



def _read_ids(kafka: KafkaSettings, wanted: set[str], timeout_s: float) -> set[str]:
    consumer = _reader(kafka)
    try:
        seen: set[str] = set()
        deadline = time.monotonic() + timeout_s
        while not wanted <= seen and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            seen.add(_fast.decode_envelope(msg.value()).id)
        return seen
    finally:
        consumer.close()


async def read_ids(kafka: KafkaSettings, wanted: set[str], timeout_s: float = 30.0) -> set[str]:
    """Event ids in the raw topic, read from the start until all of ``wanted`` were seen or
    the deadline passed. (Not "up to the high watermark": Tansu 0.6.0 reports the last batch's
    base offset + 1 as the high watermark, so the rest of that batch would be missed.)"""
    return await asyncio.to_thread(_read_ids, kafka, wanted, timeout_s)


def inject_fatal_error(producer: Any, code: int = KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER) -> None:
    """Raise a real fatal error inside ``producer``'s librdkafka (``rd_kafka_test_fatal_error``,
    librdkafka's own test hook), as the broker-desynchronised idempotent producer of issue 11
    did: from then on its ``poll`` raises it and nothing it holds is delivered."""
    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    lib = ctypes.CDLL(str(next(libs.glob("librdkafka*.so*"))))  # the one cimpl already loaded
    lib.rd_kafka_name.restype = ctypes.c_char_p
    lib.rd_kafka_name.argtypes = [ctypes.c_void_p]
    lib.rd_kafka_test_fatal_error.restype = ctypes.c_int
    lib.rd_kafka_test_fatal_error.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p]
    # confluent-kafka's Handle struct: PyObject_HEAD, then the rd_kafka_t pointer.
    rk = ctypes.c_void_p.from_address(id(producer) + 2 * ctypes.sizeof(ctypes.c_void_p)).value
    name = lib.rd_kafka_name(rk)
    assert name is not None and name.startswith(b"viz-collect#producer-"), name
    assert lib.rd_kafka_test_fatal_error(rk, code, b"injected by a test") == 0
