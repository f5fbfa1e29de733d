"""Collect with its real neighbours: viz-config on PostgreSQL as the site source, the broker.

One test runs collect in-process (to move its clock through a config outage); the other runs
``viz serve collect --workers 2`` as a real process tree and stops it with SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from viz import _fast
from viz.collect.app import CollectDeps
from viz.collect.metrics import CollectMetrics
from viz.collect.server import CollectServer
from viz.collect.sinks import KafkaSink
from viz.common.clock import ManualClock
from viz.common.settings import KafkaSettings
from viz.common.site_directory import SiteDirectory
from viz.config.app import create_app
from viz.config.settings import ConfigSettings
from viz.embedded import free_port
from viz.migrations.postgres import migrate_postgres

from .kafka_support import consume, fresh_topics, java_partition
from .support import UA, make_settings

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "collect-e2e-admin-token-0123456789"  # noqa: S105
SERVICE_TOKEN = "collect-e2e-service-token-abcdefgh"  # noqa: S105
ORIGIN = "https://www.news.example"
HEADERS = {"Origin": ORIGIN, "User-Agent": UA.decode()}


@dataclass
class ConfigService:
    url: str
    runner: web.AppRunner

    async def stop(self) -> None:
        await self.runner.cleanup()


@pytest.fixture
async def config(pg_database: str) -> AsyncIterator[ConfigService]:
    await migrate_postgres(pg_database)
    settings = ConfigSettings.from_env({"VIZ_PG_DSN": pg_database, "VIZ_ADMIN_TOKEN": ADMIN_TOKEN,
                                        "VIZ_SERVICE_TOKEN": SERVICE_TOKEN})
    runner = web.AppRunner(create_app(settings))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    service = ConfigService(f"http://127.0.0.1:{port}", runner)
    async with aiohttp.ClientSession() as http:
        for sid in ("news-main", "news-sport"):
            async with http.post(service.url + "/admin/sites",
                                 headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                                 json={"sid": sid, "tid": "news", "name": sid,
                                       "domains": ["news.example"]}) as resp:
                assert resp.status == 201, await resp.text()
    try:
        yield service
    finally:
        await service.stop()


@pytest.fixture
def kafka(kafka_bootstrap: str) -> KafkaSettings:
    return fresh_topics(kafka_bootstrap)


def collect_env(config: ConfigService, kafka: KafkaSettings, port: int) -> dict[str, str]:
    return {"VIZ_COLLECT_HOST": "127.0.0.1", "VIZ_COLLECT_PORT": str(port),
            "VIZ_KAFKA_BOOTSTRAP": kafka.bootstrap, "VIZ_KAFKA_TOPIC_RAW": kafka.topic_raw,
            "VIZ_CONFIG_URL": config.url, "VIZ_SERVICE_TOKEN": SERVICE_TOKEN,
            "VIZ_SITE_CACHE_TTL_S": "60", "VIZ_COLLECT_READY_CHECK_INTERVAL_S": "0.2",
            "VIZ_LOG_LEVEL": "WARNING"}


async def wait_for_status(http: aiohttp.ClientSession, url: str, status: int,
                          timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        try:
            async with http.get(url) as resp:
                if resp.status == status:
                    return
        except aiohttp.ClientError:
            pass
        if loop.time() > deadline:
            raise AssertionError(f"{url} did not answer {status} before the deadline")
        await asyncio.sleep(0.05)


async def visit(http: aiohttp.ClientSession, base: str, sid: str, event_id: str,
                now_ms: int) -> int:
    """What the tracker does: /init, then one pageview; returns the /collect status."""
    async with http.get(f"{base}/init?sid={sid}&tier=1", headers=HEADERS) as resp:
        assert resp.status == 200, await resp.text()
        ident = await resp.json()
    body = {"sid": sid, "bid": ident["bid"], "token": ident["token"],
            "events": [{"id": event_id, "t": "pageview", "p": "/", "ts": now_ms}]}
    async with http.post(f"{base}/collect", data=json.dumps(body), headers=HEADERS) as resp:
        return resp.status


async def test_collect_serves_sites_from_viz_config_and_survives_its_outage(
        config: ConfigService, kafka: KafkaSettings) -> None:
    settings = make_settings(**collect_env(config, kafka, free_port()))
    clock = ManualClock(start=time.time())
    async with aiohttp.ClientSession() as session:
        directory = SiteDirectory.from_settings(settings.config_client, session, clock)
        server = CollectServer(settings, CollectDeps(
            directory, KafkaSink(settings.kafka, settings.producer), clock, CollectMetrics()))
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            async with aiohttp.ClientSession() as http:
                await wait_for_status(http, base + "/readyz", 200)
                now_ms = int(clock.time() * 1000)
                assert await visit(http, base, "news-main", "first-visit", now_ms) == 204

                await config.stop()  # viz-config (and with it PostgreSQL) is gone
                clock.advance(120)  # past the cache TTL: the site is stale, refreshes fail
                now_ms = int(clock.time() * 1000)
                assert await visit(http, base, "news-main", "during-outage", now_ms) == 204
                async with http.get(f"{base}/init?sid=news-sport&tier=1",
                                    headers=HEADERS) as resp:
                    assert resp.status == 503  # never cached: collect cannot know it
                    assert resp.headers["Retry-After"] == "1"
                    assert (await resp.json())["error"]["code"] == "config_unavailable"
                assert directory.fetch_errors >= 1
        finally:
            await server.stop()
            await directory.close()

    messages = await consume(kafka, 2)
    envelopes = [_fast.decode_envelope(m.value) for m in messages]
    assert sorted(e.id for e in envelopes) == ["during-outage", "first-visit"]
    assert {(m.key, m.partition) for m in messages} == {
        (b"news-main", java_partition(b"news-main"))}
    assert {e.tid for e in envelopes} == {"news"}


async def test_viz_serve_collect_with_workers_stops_cleanly_on_sigterm(
        config: ConfigService, kafka: KafkaSettings) -> None:
    port = free_port()
    env = {**os.environ, **collect_env(config, kafka, port)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "viz", "serve", "collect", "--workers", "2", env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            await wait_for_status(http, base + "/readyz", 200)
            now_ms = int(time.time() * 1000)
            for n in range(4):  # new connections: SO_REUSEPORT spreads them over the workers
                async with aiohttp.ClientSession() as fresh:
                    assert await visit(fresh, base, "news-main", f"worker-visit-{n}",
                                       now_ms) == 204
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    messages = await consume(kafka, 4)
    assert sorted(_fast.decode_envelope(m.value).id for m in messages) == [
        f"worker-visit-{n}" for n in range(4)]


async def test_a_linker_is_verified_with_the_source_sites_key_from_viz_config(
        config: ConfigService, kafka: KafkaSettings) -> None:
    """A visitor follows a decorated link from news-main to news-sport (same tenant, keys held
    by viz-config): news-sport's /init adopts the BID and its events carry it. A linker from a
    site of another tenant is refused and a new BID issued; neither request fails."""
    async with aiohttp.ClientSession() as http:
        async with http.post(config.url + "/admin/sites",
                             headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
                             json={"sid": "other-shop", "tid": "other", "name": "other-shop",
                                   "domains": ["news.example"]}) as resp:
            assert resp.status == 201, await resp.text()
    settings = make_settings(**collect_env(config, kafka, free_port()))
    clock = ManualClock(start=time.time())
    metrics = CollectMetrics()
    async with aiohttp.ClientSession() as session:
        directory = SiteDirectory.from_settings(settings.config_client, session, clock)
        server = CollectServer(settings, CollectDeps(
            directory, KafkaSink(settings.kafka, settings.producer), clock, metrics))
        await server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            # No cookie jar: each domain's collect is first-party, its cookie stays there.
            async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as http:
                await wait_for_status(http, base + "/readyz", 200)

                async def init(sid: str, lk: str = "") -> dict[str, str]:
                    async with http.get(f"{base}/init?sid={sid}&tier=1{lk and '&lk=' + lk}",
                                        headers=HEADERS) as resp:
                        assert resp.status == 200, await resp.text()
                        return dict(await resp.json())

                source = await init("news-main")
                clock.advance(20)  # reading, then a click on the link to news-sport
                lk = f"{source['bid']}.{int(clock.time())}.{source['token']}.news-main"
                clock.advance(2)
                adopted = await init("news-sport", lk)
                assert adopted["bid"] == source["bid"]
                body = {"sid": "news-sport", "bid": adopted["bid"], "token": adopted["token"],
                        "events": [{"id": "after-the-link", "t": "pageview", "p": "/",
                                    "ts": int(clock.time() * 1000)}]}
                async with http.post(f"{base}/collect", data=json.dumps(body),
                                     headers=HEADERS) as resp:
                    assert resp.status == 204, await resp.text()

                foreign = await init("other-shop")
                lk = f"{foreign['bid']}.{int(clock.time())}.{foreign['token']}.other-shop"
                assert (await init("news-sport", lk))["bid"] != foreign["bid"]
        finally:
            await server.stop()
            await directory.close()

    sample = metrics.registry.get_sample_value
    assert sample("viz_collect_linker_adopted_total") == 1
    assert sample("viz_collect_linker_refused_total", {"reason": "other_tenant"}) == 1
    [message] = await consume(kafka, 1)
    envelope = _fast.decode_envelope(message.value)
    assert (envelope.id, envelope.sid, envelope.bid) == ("after-the-link", "news-sport",
                                                         source["bid"])
