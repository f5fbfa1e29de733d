"""A producer that can no longer deliver is replaced: what was in flight gets 503, the
recreation is counted, and /readyz says 503 until the new producer delivered something.

The fatal error is librdkafka's own (``rd_kafka_test_fatal_error``, the hook its test suite
uses), raised inside the producer collect really runs, against a real broker.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from viz.collect.server import CollectServer
from viz.collect.sinks import KafkaSink
from viz.common.settings import KafkaSettings
from viz.embedded import EmbeddedKafka

from .broker_support import broker_pid, own_broker, start_collect
from .kafka_support import fresh_topics, inject_fatal_error, read_ids
from .test_kafka import HEADERS, collect_body, init, wait_ready

pytestmark = pytest.mark.slow

DELIVERY_TIMEOUT_S = 10.0
"""Long, so that a quick 503 can only come from the recreation."""


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedKafka]:
    with own_broker(tmp_path / "kafka") as server:
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def status_of(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(url) as resp:
        return resp.status


async def metric(http: aiohttp.ClientSession, base: str, sample: str) -> float:
    async with http.get(base + "/metrics") as resp:
        text = await resp.text()
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{sample} not exported")


async def post(http: aiohttp.ClientSession, base: str, ident: dict,
               ids: list[str]) -> tuple[int, str | None]:
    async with http.post(base + "/collect", headers=HEADERS, data=json.dumps(
            collect_body("site-one", ident, ids))) as resp:
        code = (await resp.json())["error"]["code"] if resp.status == 503 else None
        return resp.status, code


def sink_of(server: CollectServer) -> KafkaSink:
    sink = server.deps.sink
    assert isinstance(sink, KafkaSink)
    return sink


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled-sender", "python-sender"])
async def test_a_fatal_producer_error_fails_what_is_in_flight_and_recreates_the_producer(
        broker: EmbeddedKafka, http: aiohttp.ClientSession, compiled: bool) -> None:
    kafka = fresh_topics(broker.bootstrap)
    # The probe runs once at start and then sleeps: readiness can only come back by a produce.
    server = await start_collect(kafka, delivery_timeout_s=DELIVERY_TIMEOUT_S,
                                 ready_interval_s=300, compiled=compiled)
    loop = asyncio.get_running_loop()
    pid = broker_pid(broker)
    try:
        base = f"http://127.0.0.1:{server.port}"
        await wait_ready(http, base)
        ident = await init(http, base, "site-one")
        assert await post(http, base, ident, ["before-fatal-1"]) == (204, None)
        sink = sink_of(server)
        broken = sink.producer

        os.kill(pid, signal.SIGSTOP)  # holds the next request in flight
        try:
            in_flight = asyncio.ensure_future(post(http, base, ident, ["in-flight-1"]))
            deadline = loop.time() + 5
            while sink.queued() == 0:
                assert loop.time() < deadline, "the request never reached the producer"
                await asyncio.sleep(0.01)
            sent_at = loop.time()
            inject_fatal_error(broken)
            assert await asyncio.wait_for(in_flight, 5) == (503, "delivery_failed")
            assert loop.time() - sent_at < DELIVERY_TIMEOUT_S / 2  # not its deadline
            assert sink.producer is not broken
            assert sink.recreated == {"fatal": 1, "poll_error": 0}
            assert await status_of(http, base + "/readyz") == 503
            assert await metric(http, base,
                                'viz_collect_producer_recreated_total{reason="fatal"}') == 1
            assert await metric(http, base, "viz_collect_producer_recovering") == 1
        finally:
            os.kill(pid, signal.SIGCONT)

        # The broker answers again, but nothing was produced yet: still not ready.
        assert await status_of(http, base + "/readyz") == 503
        # The tracker resends the same ids; the new producer delivers them.
        assert await post(http, base, ident, ["in-flight-1"]) == (204, None)
        assert await status_of(http, base + "/readyz") == 200
        assert await metric(http, base, "viz_collect_producer_recovering") == 0
        assert await post(http, base, ident, ["after-fatal-1", "after-fatal-2"]) == (204, None)
        assert sink.recreated == {"fatal": 1, "poll_error": 0}
    finally:
        await server.stop()
    wanted = {"before-fatal-1", "in-flight-1", "after-fatal-1", "after-fatal-2"}
    assert await read_ids(kafka, wanted) >= wanted


def dead_letters(kafka: KafkaSettings) -> list[tuple[bytes | None, list]]:
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "enable.auto.commit": False,
                         "group.id": "collect-tests-" + uuid.uuid4().hex[:8]})
    try:
        consumer.assign([TopicPartition(kafka.topic_dlq, 0, OFFSET_BEGINNING)])
        msg = None
        for _ in range(50):
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                return [(msg.key(), msg.headers() or [])]
        return []
    finally:
        consumer.close()


async def test_without_traffic_a_canary_message_proves_the_recreated_producer(
        kafka_bootstrap: str, http: aiohttp.ClientSession) -> None:
    # Behind a load balancer that honours /readyz, no request would come to prove it.
    kafka = fresh_topics(kafka_bootstrap)
    server = await start_collect(kafka, delivery_timeout_s=DELIVERY_TIMEOUT_S,
                                 ready_interval_s=0.2)
    try:
        base = f"http://127.0.0.1:{server.port}"
        await wait_ready(http, base)
        sink = sink_of(server)
        broken = sink.producer
        inject_fatal_error(broken)  # the probe's poll raises it: no request is in flight
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while sink.producer is broken:
            assert loop.time() < deadline, "the producer was not recreated"
            await asyncio.sleep(0.05)
        assert sink.recreated["fatal"] == 1
        await wait_ready(http, base, timeout_s=10)
        assert not sink.recovering
    finally:
        await server.stop()
    letters = await asyncio.to_thread(dead_letters, kafka)
    assert letters == [(b"viz-collect-canary", [("viz-canary", b"producer-recreated")])]
