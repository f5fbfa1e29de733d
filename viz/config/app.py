"""Builds the viz-config aiohttp application: admin API, internal lookup, OpenAPI document.

The admin and internal APIs are sub-applications, each behind its own bearer token, so a
service token never opens the admin API and the admin token never reads secret keys.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web

from viz.common.clock import Clock, SystemClock
from viz.common.pg import close_pool
from viz.common.web import READY_CHECKS_KEY, create_base_app
from viz.config import handlers, tags
from viz.config.handlers import OPENAPI_KEY, STORE_KEY
from viz.config.models import MAX_BODY_BYTES
from viz.config.settings import ConfigSettings
from viz.config.store import ConfigStore, open_pool

log = logging.getLogger(__name__)

SETTINGS_KEY = web.AppKey("viz_config_settings", ConfigSettings)
CLOCK_KEY = web.AppKey("viz_config_clock", Clock)



async def _postgres(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    pool = await open_pool(settings.postgres)
    store = ConfigStore(pool, clock=app[CLOCK_KEY], key_grace_s=settings.key_grace_s)
    app[STORE_KEY] = store
    app[READY_CHECKS_KEY]["postgres"] = store.ping
    yield
    await close_pool(pool)


def _admin_app(settings: ConfigSettings) -> web.Application:
    admin = web.Application(middlewares=[
        handlers.bearer_auth(settings.admin_token, realm="viz-admin", what="admin token")])
    admin.router.add_get("/sites", handlers.list_sites)
    admin.router.add_post("/sites", handlers.create_site)
    admin.router.add_get("/sites/{sid}", handlers.get_site)
    admin.router.add_patch("/sites/{sid}", handlers.update_site)
    admin.router.add_delete("/sites/{sid}", handlers.delete_site)
    admin.router.add_post("/sites/{sid}/rotate-key", handlers.rotate_key)
    admin.router.add_get("/tenants", handlers.list_tenants)
    admin.router.add_post("/tenants", handlers.create_tenant)
    admin.router.add_get("/tokens", handlers.list_tokens)
    admin.router.add_post("/tokens", handlers.create_token)
    admin.router.add_delete("/tokens/{id}", handlers.revoke_token)
    admin.router.add_get("/consent/{bid}", handlers.export_consent)
    return admin


def _internal_app(settings: ConfigSettings) -> web.Application:
    internal = web.Application(middlewares=[
        handlers.bearer_auth(settings.service_token, realm="viz-internal", what="service token")])
    internal.router.add_get("/sites/{sid}", handlers.internal_site)
    internal.router.add_post("/tokens/introspect", handlers.introspect_token)
    return internal


def create_app(settings: ConfigSettings, *, clock: Clock | None = None) -> web.Application:
    app = create_base_app(client_max_size=MAX_BODY_BYTES)
    app[SETTINGS_KEY] = settings
    app[CLOCK_KEY] = clock if clock is not None else SystemClock()
    app[OPENAPI_KEY] = resources.files("viz.config").joinpath("openapi.yaml").read_bytes()
    app.cleanup_ctx.append(_postgres)
    app.router.add_get("/openapi.yaml", handlers.openapi)
    app[handlers.PUBLIC_URLS_KEY] = settings.public.as_dict()
    try:
        app[handlers.TRACKER_KEY] = tags.TrackerBuild.load(settings.tracker_dir)
    except tags.TrackerBuildMissing as exc:
        # The admin and internal APIs still work; script requests answer 503 until fixed.
        log.error("%s", exc)
    sid = r"{sid:[A-Za-z0-9_-]{3,64}}"
    app.router.add_get(f"/viz/{sid}.js", handlers.config_script)
    if settings.demo_pages:
        app[handlers.DEMO_PAGE_KEY] = resources.files("viz.config").joinpath(
            "demo.html").read_text()
        app.router.add_get(f"/demo/{sid}", handlers.demo_page)
        app.router.add_get(f"/demo/{sid}/{{rest:.*}}", handlers.demo_page)
    app.router.add_get(f"/b/{{version:[0-9a-f]{{1,64}}}}/{sid}{{flavour:(?:\\.modern)?}}.js",
                       handlers.bundle)
    app.add_subapp("/admin", _admin_app(settings))
    app.add_subapp("/internal", _internal_app(settings))
    return app
