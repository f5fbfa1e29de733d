"""All of viz-cmp's SQL: the current consent per (bid, tid) and the append-only ledger.

A decision is one transaction: lock the (bid, tid) pair, read the previous tier, upsert
``consent_records``, append to ``consent_ledger``. If the ledger row cannot be written the
current state is not changed either: no consent is ever in force without its proof.
Parameters are always bound; a lost or refused connection becomes :class:`viz.common.pg.StoreUnavailable`
(HTTP 503), never a 500.
"""

from __future__ import annotations

import logging

import asyncpg

from viz.cmp.models import Choice, CurrentConsent, Recorded, UnknownSite, ledger_method
from viz.common.pg import guarded
from viz.common.pg import open_pool as open_common_pool
from viz.common.settings import PostgresSettings

log = logging.getLogger(__name__)

# An arbitrary namespace for the per-(bid, tid) transaction lock; only has to differ from
# other advisory locks (the migration runner uses a 64-bit constant of its own).
_LOCK_NAMESPACE = 0x636D70  # "cmp"

_guarded = guarded("consent database")


async def open_pool(pg: PostgresSettings) -> asyncpg.Pool:
    return await open_common_pool(pg)


_UPSERT = """
INSERT INTO consent_records (bid, tid, tier, sid, banner_version, consented_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6)
ON CONFLICT (bid, tid) DO UPDATE SET
    tier = EXCLUDED.tier,
    sid = EXCLUDED.sid,
    banner_version = EXCLUDED.banner_version,
    consented_at = CASE
        WHEN consent_records.tier = EXCLUDED.tier
         AND consent_records.banner_version = EXCLUDED.banner_version
        THEN consent_records.consented_at ELSE EXCLUDED.consented_at END,
    updated_at = EXCLUDED.updated_at
RETURNING consented_at
"""

_APPEND = """
INSERT INTO consent_ledger (consent_id, at, bid, tid, sid, tier, previous_tier, requested_tier,
                            explicit, banner_version, banner_hash, method, source, gpc)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""


class ConsentStore:
    """Reads and writes the consent tables. Every method may raise :class:`StoreUnavailable`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @_guarded
    async def ping(self) -> None:
        async with self._pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    @_guarded
    async def record(self, choice: Choice) -> Recorded:
        """Commit ``choice``: current state (only with a bid) and ledger row, all or nothing.

        Decisions for one (bid, tid) are serialised by a transaction-scoped advisory lock, so
        each ledger row's ``previous_tier`` is the tier its own transaction replaced.
        """
        async with self._pool.acquire() as conn, conn.transaction():
            previous: int | None = None
            consented_at = choice.at
            if choice.bid is not None:
                await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))",
                                   _LOCK_NAMESPACE, f"{choice.tid}\n{choice.bid}")
                previous = await conn.fetchval(
                    "SELECT tier FROM consent_records WHERE bid = $1 AND tid = $2",
                    choice.bid, choice.tid)
                try:
                    consented_at = await conn.fetchval(
                        _UPSERT, choice.bid, choice.tid, choice.tier, choice.sid,
                        choice.banner_version, choice.at)
                except asyncpg.ForeignKeyViolationError:
                    # The tenant is gone: the cached site record outlived it.
                    raise UnknownSite(choice.sid) from None
            method = ledger_method(choice, previous)
            await conn.execute(
                _APPEND, choice.consent_id, choice.at, choice.bid, choice.tid, choice.sid,
                choice.tier, previous, choice.requested_tier if choice.gpc_capped else None,
                choice.explicit, choice.banner_version, choice.banner_hash, method,
                choice.source, choice.gpc)
        return Recorded(previous_tier=previous, method=method, consented_at=consented_at)

    @_guarded
    async def current(self, bid: str, tid: str) -> CurrentConsent | None:
        row = await self._pool.fetchrow(
            "SELECT tier, banner_version, consented_at FROM consent_records "
            "WHERE bid = $1 AND tid = $2", bid, tid)
        if row is None:
            return None
        return CurrentConsent(tier=row["tier"], banner_version=row["banner_version"],
                              consented_at=row["consented_at"])
