"""Builds the viz-cmp aiohttp application: consent API, ops routes, OpenAPI document.

Resources, one ``cleanup_ctx`` each: the PostgreSQL pool (consent tables) and the HTTP session
behind the :class:`SiteDirectory` (sites from viz-config's internal API).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from importlib import resources

import aiohttp
from aiohttp import web

from viz.cmp import handlers
from viz.cmp.cookie import ConsentCookies
from viz.cmp.handlers import (
    CLOCK_KEY,
    CMP_METRICS_KEY,
    COOKIES_KEY,
    DIRECTORY_KEY,
    OPENAPI_KEY,
    STORE_KEY,
)
from viz.cmp.metrics import CmpMetrics
from viz.cmp.models import MAX_BODY_BYTES
from viz.cmp.settings import CmpSettings
from viz.cmp.store import ConsentStore, open_pool
from viz.common.clock import Clock, SystemClock
from viz.common.pg import close_pool
from viz.common.site_directory import SiteDirectory
from viz.common.web import METRICS_KEY, READY_CHECKS_KEY, create_base_app

log = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("viz_cmp_settings", CmpSettings)



async def _postgres(app: web.Application) -> AsyncIterator[None]:
    pool = await open_pool(app[SETTINGS_KEY].postgres)
    store = ConsentStore(pool)
    app[STORE_KEY] = store
    app[READY_CHECKS_KEY]["postgres"] = store.ping
    yield
    await close_pool(pool)


async def _sites(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY].config
    session = aiohttp.ClientSession()
    directory = SiteDirectory.from_settings(settings, session, app[CLOCK_KEY])
    app[DIRECTORY_KEY] = directory
    health_url = settings.url.rstrip("/") + "/healthz"
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)

    async def config_reachable() -> None:
        async with session.get(health_url, timeout=timeout, allow_redirects=False) as resp:
            if resp.status != 200:
                raise ConnectionError(f"viz-config answered {resp.status}")

    app[READY_CHECKS_KEY]["config"] = config_reachable
    yield
    await directory.close()
    await session.close()


def create_app(settings: CmpSettings, *, clock: Clock | None = None) -> web.Application:
    app = create_base_app(client_max_size=MAX_BODY_BYTES)
    app.middlewares.append(handlers.cmp_headers)
    app[SETTINGS_KEY] = settings
    app[CLOCK_KEY] = clock if clock is not None else SystemClock()
    app[COOKIES_KEY] = ConsentCookies(settings.cookie_keys(), settings.cookie_max_age_s)
    app[CMP_METRICS_KEY] = CmpMetrics(app[METRICS_KEY])
    app[OPENAPI_KEY] = resources.files("viz.cmp").joinpath("openapi.yaml").read_bytes()
    app.cleanup_ctx.append(_postgres)
    app.cleanup_ctx.append(_sites)
    app.router.add_get("/openapi.yaml", handlers.openapi)
    app.router.add_post("/cmp/consent", handlers.consent)
    app.router.add_get("/cmp/status", handlers.status, allow_head=False)
    app.router.add_route("OPTIONS", "/cmp/consent", handlers.preflight)
    app.router.add_route("OPTIONS", "/cmp/status", handlers.preflight)
    return app
