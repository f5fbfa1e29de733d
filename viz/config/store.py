"""All of viz-config's SQL: sites, tenants and API tokens in PostgreSQL, through an asyncpg pool.

Parameters are always bound. Timestamps come from the injected clock, so key expiry can be tested
by moving a ``ManualClock``. A lost or refused connection becomes :class:`viz.common.pg.StoreUnavailable`
(HTTP 503), never a 500: the pool reconnects by itself once PostgreSQL is back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from viz.common.clock import Clock
from viz.common.pg import guarded
from viz.common.pg import open_pool as open_common_pool
from viz.common.settings import PostgresSettings
from viz.common.sites import SiteRecord
from viz.common.web import Conflict
from viz.config.models import (
    ApiToken,
    InvalidField,
    NewSite,
    NewTenant,
    NewToken,
    Site,
    SiteNotFound,
    SitePatch,
    Tenant,
    TokenNotFound,
    TokenScope,
)

log = logging.getLogger(__name__)

KEY_BYTES = 32
TOKEN_PREFIX = "vzt_"  # noqa: S105 -- a public marker, not a secret
_TOKEN_CHARS = len(TOKEN_PREFIX) + 43  # 32 bytes in unpadded base64url
_DISPLAY_PREFIX_CHARS = len(TOKEN_PREFIX) + 8
# Writing last_used_at on every analytics request would turn reads into writes; minute
# precision is enough to tell a live token from a forgotten one.
_LAST_USED_RESOLUTION = timedelta(seconds=60)
class SiteExists(Conflict):
    def __init__(self, sid: str) -> None:
        super().__init__(f"a site with sid {sid!r} already exists")


class TenantExists(Conflict):
    def __init__(self, tid: str) -> None:
        super().__init__(f"a tenant with tid {tid!r} already exists")


_guarded = guarded("configuration database")


async def open_pool(pg: PostgresSettings) -> asyncpg.Pool:
    return await open_common_pool(pg, json_codecs=True)


def hash_token(plain: str) -> bytes:
    return hashlib.sha256(plain.encode("utf-8", "surrogateescape")).digest()


def new_token() -> str:
    raw = secrets.token_bytes(32)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


_SITE_COLUMNS = ("sid, tid, name, domains, features, cmp_config, recs_config, version, "
                 "created_at, updated_at, previous_key_expires_at")
_TOKEN_COLUMNS = "id, name, prefix, site_ids, created_at, last_used_at, revoked_at"  # noqa: S105


class ConfigStore:
    """Reads and writes viz-config's tables. Every method may raise :class:`StoreUnavailable`."""

    def __init__(self, pool: asyncpg.Pool, *, clock: Clock, key_grace_s: float) -> None:
        self._pool = pool
        self._clock = clock
        self._key_grace = timedelta(seconds=key_grace_s)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def _site(self, row: asyncpg.Record) -> Site:
        expires = row["previous_key_expires_at"]
        return Site(
            sid=row["sid"], tid=row["tid"], name=row["name"], domains=tuple(row["domains"]),
            features=row["features"], cmp_config=row["cmp_config"],
            recs_config=row["recs_config"], version=row["version"],
            created_at=row["created_at"], updated_at=row["updated_at"],
            previous_key_expires_at=expires if expires and expires > self._now() else None,
        )

    @staticmethod
    def _token(row: asyncpg.Record) -> ApiToken:
        return ApiToken(
            id=str(row["id"]), name=row["name"], prefix=row["prefix"],
            site_ids=tuple(row["site_ids"]), created_at=row["created_at"],
            last_used_at=row["last_used_at"], revoked_at=row["revoked_at"],
        )

    @_guarded
    async def ping(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    # --- sites ----------------------------------------------------------------------------

    @_guarded
    async def list_sites(self, tid: str | None = None) -> list[Site]:
        rows = await self._pool.fetch(
            f"SELECT {_SITE_COLUMNS} FROM sites WHERE $1::text IS NULL OR tid = $1 ORDER BY sid",
            tid,
        )
        return [self._site(row) for row in rows]

    @_guarded
    async def tenant_domains(self, tid: str) -> list[str]:
        """Every domain of every site of a tenant (for cross-domain link decoration)."""
        rows = await self._pool.fetch(
            "SELECT DISTINCT unnest(domains) AS domain FROM sites WHERE tid = $1 ORDER BY 1", tid)
        return [row["domain"] for row in rows]

    @_guarded
    async def get_site(self, sid: str) -> Site:
        row = await self._pool.fetchrow(f"SELECT {_SITE_COLUMNS} FROM sites WHERE sid = $1", sid)
        if row is None:
            raise SiteNotFound(sid)
        return self._site(row)

    @_guarded
    async def create_site(self, new: NewSite) -> Site:
        """Create a site, and its tenant when the tid is new (named after the tid)."""
        now = self._now()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO tenants (tid, name, created_at) VALUES ($1, $1, $2) "
                "ON CONFLICT (tid) DO NOTHING",
                new.tid, now,
            )
            try:
                row = await conn.fetchrow(
                    "INSERT INTO sites (sid, tid, name, domains, features, cmp_config, "
                    "recs_config, secret_key, version, created_at, updated_at) "
                    f"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9) RETURNING {_SITE_COLUMNS}",
                    new.sid, new.tid, new.name, list(new.domains), dict(new.features),
                    dict(new.cmp_config), dict(new.recs_config),
                    secrets.token_bytes(KEY_BYTES), now,
                )
            except asyncpg.UniqueViolationError:
                raise SiteExists(new.sid) from None
        log.info("created site %s (tenant %s)", new.sid, new.tid)
        return self._site(row)

    @_guarded
    async def update_site(self, sid: str, patch: SitePatch) -> Site:
        """Apply ``patch`` (features merged key by key) and bump the version."""
        row = await self._pool.fetchrow(
            "UPDATE sites SET "
            "name = COALESCE($2, name), "
            "domains = COALESCE($3, domains), "
            "features = features || COALESCE($4::jsonb, '{}'::jsonb), "
            "cmp_config = COALESCE($5::jsonb, cmp_config), "
            "recs_config = COALESCE($6::jsonb, recs_config), "
            "version = version + 1, updated_at = $7 "
            f"WHERE sid = $1 RETURNING {_SITE_COLUMNS}",
            sid, patch.name,
            list(patch.domains) if patch.domains is not None else None,
            dict(patch.features) if patch.features is not None else None,
            dict(patch.cmp_config) if patch.cmp_config is not None else None,
            dict(patch.recs_config) if patch.recs_config is not None else None,
            self._now(),
        )
        if row is None:
            raise SiteNotFound(sid)
        return self._site(row)

    @_guarded
    async def delete_site(self, sid: str) -> None:
        status = await self._pool.execute("DELETE FROM sites WHERE sid = $1", sid)
        if status == "DELETE 0":
            raise SiteNotFound(sid)
        log.info("deleted site %s", sid)

    @_guarded
    async def rotate_key(self, sid: str) -> Site:
        """Replace the secret key; the old one stays valid for ``key_grace_s``.

        Rotating again within the grace period drops the oldest key: only one previous key is
        kept, which the grace period (longer than a cache TTL plus two token windows) allows.
        """
        now = self._now()
        row = await self._pool.fetchrow(
            "UPDATE sites SET previous_key = secret_key, secret_key = $2, "
            "previous_key_expires_at = $3, version = version + 1, updated_at = $4 "
            f"WHERE sid = $1 RETURNING {_SITE_COLUMNS}",
            sid, secrets.token_bytes(KEY_BYTES), now + self._key_grace, now,
        )
        if row is None:
            raise SiteNotFound(sid)
        log.info("rotated the key of site %s", sid)
        return self._site(row)

    @_guarded
    async def get_site_record(self, sid: str) -> SiteRecord:
        """The full record other services need, keys included; an expired previous key omitted."""
        row = await self._pool.fetchrow(
            f"SELECT {_SITE_COLUMNS}, secret_key, previous_key FROM sites WHERE sid = $1", sid)
        if row is None:
            raise SiteNotFound(sid)
        expires = row["previous_key_expires_at"]
        live = row["previous_key"] is not None and expires is not None and expires > self._now()
        return SiteRecord(
            sid=row["sid"], tid=row["tid"], name=row["name"], domains=tuple(row["domains"]),
            features=row["features"], cmp_config=row["cmp_config"],
            recs_config=row["recs_config"], version=row["version"],
            secret_key=bytes(row["secret_key"]),
            previous_key=bytes(row["previous_key"]) if live else None,
            previous_key_expires_at=expires.timestamp() if live else None,
        )

    # --- tenants --------------------------------------------------------------------------

    @_guarded
    async def list_tenants(self) -> list[Tenant]:
        rows = await self._pool.fetch(
            "SELECT t.tid, t.name, t.created_at, count(s.sid) AS site_count "
            "FROM tenants t LEFT JOIN sites s ON s.tid = t.tid "
            "GROUP BY t.tid ORDER BY t.tid"
        )
        return [Tenant(tid=r["tid"], name=r["name"], created_at=r["created_at"],
                       site_count=r["site_count"]) for r in rows]

    @_guarded
    async def create_tenant(self, new: NewTenant) -> Tenant:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO tenants (tid, name, created_at) VALUES ($1, $2, $3) "
                "RETURNING tid, name, created_at",
                new.tid, new.name, self._now(),
            )
        except asyncpg.UniqueViolationError:
            raise TenantExists(new.tid) from None
        return Tenant(tid=row["tid"], name=row["name"], created_at=row["created_at"])

    # --- consent (data-subject export) ---------------------------------------------------

    @_guarded
    async def export_consent(self, bid: str, tid: str | None = None) -> dict[str, Any]:
        """Everything held about one browser id's consent: current records and full ledger.

        viz-cmp writes these tables; the admin API only reads them (GDPR Art. 15 requests).
        """
        async with self._pool.acquire() as conn:
            records = await conn.fetch(
                "SELECT tid, sid, tier, banner_version, consented_at, updated_at "
                "FROM consent_records WHERE bid = $1 AND ($2::text IS NULL OR tid = $2) "
                "ORDER BY tid", bid, tid)
            ledger = await conn.fetch(
                "SELECT consent_id, at, tid, sid, tier, previous_tier, requested_tier, explicit, "
                "gpc, method, source, banner_version, banner_hash FROM consent_ledger "
                "WHERE bid = $1 AND ($2::text IS NULL OR tid = $2) ORDER BY at, id", bid, tid)
        return {
            "bid": bid,
            "tid": tid,
            "records": [{**dict(r), "consented_at": r["consented_at"].isoformat(),
                         "updated_at": r["updated_at"].isoformat()} for r in records],
            "ledger": [{**dict(r), "consent_id": str(r["consent_id"]),
                        "at": r["at"].isoformat()} for r in ledger],
        }

    # --- API tokens -----------------------------------------------------------------------

    @_guarded
    async def create_token(self, new: NewToken) -> tuple[ApiToken, str]:
        """Store a new token's hash; return its metadata and the plain token (shown once)."""
        async with self._pool.acquire() as conn:
            known = await conn.fetchval(
                "SELECT coalesce(array_agg(sid), '{}') FROM sites WHERE sid = ANY($1::text[])",
                list(new.site_ids),
            )
            missing = [sid for sid in new.site_ids if sid not in set(known)]
            if missing:
                raise InvalidField("site_ids", f"unknown site(s): {', '.join(missing)}")
            plain = new_token()
            row = await conn.fetchrow(
                "INSERT INTO api_tokens (name, token_hash, prefix, site_ids, created_at) "
                f"VALUES ($1, $2, $3, $4, $5) RETURNING {_TOKEN_COLUMNS}",
                new.name, hash_token(plain), plain[:_DISPLAY_PREFIX_CHARS], list(new.site_ids),
                self._now(),
            )
        token = self._token(row)
        log.info("created API token %s (%s)", token.id, token.prefix)
        return token, plain

    @_guarded
    async def list_tokens(self) -> list[ApiToken]:
        rows = await self._pool.fetch(
            f"SELECT {_TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id")
        return [self._token(row) for row in rows]

    @_guarded
    async def revoke_token(self, token_id: str) -> ApiToken:
        """Revoke a token (revoking twice keeps the first revocation time)."""
        row = await self._pool.fetchrow(
            "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, $2) "
            f"WHERE id = $1::uuid RETURNING {_TOKEN_COLUMNS}",
            token_id, self._now(),
        )
        if row is None:
            raise TokenNotFound(token_id)
        log.info("revoked API token %s", token_id)
        return self._token(row)

    @_guarded
    async def lookup_token(self, plain: str) -> TokenScope | None:
        """The scope of a presented token, or ``None`` when it is unknown or revoked.

        The row is found by its SHA-256 digest: any timing difference of the index lookup
        depends on the digest, which tells an attacker nothing about other tokens' plain text.
        """
        if not plain.startswith(TOKEN_PREFIX) or len(plain) != _TOKEN_CHARS:
            return None
        digest = hash_token(plain)
        row = await self._pool.fetchrow(
            "SELECT id, token_hash, site_ids, last_used_at FROM api_tokens "
            "WHERE token_hash = $1 AND revoked_at IS NULL",
            digest,
        )
        if row is None or not hmac.compare_digest(bytes(row["token_hash"]), digest):
            return None
        now = self._now()
        if row["last_used_at"] is None or now - row["last_used_at"] >= _LAST_USED_RESOLUTION:
            await self._pool.execute("UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
                                     row["id"], now)
        return TokenScope(token_id=str(row["id"]), site_ids=frozenset(row["site_ids"]))
