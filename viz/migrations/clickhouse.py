"""Versioned ClickHouse migrations: ``clickhouse/NNNN_name.sql``, recorded in ``schema_migrations``.

The same SQL runs on the embedded chDB engine and on a ClickHouse server. Files hold several
statements separated by ``;`` at the end of a line; ``{database}`` and ``{retention_days}`` are
filled from settings (both validated here, never from user input). Statements are written with
``IF [NOT] EXISTS``, so a migration interrupted halfway can simply run again. A migration that
rebuilds views (0003) backfills them from ``traffic`` and must run alone, with the consumers
stopped (docs/decisions.md).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self, database: str, retention_days: int) -> list[str]:
        body = "\n".join(line for line in self.sql.splitlines() if not line.lstrip().startswith("--"))
        filled = body.replace("{database}", database).replace("{retention_days}", str(retention_days))
        return [s.strip() for s in re.split(r";\s*$", filled, flags=re.M) if s.strip()]


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("viz.migrations").joinpath("clickhouse").iterdir():
        match = _FILE_RE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    return found


def migrate_clickhouse(client: Any, database: str, *, retention_days: int = 400) -> list[str]:
    """Apply pending migrations with a clickhouse-connect ``client``; returns the names applied.

    Blocking (clickhouse-connect has no async client): call it from a thread in async code.
    """
    if not _IDENT_RE.match(database):
        raise MigrationError(f"invalid ClickHouse database name {database!r}")
    if not 1 <= retention_days <= 36500:
        raise MigrationError(f"retention_days={retention_days} out of range 1..36500")
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, checksum String, applied_at DateTime DEFAULT now()) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    rows = client.query(
        f"SELECT version, checksum FROM {database}.schema_migrations FINAL"
    ).result_rows
    applied = {int(version): checksum for version, checksum in rows}
    done: list[str] = []
    for migration in load_migrations():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"clickhouse migration {migration.version:04d}_{migration.name} was changed "
                    "after it was applied; add a new migration instead of editing an applied one")
            continue
        for statement in migration.statements(database, retention_days):
            client.command(statement)
        client.insert(f"{database}.schema_migrations",
                      [[migration.version, migration.name, migration.checksum]],
                      column_names=["version", "name", "checksum"])
        done.append(f"{migration.version:04d}_{migration.name}")
        log.info("applied clickhouse migration %04d_%s", migration.version, migration.name)
    return done
