"""Databases of their own on the session's PostgreSQL, for test packages that share one."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from viz.migrations.postgres import migrate_postgres


async def execute(dsn: str, sql: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def replace_database(dsn: str, database: str) -> str:
    return dsn.rpartition("/")[0] + "/" + database


@contextmanager
def migrated_database(pg_dsn: str, prefix: str) -> Iterator[str]:
    """A new database with every migration applied; dropped on exit."""
    name = f"t_{prefix}_" + uuid.uuid4().hex[:12]
    asyncio.run(execute(pg_dsn, f'CREATE DATABASE "{name}"'))
    dsn = replace_database(pg_dsn, name)
    try:
        asyncio.run(migrate_postgres(dsn))
        yield dsn
    finally:
        asyncio.run(execute(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
