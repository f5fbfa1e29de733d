"""The running service against its OpenAPI document, with schemathesis: no 5xx, conforming answers.

The app runs on a real socket in a thread of its own (schemathesis calls it over HTTP with
`requests`), on the session's migrated test database, emptied first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import requests
import schemathesis
import yaml
from config_support import ADMIN, SERVICE, make_settings
from live_server import LiveServer
from openapi_support import check_operation
from schemathesis import GenerationMode

from viz.config.app import create_app

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[2] / "docs" / "api" / "config.openapi.yaml"
SEEDED_SID = "seeded-site"


@pytest.fixture(scope="module")
def live_url(config_database: str) -> Iterator[str]:
    asyncio.run(_empty(config_database))
    server = LiveServer(create_app(make_settings(config_database)))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def _empty(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE api_tokens, sites, tenants CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def seeded_token_id(live_url: str) -> str:
    response = requests.post(f"{live_url}/admin/sites", headers=ADMIN, timeout=10,
                             json={"sid": SEEDED_SID, "tid": "seeded", "domains": ["a.example"],
                                   "cmp_config": {"tiers": [0, 1, 2]}})
    assert response.status_code == 201
    response = requests.post(f"{live_url}/admin/tokens", headers=ADMIN, timeout=10,
                             json={"name": "seeded", "site_ids": [SEEDED_SID]})
    assert response.status_code == 201
    return response.json()["id"]


def test_serves_the_document_kept_in_docs_api(live_url: str) -> None:
    response = requests.get(f"{live_url}/openapi.yaml", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert response.content == DOC.read_bytes()
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.")


def _operation_label(operation: Any) -> str:
    return f"{operation.method.upper()} {operation.path}"


def _run(operation: Any, mode: GenerationMode, base_url: str,
         path_parameters: dict[str, str] | None = None) -> None:
    headers = SERVICE if operation.path.startswith("/internal/") else ADMIN
    check_operation(operation, mode, base_url, headers, strategy=operation.as_strategy(
        generation_mode=mode, path_parameters=path_parameters))


def test_every_operation_conforms_to_the_document(live_url: str, seeded_token_id: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.yaml")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = sorted(_operation_label(op) for op in operations)
    assert labels == sorted([
        "GET /viz/{sid}.js", "GET /b/{version}/{sid}.js", "GET /b/{version}/{sid}.modern.js",
        "GET /admin/sites", "POST /admin/sites", "GET /admin/sites/{sid}",
        "PATCH /admin/sites/{sid}", "DELETE /admin/sites/{sid}",
        "POST /admin/sites/{sid}/rotate-key", "GET /admin/tenants", "POST /admin/tenants",
        "GET /admin/tokens", "POST /admin/tokens", "DELETE /admin/tokens/{id}",
        "GET /admin/consent/{bid}",
        "GET /internal/sites/{sid}", "POST /internal/tokens/introspect"])

    # Deletions last, so the seeded site and token serve the other operations first.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, live_url)
        # Random ids almost never exist; also exercise the success path of known ones.
        if "{sid}" in operation.path:
            _run(operation, GenerationMode.POSITIVE, live_url, {"sid": SEEDED_SID})
        if "{id}" in operation.path:
            _run(operation, GenerationMode.POSITIVE, live_url, {"id": seeded_token_id})
