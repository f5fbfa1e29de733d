"""``create_app``: the reporting API on a clickhouse-connect client and viz-config introspection."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from viz.analytics import handlers
from viz.analytics.settings import AnalyticsSettings
from viz.analytics.store import Reports
from viz.analytics.tokens import TokenIntrospector
from viz.common.clock import Clock, SystemClock
from viz.common.web import READY_CHECKS_KEY, create_base_app

OPENAPI = Path(__file__).parent / "openapi.yaml"


def create_app(settings: AnalyticsSettings, client: Any, *, clock: Clock | None = None,
               lock: threading.Lock | None = None) -> web.Application:
    """``client`` is a clickhouse-connect client; ``lock`` when it is a shared chDB engine."""
    clock = clock or SystemClock()
    app = create_base_app()
    reports = Reports(client, settings.clickhouse.database, lock=lock)
    app[handlers.REPORTS_KEY] = reports
    app[handlers.CLOCK_KEY] = clock
    app[handlers.MAX_RANGE_KEY] = settings.max_range_days

    async def http_session(app: web.Application) -> AsyncIterator[None]:
        session = aiohttp.ClientSession()
        app[handlers.TOKENS_KEY] = TokenIntrospector(
            settings.config, session, clock=clock, ttl_s=settings.token_cache_ttl_s)
        yield
        await session.close()

    async def query_threads(app: web.Application) -> AsyncIterator[None]:
        # ClickHouse clients block: queries run here, never on the event loop.
        executor = ThreadPoolExecutor(settings.query_threads, thread_name_prefix="viz-query")
        app[handlers.EXECUTOR_KEY] = executor
        yield
        executor.shutdown(wait=True, cancel_futures=True)

    app.cleanup_ctx.append(http_session)
    app.cleanup_ctx.append(query_threads)

    async def clickhouse_ready() -> None:
        await asyncio.get_running_loop().run_in_executor(app[handlers.EXECUTOR_KEY], reports.ping)

    app[READY_CHECKS_KEY]["clickhouse"] = clickhouse_ready

    async def openapi(request: web.Request) -> web.Response:
        return web.Response(body=OPENAPI.read_bytes(), content_type="application/yaml")

    app.router.add_get("/analytics/overview", handlers.overview)
    app.router.add_get("/analytics/timeseries", handlers.timeseries)
    app.router.add_get("/analytics/pages", handlers.pages)
    app.router.add_get("/analytics/referrers", handlers.referrers)
    app.router.add_get("/openapi.yaml", openapi)
    return app
