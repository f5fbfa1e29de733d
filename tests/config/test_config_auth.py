"""Every admin and internal route refuses requests without the right bearer token."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient
from config_support import ADMIN, ADMIN_TOKEN, SERVICE, SERVICE_TOKEN, create_site

ADMIN_ROUTES = [
    ("GET", "/admin/sites"), ("POST", "/admin/sites"), ("GET", "/admin/sites/news-main"),
    ("PATCH", "/admin/sites/news-main"), ("DELETE", "/admin/sites/news-main"),
    ("POST", "/admin/sites/news-main/rotate-key"), ("GET", "/admin/tenants"),
    ("POST", "/admin/tenants"), ("GET", "/admin/tokens"), ("POST", "/admin/tokens"),
    ("DELETE", "/admin/tokens/00000000-0000-0000-0000-000000000000"),
]
INTERNAL_ROUTES = [("GET", "/internal/sites/news-main")]

BAD_HEADERS = {
    "no header": ({}, "missing Authorization header; send 'Bearer <{what}>'", None),
    "wrong scheme": ({"Authorization": f"Basic {ADMIN_TOKEN}"},
                     "the Authorization header must be 'Bearer <{what}>'", "invalid_request"),
    "empty bearer": ({"Authorization": "Bearer "},
                     "the Authorization header must be 'Bearer <{what}>'", "invalid_request"),
    "wrong token": ({"Authorization": "Bearer not-the-right-token-at-all"},
                    "invalid {what}", "invalid_token"),
    "token prefix": ({"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"}, "invalid {what}",
                     "invalid_token"),
    "non-ascii": ({"Authorization": "Bearer tökén"}, "invalid {what}", "invalid_token"),
}


async def _assert_refused(client: TestClient, method: str, path: str, headers: dict[str, str],
                          message: str, error: str | None, realm: str) -> None:
    response = await client.request(method, path, headers=headers, json={"name": "x"})
    assert response.status == 401, (method, path)
    assert (await response.json())["error"] == {"code": "unauthorized", "message": message}
    challenge = f'Bearer realm="{realm}"' + (f', error="{error}"' if error else "")
    assert response.headers["WWW-Authenticate"] == challenge


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
async def test_admin_routes_refuse_a_bad_authorization(client: TestClient, case: str) -> None:
    await create_site(client)
    headers, message, error = BAD_HEADERS[case]
    for method, path in ADMIN_ROUTES:
        await _assert_refused(client, method, path, headers,
                              message.format(what="admin token"), error, "viz-admin")
    # Nothing was changed by any of the refused requests.
    site = await (await client.get("/admin/sites/news-main", headers=ADMIN)).json()
    assert site["version"] == 1


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
async def test_internal_routes_refuse_a_bad_authorization(client: TestClient, case: str) -> None:
    headers, message, error = BAD_HEADERS[case]
    for method, path in INTERNAL_ROUTES:
        await _assert_refused(client, method, path, headers,
                              message.format(what="service token"), error, "viz-internal")


async def test_admin_token_does_not_open_the_internal_api(client: TestClient) -> None:
    await create_site(client)
    await _assert_refused(client, "GET", "/internal/sites/news-main", ADMIN,
                          "invalid service token", "invalid_token", "viz-internal")


async def test_service_token_does_not_open_the_admin_api(client: TestClient) -> None:
    await create_site(client)
    for method, path in ADMIN_ROUTES:
        await _assert_refused(client, method, path, SERVICE, "invalid admin token",
                              "invalid_token", "viz-admin")


async def test_the_scheme_is_case_insensitive(client: TestClient) -> None:
    response = await client.get("/admin/sites", headers={"Authorization": f"bearer {ADMIN_TOKEN}"})
    assert response.status == 200
    response = await client.get("/internal/sites/none-such",
                                headers={"Authorization": f"BEARER {SERVICE_TOKEN}"})
    assert response.status == 404


async def test_ops_endpoints_need_no_token(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["checks"] == {"postgres": "ok"}
    assert (await client.get("/metrics")).status == 200
    assert (await client.get("/openapi.yaml")).status == 200
