"""Collect through a real socket to the real embedded broker, read back with a consumer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest

from viz import _fast
from viz.collect.app import CollectDeps
from viz.collect.errors import CollectError
from viz.collect.metrics import CollectMetrics
from viz.collect.server import CollectServer
from viz.collect.sinks import KafkaSink, Report
from viz.common.clock import SystemClock
from viz.common.settings import KafkaSettings
from viz.common.site_directory import SiteDirectory
from viz.embedded import free_port

from .kafka_support import consume, fresh_topics, java_partition
from .support import ORIGIN, UA, FakeFetcher, make_settings, make_site, parse_responses

pytestmark = pytest.mark.slow

HEADERS = {"Origin": ORIGIN.decode(), "User-Agent": UA.decode()}


class SpySink:
    """Wraps the Kafka sink and remembers every send's outcome (a future it handed out, or
    the report a ``send_to`` was given, as a future)."""

    def __init__(self, inner: KafkaSink) -> None:
        self.inner = inner
        self.futures: list[asyncio.Future[None]] = []
        self.sent = asyncio.Event()

    def send(self, key: bytes, values: Sequence[bytes]) -> asyncio.Future[None]:
        future = self.inner.send(key, values)
        self.futures.append(future)
        self.sent.set()
        return future

    def send_to(self, key: bytes, values: Sequence[bytes], report: Report) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def spy(outcome: CollectError | None) -> None:
            if outcome is None:
                future.set_result(None)
            else:
                future.set_exception(outcome)
            report(outcome)

        self.inner.send_to(key, values, spy)
        self.futures.append(future)
        self.sent.set()

    def ready(self) -> bool:
        return self.inner.ready()

    def queued(self) -> int:
        return self.inner.queued()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()


async def start_server(kafka: KafkaSettings, *, delivery_timeout_s: float = 10.0,
                       ready_interval_s: float = 0.2) -> CollectServer:
    settings = make_settings(
        VIZ_COLLECT_HOST="127.0.0.1", VIZ_COLLECT_PORT=str(free_port()),
        VIZ_KAFKA_BOOTSTRAP=kafka.bootstrap, VIZ_KAFKA_TOPIC_RAW=kafka.topic_raw,
        VIZ_COLLECT_DELIVERY_TIMEOUT_S=str(delivery_timeout_s),
        VIZ_COLLECT_READY_CHECK_INTERVAL_S=str(ready_interval_s),
        VIZ_COLLECT_SHUTDOWN_TIMEOUT_S="10")
    clock = SystemClock()
    directory = SiteDirectory(FakeFetcher(make_site(), make_site("site-two")), clock=clock)
    sink = SpySink(KafkaSink(settings.kafka, settings.producer))
    server = CollectServer(settings, CollectDeps(directory, sink, clock, CollectMetrics()))
    await server.start()
    return server


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return fresh_topics(kafka_bootstrap)


@pytest.fixture
async def server(kafka: KafkaSettings) -> AsyncIterator[CollectServer]:
    server = await start_server(kafka)
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def wait_ready(http: aiohttp.ClientSession, base: str, timeout_s: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            async with http.get(base + "/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"{base} not ready before the deadline")
        await asyncio.sleep(0.05)


async def init(http: aiohttp.ClientSession, base: str, sid: str) -> dict:
    async with http.get(f"{base}/init?sid={sid}&tier=1", headers=HEADERS) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def collect_body(sid: str, ident: dict, ids: Sequence[str]) -> dict:
    now_ms = int(time.time() * 1000)
    return {"sid": sid, "bid": ident["bid"], "token": ident["token"],
            "events": [{"id": i, "t": "pageview", "p": "/" + i, "ts": now_ms} for i in ids]}


async def test_events_reach_kafka_keyed_by_site_in_the_java_partition(
        server: CollectServer, kafka: KafkaSettings, http: aiohttp.ClientSession) -> None:
    base = f"http://127.0.0.1:{server.port}"
    await wait_ready(http, base)
    sent: dict[str, list[str]] = {}
    for sid in ("site-one", "site-two"):
        ident = await init(http, base, sid)
        ids = [f"{sid}-ev-{n}" for n in range(3)]
        sent[sid] = ids
        async with http.post(base + "/collect", data=json.dumps(
                collect_body(sid, ident, ids)), headers=HEADERS) as resp:
            assert resp.status == 204, await resp.text()
            # 204 is written from the delivery callback: every report is in, and all OK.
            future = server.deps.sink.futures[-1]  # type: ignore[attr-defined]
            assert future.done() and future.exception() is None

    messages = await consume(kafka, 6)
    assert len(messages) == 6
    for sid, ids in sent.items():
        mine = [m for m in messages if m.key == sid.encode()]
        assert {m.partition for m in mine} == {java_partition(sid.encode())}
        envelopes = [_fast.decode_envelope(m.value) for m in mine]
        assert [e.id for e in envelopes] == ids  # one partition keeps the site's order
        assert all(e.sid == sid and e.tier == 1 and e.ua == UA.decode() for e in envelopes)


async def test_pipelined_requests_over_a_real_socket_come_back_in_order(
        server: CollectServer, kafka: KafkaSettings, http: aiohttp.ClientSession) -> None:
    base = f"http://127.0.0.1:{server.port}"
    await wait_ready(http, base)
    ident = await init(http, base, "site-one")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    raw = b""
    for n in range(3):
        body = json.dumps(collect_body("site-one", ident, [f"pipelined-{n}"])).encode()
        raw += (b"POST /collect HTTP/1.1\r\nHost: x\r\nOrigin: %s\r\nUser-Agent: %s\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (ORIGIN, UA, len(body), body))
        raw += b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    writer.write(raw)
    data = b""
    while len(parse_responses(data)) < 6:
        chunk = await asyncio.wait_for(reader.read(65536), 15)
        assert chunk, "connection closed early"
        data += chunk
    assert [r.status for r in parse_responses(data)] == [204, 200] * 3
    writer.close()
    await writer.wait_closed()
    assert len(await consume(kafka, 3)) == 3


async def test_unreachable_broker_answers_503_with_retry_after_never_204(
        http: aiohttp.ClientSession) -> None:
    dead = KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", topic_raw="viz.traffic.raw",
                         topic_dlq="viz.traffic.dlq", partitions=12)
    server = await start_server(dead, delivery_timeout_s=0.5)
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(base + "/readyz") as resp:
            assert resp.status == 503
        ident = await init(http, base, "site-one")
        async with http.post(base + "/collect", headers=HEADERS, data=json.dumps(
                collect_body("site-one", ident, ["never-acked"]))) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"]["code"] == "delivery_timeout"
    finally:
        await server.stop()


async def test_graceful_stop_answers_the_request_in_flight_and_flushes(
        kafka: KafkaSettings, http: aiohttp.ClientSession) -> None:
    server = await start_server(kafka)
    base = f"http://127.0.0.1:{server.port}"
    try:
        await wait_ready(http, base)
        ident = await init(http, base, "site-one")
        body = json.dumps(collect_body("site-one", ident, ["in-flight-1"]))
        request = asyncio.ensure_future(http.post(base + "/collect", headers=HEADERS, data=body))
        await asyncio.wait_for(server.deps.sink.sent.wait(), 10)  # type: ignore[attr-defined]
        stopping = asyncio.ensure_future(server.stop())
        resp = await asyncio.wait_for(request, 15)
        assert resp.status == 204
        resp.release()
        await asyncio.wait_for(stopping, 15)
    finally:
        await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http.get(base + "/healthz"):
            pass
    messages = await consume(kafka, 1)
    assert [_fast.decode_envelope(m.value).id for m in messages] == ["in-flight-1"]

