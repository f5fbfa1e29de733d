"""Constants and helpers shared by the viz-cmp tests (imported by name, unlike conftest)."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from viz.cmp.settings import CmpSettings
from viz.common.clock import Clock, ManualClock
from viz.config.settings import ConfigSettings

ADMIN_TOKEN = "cmp-admin-token-for-tests-0123456789"  # noqa: S105
SERVICE_TOKEN = "cmp-service-token-for-tests-abcdefgh"  # noqa: S105
COOKIE_SECRET = "cmp-cookie-secret-for-tests-0123456789abcdef"  # noqa: S105
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SERVICE = {"Authorization": f"Bearer {SERVICE_TOKEN}"}
BID = "AbCdEfGhIjKlMnOpQrStUv"
OTHER_BID = "zzzzzzzzzzzzzzzzzzzzzz"
DOMAIN = "news.example"
ORIGIN = f"https://{DOMAIN}"
CMP_CONFIG = {"version": "2025-01", "texts": {"title": "Vos données", "accept": "OK"},
              "tiers": [0, 1, 2]}


def config_settings(dsn: str) -> ConfigSettings:
    return ConfigSettings.from_env({"VIZ_PG_DSN": dsn, "VIZ_ADMIN_TOKEN": ADMIN_TOKEN,
                                    "VIZ_SERVICE_TOKEN": SERVICE_TOKEN})


def cmp_settings(dsn: str, config_url: str, **extra: str) -> CmpSettings:
    return CmpSettings.from_env({"VIZ_PG_DSN": dsn, "VIZ_CONFIG_URL": config_url,
                                 "VIZ_SERVICE_TOKEN": SERVICE_TOKEN,
                                 "VIZ_CMP_COOKIE_SECRET": COOKIE_SECRET, **extra})


def expected_banner_hash(cmp_config: dict[str, Any]) -> str:
    """The documented definition, written out independently of viz.cmp.models."""
    canonical = json.dumps(cmp_config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def collect_token(key: bytes, bid: str, tid: str, at: float) -> str:
    """The token viz-collect's /init issues (SPEC §3), written out independently of viz._fast:
    hex(HMAC-SHA256(site key, bid + ":" + tid + ":" + floor(at / 300)))."""
    message = f"{bid}:{tid}:{math.floor(at / 300)}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


async def fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@dataclass
class Sites:
    """This test's tenant and the helper creating its sites through the admin API."""

    tid: str
    config_url: str
    client: TestClient
    clock: Clock = field(default_factory=ManualClock)
    """viz-cmp's clock: tokens are issued for the time it reads."""

    def sid(self, name: str) -> str:
        return f"{name}-{self.tid}"

    async def create(self, name: str = "news", **fields: Any) -> dict[str, Any]:
        body = {"sid": self.sid(name), "tid": self.tid, "domains": [DOMAIN],
                "features": {"collect": True, "cmp": True}, "cmp_config": CMP_CONFIG, **fields}
        return await self.admin("POST", "/admin/sites", body)

    async def record(self, sid: str) -> dict[str, Any]:
        """The site as viz-config gives it to services (keys included)."""
        async with self.client.session.get(f"{self.config_url}/internal/sites/{sid}",
                                           headers=SERVICE) as resp:
            assert resp.status == 200, await resp.text()
            return dict(await resp.json())

    async def keys(self, sid: str) -> tuple[bytes, bytes | None]:
        """The site's current and previous secret key."""
        keys = (await self.record(sid))["keys"]
        previous = keys["previous"]
        return bytes.fromhex(keys["current"]), bytes.fromhex(previous) if previous else None

    async def token(self, sid: str, bid: str, *, at: float | None = None,
                    key: bytes | None = None) -> str:
        """The token collect would issue now (or ``at``) for ``bid`` on ``sid``."""
        key = key if key is not None else (await self.keys(sid))[0]
        return collect_token(key, bid, self.tid, self.clock.time() if at is None else at)

    async def signed(self, body: dict[str, Any]) -> dict[str, Any]:
        """``body`` with the current token for its bid added, as the tracker sends it."""
        if body.get("bid") is None or "token" in body:
            return body
        return {**body, "token": await self.token(body["sid"], body["bid"])}

    async def admin(self, method: str, path: str, body: Any = None) -> Any:
        async with self.client.session.request(method, self.config_url + path, json=body,
                                               headers=ADMIN) as resp:
            assert resp.status < 300, await resp.text()
            return await resp.json()
