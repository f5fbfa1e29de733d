"""viz-config under test: one migrated database for the session, emptied before each test.

Emptying (TRUNCATE) instead of creating a database per test keeps the suite fast; the
migration tests in tests/migrations are the ones that need a fresh database each.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from config_support import make_settings
from pg_support import execute, migrated_database

from viz.common.clock import ManualClock
from viz.config.app import create_app


@pytest.fixture(scope="session")
def config_database(pg_dsn: str) -> Iterator[str]:
    with migrated_database(pg_dsn, "config") as dsn:
        yield dsn


@pytest.fixture
async def config_dsn(config_database: str) -> str:
    """The DSN of the migrated test database, with no tenants, sites or tokens in it."""
    await execute(config_database, "TRUNCATE api_tokens, sites, tenants CASCADE")
    return config_database


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def client(aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
                 config_dsn: str, clock: ManualClock) -> TestClient:
    return await aiohttp_client(create_app(make_settings(config_dsn), clock=clock))
