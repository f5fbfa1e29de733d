"""Constants and helpers shared by the viz-config tests (imported by name, unlike conftest)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from viz.config.settings import ConfigSettings

ADMIN_TOKEN = "admin-token-for-tests-0123456789"  # noqa: S105
SERVICE_TOKEN = "service-token-for-tests-abcdefgh"  # noqa: S105
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
GRACE_S = 900.0


def make_settings(dsn: str, **extra: str) -> ConfigSettings:
    return ConfigSettings.from_env({
        "VIZ_PG_DSN": dsn,
        "VIZ_ADMIN_TOKEN": ADMIN_TOKEN,
        "VIZ_SERVICE_TOKEN": SERVICE_TOKEN,
        "VIZ_CONFIG_KEY_GRACE_S": str(GRACE_S),
        **extra,
    })


async def create_site(client: TestClient, sid: str = "news-main", **fields: Any) -> dict:
    body = {"sid": sid, "tid": "news", "name": "News", "domains": ["news.example"], **fields}
    response = await client.post("/admin/sites", json=body, headers=ADMIN)
    assert response.status == 201, await response.text()
    return await response.json()
