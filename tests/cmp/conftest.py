"""viz-cmp under test: a real viz-config (aiohttp test server) and real PostgreSQL.

One migrated database for the session. The ledger refuses TRUNCATE, so tests are isolated by
giving each its own tenant and sites (unique ids) instead of emptying tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cmp_support import Sites, cmp_settings, config_settings
from pg_support import migrated_database

from viz.cmp.app import create_app
from viz.common.clock import ManualClock
from viz.config.app import create_app as create_config_app


@pytest.fixture(scope="session")
def cmp_database(pg_dsn: str) -> Iterator[str]:
    with migrated_database(pg_dsn, "cmp") as dsn:
        yield dsn


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
async def sites(cmp: TestClient, config_url: str, clock: ManualClock) -> Sites:
    return Sites(tid="t" + uuid.uuid4().hex[:12], config_url=config_url, client=cmp, clock=clock)


@pytest.fixture
async def sid(sites: Sites) -> str:
    """A site with the consent banner on, domain news.example, cmp_config CMP_CONFIG."""
    return str((await sites.create())["sid"])
