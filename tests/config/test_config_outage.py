"""A PostgreSQL outage is a 503 with Retry-After, and the service recovers without a restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from config_support import ADMIN, SERVICE, create_site, make_settings

from viz.config.app import create_app
from viz.embedded import EmbeddedPostgres
from viz.migrations.postgres import migrate_postgres

pytestmark = pytest.mark.slow

Client = Callable[[web.Application], Awaitable[TestClient]]


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "pg", durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def _assert_unavailable(client: TestClient) -> None:
    for method, path, headers in (("GET", "/admin/sites", ADMIN),
                                  ("POST", "/admin/sites/news-main/rotate-key", ADMIN),
                                  ("GET", "/internal/sites/news-main", SERVICE)):
        response = await client.request(method, path, headers=headers)
        assert response.status == 503, (path, await response.text())
        assert response.headers["Retry-After"] == "1"
        assert (await response.json())["error"] == {
            "code": "unavailable",
            "message": "the configuration database is unavailable; retry shortly"}
    ready = await client.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["postgres"].startswith("unavailable")


async def test_survives_a_postgres_restart(aiohttp_client: Client,
                                           private_pg: EmbeddedPostgres) -> None:
    await migrate_postgres(private_pg.dsn)
    client = await aiohttp_client(create_app(make_settings(private_pg.dsn)))
    await create_site(client)

    private_pg.stop()
    await _assert_unavailable(client)

    private_pg.start()
    response = await client.get("/admin/sites/news-main", headers=ADMIN)
    assert response.status == 200, await response.text()
    assert (await client.get("/internal/sites/news-main", headers=SERVICE)).status == 200
    assert (await client.get("/readyz")).status == 200
    await create_site(client, "after-restart")


async def test_starts_while_postgres_is_down_and_serves_once_it_is_up(
        aiohttp_client: Client, private_pg: EmbeddedPostgres) -> None:
    await migrate_postgres(private_pg.dsn)
    private_pg.stop()

    client = await aiohttp_client(create_app(make_settings(private_pg.dsn)))
    assert (await client.get("/healthz")).status == 200
    await _assert_unavailable(client)

    private_pg.start()
    assert (await client.get("/readyz")).status == 200
    await create_site(client)
