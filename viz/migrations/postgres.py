"""Applies the versioned SQL files in ``postgres/`` to a PostgreSQL database, once each.

Each file runs in its own transaction and is recorded in ``schema_migrations`` with a checksum;
a session advisory lock serialises concurrent runners (several pods starting the same Job).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import asyncpg

from viz.common.errors import VizError

log = logging.getLogger(__name__)

# An arbitrary constant shared by every runner; only has to differ from other advisory locks.
_LOCK_KEY = 0x76697A5F6D6967  # "viz_mig"
_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(VizError, RuntimeError):
    """The migration files and the database disagree; nothing was applied."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


def _default_source() -> Traversable:
    return resources.files("viz.migrations").joinpath("postgres")


def load_migrations(source: Traversable | Path | None = None) -> list[Migration]:
    """The migrations in ``source`` (the shipped ones by default), ordered by version."""
    folder = source if source is not None else _default_source()
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        # Line endings are normalised so a checkout with CRLF does not look like a tampered file.
        text = entry.read_bytes().replace(b"\r\n", b"\n")
        migration = Migration(
            version=int(match.group(1)),
            name=match.group(2),
            sql=text.decode("utf-8"),
            checksum=hashlib.sha256(text).hexdigest(),
        )
        if migration.version in found:
            raise MigrationError(f"two migration files share version {migration.version:04d}")
        found[migration.version] = migration
    return [found[v] for v in sorted(found)]


def _check_applied(migrations: list[Migration], applied: dict[int, asyncpg.Record]) -> None:
    known = {m.version: m for m in migrations}
    for version, row in sorted(applied.items()):
        migration = known.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{row['name']} applied, which this "
                "version of viz does not ship; refusing to run an older release against it"
            )
        if row["checksum"] != migration.checksum:
            raise MigrationError(
                f"migration {migration.label} was changed after it was applied (checksum "
                f"{row['checksum'][:12]}… in the database, {migration.checksum[:12]}… on disk); "
                "add a new migration instead of editing an applied one"
            )


async def migrate_postgres(dsn: str, *, source: Traversable | Path | None = None) -> list[str]:
    """Apply every pending migration; return the labels (``NNNN_name``) applied by this call.

    Safe to run concurrently: the second runner waits for the first and then finds nothing left.
    Raises :class:`MigrationError` without applying anything when an applied migration changed.
    """
    migrations = load_migrations(source)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        try:
            await conn.execute(_CREATE_TABLE)
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            applied = {row["version"]: row for row in rows}
            _check_applied(migrations, applied)
            done: list[str] = []
            for migration in migrations:
                if migration.version in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        migration.version, migration.name, migration.checksum,
                    )
                log.info("applied migration %s", migration.label)
                done.append(migration.label)
            return done
        finally:
            # A lost connection has released the session lock already.
            if not conn.is_closed():
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    finally:
        await conn.close()
