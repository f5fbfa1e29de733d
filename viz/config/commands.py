"""Plain async functions behind the ``viz`` CLI's site commands, reusing the store directly.

Each opens a small pool for the one call; only public fields are returned (never keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import asyncpg

from viz.common.clock import SystemClock
from viz.common.settings import PostgresSettings
from viz.common.sites import DEFAULT_FEATURES
from viz.config import models
from viz.config.settings import DEFAULT_KEY_GRACE_S
from viz.config.store import ConfigStore, open_pool


async def _with_store(dsn: str) -> tuple[asyncpg.Pool, ConfigStore]:
    pool = await open_pool(PostgresSettings(dsn=dsn, pool_min=1, pool_max=2,
                                            connect_timeout_s=5.0))
    return pool, ConfigStore(pool, clock=SystemClock(), key_grace_s=DEFAULT_KEY_GRACE_S)


async def create_site(dsn: str, *, sid: str, tid: str, name: str | None = None,
                      domains: Iterable[str] = (),
                      features: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """Create a site (and its tenant if new); validated exactly like ``POST /admin/sites``.

    Raises ``viz.common.web.HttpError`` subclasses with a user-facing message on bad input
    (``InvalidField``) or a taken sid (``SiteExists``).
    """
    body: dict[str, Any] = {"sid": sid, "tid": tid, "domains": list(domains),
                            "features": dict(features or DEFAULT_FEATURES)}
    if name is not None:
        body["name"] = name
    pool, store = await _with_store(dsn)
    try:
        site = await store.create_site(models.parse_new_site(body))
    finally:
        await pool.close()
    return site.to_json()


async def list_sites(dsn: str) -> list[dict[str, Any]]:
    pool, store = await _with_store(dsn)
    try:
        return [site.to_json() for site in await store.list_sites()]
    finally:
        await pool.close()
