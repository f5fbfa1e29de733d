"""The PostgreSQL migration runner against a real server: apply, re-run, race, tamper."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import asyncpg
import pytest

from viz.migrations.postgres import MigrationError, load_migrations, migrate_postgres

SHIPPED = [m.label for m in load_migrations()]


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


def _copy_shipped(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for migration in load_migrations():
        (folder / f"{migration.label}.sql").write_text(migration.sql)
    return folder


def test_ships_numbered_migrations_in_order() -> None:
    assert SHIPPED[:3] == ["0001_tenants_and_sites", "0002_api_tokens", "0003_consent"]
    versions = [int(label[:4]) for label in SHIPPED]
    assert versions == sorted(set(versions))


async def test_applies_every_migration_to_an_empty_database(pg_database: str) -> None:
    assert await migrate_postgres(pg_database) == SHIPPED

    tables = {r["tablename"] for r in await _fetch(
        pg_database, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"schema_migrations", "tenants", "sites", "api_tokens", "consent_records",
            "consent_ledger"} <= tables
    rows = await _fetch(pg_database,
                        "SELECT version, name, checksum, applied_at FROM schema_migrations "
                        "ORDER BY version")
    assert [f"{r['version']:04d}_{r['name']}" for r in rows] == SHIPPED
    assert all(len(r["checksum"]) == 64 and r["applied_at"] is not None for r in rows)


async def test_rerun_applies_nothing(pg_database: str) -> None:
    await migrate_postgres(pg_database)
    assert await migrate_postgres(pg_database) == []
    rows = await _fetch(pg_database, "SELECT count(*) AS n FROM schema_migrations")
    assert rows[0]["n"] == len(SHIPPED)


async def test_two_concurrent_runs_apply_each_migration_once(pg_database: str) -> None:
    first, second = await asyncio.gather(migrate_postgres(pg_database),
                                         migrate_postgres(pg_database))
    assert sorted([first, second], key=len) == [[], SHIPPED]


async def test_applies_only_the_new_migration_on_upgrade(pg_database: str,
                                                         tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path)
    await migrate_postgres(pg_database, source=folder)
    (folder / "9000_add_note.sql").write_text("ALTER TABLE tenants ADD COLUMN note text;")

    assert await migrate_postgres(pg_database, source=folder) == ["9000_add_note"]
    rows = await _fetch(pg_database, "SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'tenants' AND column_name = 'note'")
    assert len(rows) == 1


async def test_refuses_to_run_when_an_applied_migration_was_edited(pg_database: str,
                                                                  tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path)
    await migrate_postgres(pg_database, source=folder)
    edited = folder / f"{SHIPPED[0]}.sql"
    edited.write_text(edited.read_text() + "\n-- a harmless looking edit\n")
    (folder / "9000_add_note.sql").write_text("ALTER TABLE tenants ADD COLUMN note text;")

    with pytest.raises(MigrationError, match=f"migration {SHIPPED[0]} was changed after it was "
                                             "applied"):
        await migrate_postgres(pg_database, source=folder)
    # Nothing after the refusal was applied.
    rows = await _fetch(pg_database, "SELECT count(*) AS n FROM schema_migrations")
    assert rows[0]["n"] == len(SHIPPED)


async def test_refuses_a_database_migrated_by_a_newer_release(pg_database: str,
                                                             tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path)
    (folder / "9000_add_note.sql").write_text("ALTER TABLE tenants ADD COLUMN note text;")
    await migrate_postgres(pg_database, source=folder)
    (folder / "9000_add_note.sql").unlink()

    with pytest.raises(MigrationError, match="9000_add_note applied, which this version"):
        await migrate_postgres(pg_database, source=folder)


async def test_a_failing_migration_leaves_no_trace(pg_database: str, tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path)
    (folder / "9000_broken.sql").write_text(
        "CREATE TABLE half_done (id int);\nSELECT no_such_function();\n")

    with pytest.raises(asyncpg.UndefinedFunctionError):
        await migrate_postgres(pg_database, source=folder)

    rows = await _fetch(pg_database, "SELECT to_regclass('half_done') AS t")
    assert rows[0]["t"] is None
    versions = await _fetch(pg_database, "SELECT version FROM schema_migrations")
    assert sorted(r["version"] for r in versions) == [int(label[:4]) for label in SHIPPED]


def test_rejects_a_badly_named_migration_file(tmp_path: Path) -> None:
    folder = _copy_shipped(tmp_path)
    shutil.copy(folder / f"{SHIPPED[0]}.sql", folder / "add-things.sql")
    with pytest.raises(MigrationError, match="not named NNNN_name.sql"):
        load_migrations(folder)


async def test_consent_ledger_refuses_update_and_delete(pg_database: str) -> None:
    await migrate_postgres(pg_database)
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute(
            "INSERT INTO consent_ledger (tid, sid, tier, banner_version, banner_hash, method, "
            "source) VALUES ('t1', 'site1', 1, 'v1', 'abc', 'banner', 'https://a.example/')")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only: UPDATE"):
            await conn.execute("UPDATE consent_ledger SET tier = 2")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only: DELETE"):
            await conn.execute("DELETE FROM consent_ledger")
        with pytest.raises(asyncpg.RestrictViolationError, match="append-only: TRUNCATE"):
            await conn.execute("TRUNCATE consent_ledger")
        assert await conn.fetchval("SELECT tier FROM consent_ledger") == 1
        # Appending keeps working.
        await conn.execute(
            "INSERT INTO consent_ledger (tid, sid, tier, previous_tier, banner_version, "
            "banner_hash, method, source, gpc) "
            "VALUES ('t1', 'site1', 0, 1, 'v1', 'abc', 'withdrawal', 'https://a.example/', true)")
        assert await conn.fetchval("SELECT count(*) FROM consent_ledger") == 2
    finally:
        await conn.close()


async def test_consent_records_keep_one_tier_per_browser_and_tenant(pg_database: str) -> None:
    await migrate_postgres(pg_database)
    conn = await asyncpg.connect(pg_database)
    try:
        await conn.execute("INSERT INTO tenants (tid, name) VALUES ('t1', 'News')")
        insert = ("INSERT INTO consent_records (bid, tid, tier, sid, banner_version, consented_at, "
                  "updated_at) VALUES ($1, 't1', $2, 'site1', 'v1', now(), now())")
        await conn.execute(insert, "b1", 2)
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(insert, "b1", 1)
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(insert, "b2", 3)
    finally:
        await conn.close()
