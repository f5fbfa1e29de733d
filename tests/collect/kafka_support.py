"""Reading what collect produced back from a real broker, and Java-compatible placement."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

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


def _consume(kafka: KafkaSettings, expected: int, timeout_s: float) -> list[Consumed]:
    consumer = Consumer({
        "bootstrap.servers": kafka.bootstrap,
        "group.id": "collect-tests-" + uuid.uuid4().hex[:8],
        "session.timeout.ms": CONSUMER_SESSION_TIMEOUT_MS,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
    })
    try:
        # Explicit assignment: no group rebalance to wait for.
        consumer.assign([TopicPartition(kafka.topic_raw, p, OFFSET_BEGINNING)
                         for p in range(kafka.partitions)])
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
