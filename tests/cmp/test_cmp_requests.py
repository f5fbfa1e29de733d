"""Who may call viz-cmp and what it refuses: CORS, preflights, sites, validation, ops routes."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cmp_support import BID, ORIGIN, Sites, cmp_settings, fetch

from viz.cmp.app import create_app


def consent(sid: str, **extra: Any) -> dict[str, Any]:
    return {"sid": sid, "tier": 1, "banner_version": "v1", "bid": BID, **extra}


@pytest.mark.parametrize("origin", [ORIGIN, "https://www.news.example", "http://news.example:8080"])
async def test_the_sites_origins_get_a_credentialed_cors_grant(
        cmp: TestClient, sites: Sites, sid: str, origin: str) -> None:
    body = await sites.signed(consent(sid))
    for response in (await cmp.post("/cmp/consent", json=body, headers={"Origin": origin}),
                     await cmp.get("/cmp/status", params={"sid": sid},
                                   headers={"Origin": origin})):
        assert response.status == 200
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert response.headers["Vary"] == "Origin"
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("origin", [
    "null", "https://evil.example", "https://evil-news.example", "https://news.example.evil.net",
    "https://news.example@evil.example", "file://news.example", "https://news.example/path", "",
])
async def test_null_and_foreign_origins_are_refused_without_a_grant(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, origin: str) -> None:
    for response in (await cmp.post("/cmp/consent", json=consent(sid), headers={"Origin": origin}),
                     await cmp.get("/cmp/status", params={"sid": sid},
                                   headers={"Origin": origin})):
        assert response.status == 403
        assert (await response.json())["error"]["code"] == "origin_not_allowed"
        assert "Access-Control-Allow-Origin" not in response.headers
        assert response.headers["Vary"] == "Origin"
        assert "Set-Cookie" not in response.headers
    assert await fetch(cmp_database, "SELECT 1 FROM consent_ledger WHERE tid = $1",
                       sites.tid) == []


async def test_a_preflight_is_granted_only_to_the_named_sites_origins(
        cmp: TestClient, sites: Sites, sid: str) -> None:
    headers = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "content-type"}
    response = await cmp.options("/cmp/consent", params={"sid": sid}, headers=headers)
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert response.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert response.headers["Access-Control-Allow-Headers"] == "Content-Type"
    assert response.headers["Vary"] == "Origin"

    off = (await sites.create("off", features={"cmp": False}))["sid"]
    refused = [
        ("/cmp/consent", {"sid": sid}, {**headers, "Origin": "https://evil.example"}),
        ("/cmp/consent", {"sid": sid}, {**headers, "Origin": "null"}),
        ("/cmp/status", {"sid": "no-such-site"}, headers),
        ("/cmp/status", {"sid": off}, headers),
        ("/cmp/consent", {}, headers),
        ("/cmp/consent", {"sid": "!"}, headers),
    ]
    for path, params, sent in refused:
        response = await cmp.options(path, params=params, headers=sent)
        assert response.status == 204, (path, params)
        assert "Access-Control-Allow-Origin" not in response.headers, (path, params, sent)


async def test_an_unknown_site_is_404(cmp: TestClient, sites: Sites) -> None:
    response = await cmp.post("/cmp/consent", json=consent("no-such-site"),
                              headers={"Origin": ORIGIN})
    assert response.status == 404
    assert (await response.json())["error"] == {"code": "unknown_site",
                                                "message": "no site with sid 'no-such-site'"}
    response = await cmp.get("/cmp/status", params={"sid": "no-such-site"})
    assert response.status == 404


async def test_a_site_without_the_cmp_feature_is_403_readable_by_its_page(
        cmp: TestClient, sites: Sites) -> None:
    sid = (await sites.create("off", features={"cmp": False}))["sid"]
    response = await cmp.post("/cmp/consent", json=consent(sid), headers={"Origin": ORIGIN})
    assert response.status == 403
    assert (await response.json())["error"]["code"] == "cmp_disabled"
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # cmp.js can tell why
    response = await cmp.get("/cmp/status", params={"sid": sid})
    assert response.status == 403


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"tier": None}, "tier", "is required (0 = declined, 1 = analytics, 2 = personalisation)"),
    ({"tier": 3}, "tier", "must be the integer 0, 1 or 2"),
    ({"tier": "1"}, "tier", "must be the integer 0, 1 or 2"),
    ({"tier": True}, "tier", "must be the integer 0, 1 or 2"),
    ({"tier": 1.0}, "tier", "must be the integer 0, 1 or 2"),
    ({"bid": "short"}, "bid", "must be a browser id: 22 characters of A-Z, a-z, 0-9, '_' and "
                              "'-' (omit it or send null before one is issued)"),
    ({"bid": BID + "="}, "bid", None),
    ({"banner_version": None}, "banner_version",
     "is required: the version of the banner the visitor answered"),
    ({"banner_version": "x" * 65}, "banner_version",
     "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"),
    ({"banner_version": "v 1;x"}, "banner_version", None),
    ({"banner_version": ""}, "banner_version", None),
    ({"method": "gpc"}, "method", "must be one of banner, api, withdrawal (gpc is recorded by "
                                  "the server from the Sec-GPC header)"),
    ({"explicit": "yes"}, "explicit", "must be true or false"),
    ({"ip": "1.2.3.4"}, "ip", "unknown field; allowed: sid, bid, token, tier, banner_version, "
                              "method, explicit"),
])
async def test_invalid_fields_are_named_in_a_400(
        cmp: TestClient, sid: str, change: dict[str, Any], field: str,
        message: str | None) -> None:
    body = {k: v for k, v in {**consent(sid), **change}.items() if v is not None}
    response = await cmp.post("/cmp/consent", json=body, headers={"Origin": ORIGIN})
    assert response.status == 400
    error = (await response.json())["error"]
    assert (error["code"], error["field"]) == ("invalid_field", field)
    if message is not None:
        assert error["message"] == f"{field}: {message}"
    # The page may read why: the site and origin were known before the field was checked.
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN


@pytest.mark.parametrize(("data", "content_type", "status", "code", "text"), [
    (b"{not json", "application/json", 400, "malformed_json", "not valid JSON"),
    (b"", "application/json", 400, "malformed_json", "empty"),
    (b"[1, 2]", "application/json", 400, "invalid_field", "must be a JSON object"),
    (b'{"tier": 1}', "application/json", 400, "invalid_field", "sid: is required"),
    (b'{"sid": 5}', "application/json", 400, "invalid_field", "sid: must be 3 to 64"),
    (b'{"sid": "x"}', "application/x-www-form-urlencoded", 415, "unsupported_media_type",
     "application/json or text/plain"),
    (b"x" * 20_000, "text/plain", 413, "too_large", ""),
])
async def test_bodies_that_are_not_a_json_object_are_refused_clearly(
        cmp: TestClient, data: bytes, content_type: str, status: int, code: str,
        text: str) -> None:
    response = await cmp.post("/cmp/consent", data=data, headers={"Content-Type": content_type})
    assert response.status == status
    error = (await response.json())["error"]
    assert error["code"] == code and text in error["message"]


async def test_a_query_sid_must_match_the_body(cmp: TestClient, sid: str) -> None:
    response = await cmp.post("/cmp/consent", params={"sid": "other-site"}, json=consent(sid))
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "sid"


async def test_status_validates_its_query(cmp: TestClient, sid: str) -> None:
    response = await cmp.get("/cmp/status")
    assert response.status == 400
    assert (await response.json())["error"]["message"] == "sid: is required"
    response = await cmp.get("/cmp/status", params={"sid": sid, "bid": "nope"})
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "bid"


async def test_ops_routes_report_health_readiness_and_metrics(
        cmp: TestClient, sites: Sites, sid: str) -> None:
    assert (await cmp.get("/healthz")).status == 200
    response = await cmp.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"postgres": "ok", "config": "ok"}
    await cmp.post("/cmp/consent", json=await sites.signed(consent(sid, tier=0)))
    metrics = await (await cmp.get("/metrics")).text()
    assert 'viz_cmp_decisions_total{method="banner",tier="0"} 1.0' in metrics
    assert 'viz_cmp_decisions_total{method="withdrawal",tier="2"} 0.0' in metrics
    assert "viz_cmp_gpc_capped_total 0.0" in metrics


async def test_readyz_fails_when_viz_config_is_unreachable(
        aiohttp_client: Any, cmp_database: str) -> None:
    client = await aiohttp_client(create_app(cmp_settings(
        cmp_database, "http://127.0.0.1:9", VIZ_CONFIG_TIMEOUT_S="0.5")))
    response = await client.get("/readyz")
    assert response.status == 503
    checks = (await response.json())["checks"]
    assert checks["postgres"] == "ok" and checks["config"].startswith("unavailable")
    # A site it cannot look up is a 503 to retry, not a 404 or a 500.
    response = await client.post("/cmp/consent", json=consent("some-site"))
    assert response.status == 503 and response.headers["Retry-After"] == "1"
