"""The running analytics API against its OpenAPI document, with schemathesis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from live_server import LiveServer
from openapi_support import check_operation
from schemathesis import GenerationMode

from viz.analytics.app import create_app
from viz.analytics.settings import AnalyticsSettings
from viz.config.app import create_app as create_config_app
from viz.config.settings import ConfigSettings
from viz.migrations.clickhouse import migrate_clickhouse
from viz.migrations.postgres import migrate_postgres

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[2] / "docs" / "api" / "analytics.openapi.yaml"
ADMIN = "openapi-admin-token-0123456789ab"
SERVICE = "openapi-service-token-0123456789"


@pytest.fixture
def live(pg_database: str, clickhouse_client: Any, clickhouse_dsn: str,
         ch_database: str) -> Iterator[tuple[str, str]]:
    asyncio.run(migrate_postgres(pg_database))
    migrate_clickhouse(clickhouse_client, ch_database)
    config = LiveServer(create_config_app(ConfigSettings.from_env({
        "VIZ_PG_DSN": pg_database, "VIZ_ADMIN_TOKEN": ADMIN, "VIZ_SERVICE_TOKEN": SERVICE})))
    config.start()
    admin = {"Authorization": f"Bearer {ADMIN}"}
    requests.post(f"{config.url}/admin/sites", headers=admin, timeout=10,
                  json={"sid": "site-one", "tid": "t", "domains": ["one.example"]}
                  ).raise_for_status()
    token = requests.post(f"{config.url}/admin/tokens", headers=admin, timeout=10,
                          json={"name": "t", "site_ids": ["site-one"]}).json()["token"]
    analytics = LiveServer(create_app(AnalyticsSettings.from_env({
        "VIZ_CLICKHOUSE_DSN": clickhouse_dsn, "VIZ_CLICKHOUSE_DATABASE": ch_database,
        "VIZ_CONFIG_URL": config.url, "VIZ_SERVICE_TOKEN": SERVICE}), clickhouse_client))
    analytics.start()
    try:
        yield analytics.url, token
    finally:
        analytics.stop()
        config.stop()


def test_serves_the_document_kept_in_docs_api(live: tuple[str, str]) -> None:
    response = requests.get(f"{live[0]}/openapi.yaml", timeout=10)
    assert response.status_code == 200 and response.content == DOC.read_bytes()


def test_every_report_conforms_to_the_document(live: tuple[str, str]) -> None:
    url, token = live
    schema = schemathesis.openapi.from_path(DOC)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(op.path for op in operations) == [
        "/analytics/overview", "/analytics/pages", "/analytics/referrers",
        "/analytics/timeseries"]
    headers = {"Authorization": f"Bearer {token}"}
    for operation in operations:
        for mode, examples in ((GenerationMode.POSITIVE, 25), (GenerationMode.NEGATIVE, 10)):
            check_operation(operation, mode, url, headers, examples=examples)
