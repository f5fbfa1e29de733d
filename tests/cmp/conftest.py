"""viz-cmp under test: a real viz-config (aiohttp test server) and real PostgreSQL.

One migrated database for the session. The ledger refuses TRUNCATE, so tests are isolated by
giving each its own tenant and sites (unique ids) instead of emptying tables.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cmp_support import Sites, cmp_settings, config_settings

from viz.cmp.app import create_app
from viz.common.clock import ManualClock
from viz.config.app import create_app as create_config_app
from viz.migrations.postgres import migrate_postgres


async def _execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def cmp_database(pg_dsn: str) -> Iterator[str]:
    name = "t_cmp_" + uuid.uuid4().hex[:12]
    asyncio.run(_execute(pg_dsn, f'CREATE DATABASE "{name}"'))
    dsn = pg_dsn.rpartition("/")[0] + "/" + name
    asyncio.run(migrate_postgres(dsn))
    try:
        yield dsn
    finally:
        asyncio.run(_execute(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def config_url(cmp_database: str,
                     aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    server = await aiohttp_server(create_config_app(config_settings(cmp_database)))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def cmp(aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
              cmp_database: str, config_url: str, clock: ManualClock) -> TestClient:
    return await aiohttp_client(create_app(cmp_settings(cmp_database, config_url), clock=clock))


@pytest.fixture
async def sites(cmp: TestClient, config_url: str) -> Sites:
    return Sites(tid="t" + uuid.uuid4().hex[:12], config_url=config_url, client=cmp)


@pytest.fixture
async def sid(sites: Sites) -> str:
    """A site with the consent banner on, domain news.example, cmp_config CMP_CONFIG."""
    return str((await sites.create())["sid"])
