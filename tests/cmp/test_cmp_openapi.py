"""The running service against its OpenAPI document, with schemathesis: no 5xx, conforming answers.

viz-cmp and the real viz-config it asks for sites each run on a real socket in a thread of their
own (schemathesis calls over HTTP with `requests`), on the session's migrated test database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
import yaml
from cmp_support import ADMIN, DOMAIN, ORIGIN, cmp_settings, config_settings, fetch
from live_server import LiveServer
from openapi_support import check_operation
from schemathesis import GenerationMode

from viz.cmp.app import create_app
from viz.config.app import create_app as create_config_app

pytestmark = pytest.mark.slow

DOC = Path(__file__).parents[2] / "viz" / "cmp" / "openapi.yaml"


@pytest.fixture(scope="module")
def seeded_sid(cmp_database: str) -> Iterator[tuple[str, str]]:
    config = LiveServer(create_config_app(config_settings(cmp_database)))
    config.start()
    sid = "seeded-" + uuid.uuid4().hex[:8]
    try:
        response = requests.post(f"{config.url}/admin/sites", headers=ADMIN, timeout=10, json={
            "sid": sid, "tid": "t" + uuid.uuid4().hex[:8], "domains": [DOMAIN],
            "features": {"cmp": True}, "cmp_config": {"version": "1"}})
        assert response.status_code == 201, response.text
        yield config.url, sid
    finally:
        config.stop()


@pytest.fixture(scope="module")
def live_url(cmp_database: str, seeded_sid: tuple[str, str]) -> Iterator[str]:
    server = LiveServer(create_app(cmp_settings(cmp_database, seeded_sid[0])))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def test_serves_the_document_kept_in_the_package(live_url: str) -> None:
    response = requests.get(f"{live_url}/openapi.yaml", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/yaml")
    assert response.content == DOC.read_bytes()
    assert yaml.safe_load(response.content)["openapi"].startswith("3.")


def _seed(case: schemathesis.Case, sid: str) -> schemathesis.Case:
    """Random sids almost never exist; point a share of the cases at the seeded site."""
    if isinstance(case.body, dict) and "sid" in case.body:
        case.body["sid"] = sid
        if case.query and "sid" in case.query:
            case.query["sid"] = sid
    elif case.query and "sid" in case.query and case.method.upper() != "POST":
        case.query["sid"] = sid
    return case


def _run(operation: Any, mode: GenerationMode, base_url: str, sid: str | None = None) -> None:
    strategy = operation.as_strategy(generation_mode=mode)
    if sid is not None:
        strategy = strategy.map(lambda case: _seed(case, sid))
    check_operation(operation, mode, base_url, {"Origin": ORIGIN}, strategy=strategy)


def test_every_operation_conforms_to_the_document(live_url: str, seeded_sid: tuple[str, str],
                                                  cmp_database: str) -> None:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.yaml")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert sorted(f"{op.method.upper()} {op.path}" for op in operations) == [
        "GET /cmp/status", "OPTIONS /cmp/consent", "OPTIONS /cmp/status", "POST /cmp/consent"]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run(operation, mode, live_url)
        _run(operation, GenerationMode.POSITIVE, live_url, seeded_sid[1])
    # The seeded runs reached the success path, not only the 4xx ones.
    rows = asyncio.run(fetch(cmp_database, "SELECT count(*) AS n FROM consent_ledger "
                                           "WHERE sid = $1", seeded_sid[1]))
    assert rows[0]["n"] > 0
