"""The embedded engines behave like the real servers the platform relies on."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from viz.embedded import EmbeddedPostgres, EmbeddedRedis
from viz.embedded.kafka import CONSUMER_SESSION_TIMEOUT_MS


async def _query(dsn: str, sql: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def test_postgres_keeps_committed_data_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    server.start()
    try:
        asyncio.run(_query(server.dsn, "CREATE TABLE kept AS SELECT 42 AS answer"))
        server.stop()
        assert not server.running()
        server.start()
        assert asyncio.run(_query(server.dsn, "SELECT answer FROM kept")) == 42
    finally:
        server.stop()


def test_redis_keeps_writes_across_a_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        client.sadd("visited", "/a", "/b")
        client.close()
        server.stop()
        server.start()
        client = redis.Redis.from_url(server.url)
        assert client.smembers("visited") == {b"/a", b"/b"}
        client.close()
    finally:
        server.stop()


def test_broker_delivers_produced_messages_to_a_consumer_group(kafka_bootstrap: str) -> None:
    topic = f"smoke.{time.monotonic_ns()}"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "enable.idempotence": True,
                         "acks": "all"})
    delivered: list[object] = []
    for i in range(30):
        producer.produce(topic, key=f"k{i % 4}", value=f"v{i}",
                         on_delivery=lambda err, msg: delivered.append(err))
    assert producer.flush(10) == 0
    assert delivered == [None] * 30

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": CONSUMER_SESSION_TIMEOUT_MS})
    consumer.subscribe([topic])
    seen: set[bytes] = set()
    deadline = time.monotonic() + 30
    try:
        while len(seen) < 30 and time.monotonic() < deadline:
            for msg in consumer.consume(100, 0.5):
                if msg.error() is None:
                    seen.add(msg.value())
    finally:
        consumer.close()
    assert seen == {f"v{i}".encode() for i in range(30)}
