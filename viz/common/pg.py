"""PostgreSQL plumbing shared by the services that own tables (config, cmp): an asyncpg pool
that survives outages, and the one mapping of "PostgreSQL is unreachable" to a 503."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import asyncpg

from viz.common.errors import UnavailableError
from viz.common.settings import PostgresSettings
from viz.common.web import ServiceUnavailable

log = logging.getLogger(__name__)

COMMAND_TIMEOUT_S = 10.0
POOL_CLOSE_TIMEOUT_S = 10.0

# Errors that mean "PostgreSQL is not reachable right now", as opposed to a bug in a query.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    # A pooled connection the server dropped while idle fails its next query with one of these
    # (before asyncpg has noticed the lost socket); the pool replaces it on release.
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)

P = ParamSpec("P")
T = TypeVar("T")


class StoreUnavailable(ServiceUnavailable, UnavailableError):
    """PostgreSQL cannot be reached; the client should retry (503 with Retry-After)."""


def guarded(what: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Turn an outage inside a store method into :class:`StoreUnavailable` naming ``what``."""

    def decorate(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(method)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await method(*args, **kwargs)
            except asyncpg.DataError:
                raise  # an InterfaceError too, but a bug in our parameters: a logged 500
            except OUTAGE_ERRORS as exc:
                log.warning("PostgreSQL unavailable in %s: %s: %s", method.__name__,
                            type(exc).__name__, exc)
                raise StoreUnavailable(f"the {what} is unavailable; retry shortly") from exc
        return wrapper

    return decorate


async def _json_codecs(conn: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")


def _create_pool(pg: PostgresSettings, min_size: int, json_codecs: bool) -> Any:
    return asyncpg.create_pool(
        pg.dsn, min_size=min_size, max_size=max(pg.pool_max, min_size),
        timeout=pg.connect_timeout_s, command_timeout=COMMAND_TIMEOUT_S,
        init=_json_codecs if json_codecs else None,
    )


async def open_pool(pg: PostgresSettings, *, json_codecs: bool = False) -> asyncpg.Pool:
    """A connection pool; when PostgreSQL is down at start, one that connects on first use.

    Starting anyway lets the service report itself unready (and answer 503) instead of
    crash-looping, and it becomes ready on its own when PostgreSQL comes up. ``json_codecs``
    maps json/jsonb columns to Python values.
    """
    try:
        return await _create_pool(pg, pg.pool_min, json_codecs)
    except OUTAGE_ERRORS as exc:
        log.warning("PostgreSQL unreachable at start (%s); connecting on first use",
                    type(exc).__name__)
        return await _create_pool(pg, 0, json_codecs)


async def close_pool(pool: asyncpg.Pool) -> None:
    try:
        await asyncio.wait_for(pool.close(), timeout=POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        log.warning("PostgreSQL pool did not close in %ss; terminating it", POOL_CLOSE_TIMEOUT_S)
        pool.terminate()
