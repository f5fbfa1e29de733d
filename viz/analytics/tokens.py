"""API token checks: viz-config introspects a presented token; answers are cached briefly.

The cache key is the token's SHA-256, so plain tokens are not kept in memory. A revoked token
stops working within ``ttl_s`` (``VIZ_ANALYTICS_TOKEN_CACHE_TTL_S``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import aiohttp

from viz.common.clock import Clock
from viz.common.errors import UnavailableError
from viz.common.settings import ConfigClientSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Grant:
    token_id: str
    sites: frozenset[str]


class TokenIntrospector:
    def __init__(self, settings: ConfigClientSettings, session: aiohttp.ClientSession, *,
                 clock: Clock, ttl_s: float, max_entries: int = 10_000) -> None:
        self.settings = settings
        self.session = session
        self.clock = clock
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[bytes, tuple[float, Grant | None]] = {}

    async def grant(self, token: str) -> Grant | None:
        """The sites a token may read, or None for an unknown or revoked token.

        Raises ``UnavailableError`` when viz-config cannot answer (the handler says 503).
        """
        key = hashlib.sha256(token.encode()).digest()
        now = self.clock.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._introspect(token)
        if len(self._cache) >= self.max_entries:
            self._cache.clear()  # rare: a flood of distinct tokens; correctness is unaffected
        self._cache[key] = (now + self.ttl_s, found)
        return found

    async def _introspect(self, token: str) -> Grant | None:
        url = self.settings.url.rstrip("/") + "/internal/tokens/introspect"
        headers = {"Authorization": f"Bearer {self.settings.service_token.reveal()}"}
        try:
            async with self.session.post(
                    url, json={"token": token}, headers=headers,
                    timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise UnavailableError(f"token introspection answered {resp.status}")
                body = await resp.json()
                return Grant(str(body["token_id"]), frozenset(str(s) for s in body["sites"]))
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            raise UnavailableError(f"token introspection failed: {type(exc).__name__}") from None
