"""Session-wide real servers: embedded by default, or the ones named by VIZ_* variables.

Each server starts the first time a test asks for it and stops when the session ends. Set
``VIZ_PG_DSN``, ``VIZ_REDIS_URL``, ``VIZ_KAFKA_BOOTSTRAP`` or ``VIZ_CLICKHOUSE_DSN`` to run the
same tests against real servers instead.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pg_support import execute, replace_database

from viz.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, chdb_dsn


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("VIZ_PG_DSN")
    if external:
        yield external
        return
    server = EmbeddedPostgres(tmp_path_factory.mktemp("pg") / "data", durable=False)
    server.start()
    try:
        yield server.dsn
    finally:
        server.stop()


@pytest.fixture
def pg_database(pg_dsn: str) -> Iterator[str]:
    """The DSN of a new, empty database of its own for one test (dropped afterwards)."""
    name = "t_" + uuid.uuid4().hex[:16]
    asyncio.run(execute(pg_dsn, f'CREATE DATABASE "{name}"'))
    try:
        yield replace_database(pg_dsn, name)
    finally:
        asyncio.run(execute(pg_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("VIZ_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("VIZ_KAFKA_BOOTSTRAP")
    if external:
        yield external
        return
    server = EmbeddedKafka(tmp_path_factory.mktemp("kafka"))
    server.start()
    try:
        yield server.bootstrap
    finally:
        server.stop()


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One chDB path per test session (a process can open only one); tests isolate by database."""
    external = os.environ.get("VIZ_CLICKHOUSE_DSN")
    if external:
        return external
    return chdb_dsn(str(tmp_path_factory.mktemp("chdb") / "engine"))


@pytest.fixture(scope="session")
def clickhouse_client(clickhouse_dsn: str) -> Any:
    """One clickhouse-connect client for the session (chDB allows one engine per process)."""
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=clickhouse_dsn)


@pytest.fixture
def ch_database(clickhouse_client: Any) -> Iterator[str]:
    """The name of a new ClickHouse database for one test (dropped afterwards)."""
    name = "t_" + uuid.uuid4().hex[:16]
    clickhouse_client.command(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        clickhouse_client.command(f"DROP DATABASE IF EXISTS {name}")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
