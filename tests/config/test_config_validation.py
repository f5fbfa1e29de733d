"""Bad admin requests get a 4xx JSON error naming what to fix, never a 500."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from config_support import ADMIN, create_site

from viz.config.models import parse_domain

VALID = {"sid": "news-main", "tid": "news"}


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


async def _error(response: Any, status: int) -> dict:
    assert response.status == status, await response.text()
    assert response.content_type == "application/json"
    return (await response.json())["error"]


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"tid": "news"}, "sid", "sid: is required"),
    ({"sid": "news-main"}, "tid", "tid: is required"),
    ({**VALID, "sid": "ab"}, "sid",
     "sid: must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ({**VALID, "sid": "a" * 65}, "sid",
     "sid: must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ({**VALID, "sid": "news main"}, "sid",
     "sid: must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ({**VALID, "sid": "news\n"}, "sid",
     "sid: must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ({**VALID, "sid": 123}, "sid", "sid: must be 3 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ({**VALID, "tid": "news:1"}, "tid",
     "tid: must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'"),
    ({**VALID, "name": ""}, "name", "name: must be 1 to 200 characters and not blank"),
    ({**VALID, "name": "   "}, "name", "name: must be 1 to 200 characters and not blank"),
    ({**VALID, "name": "x" * 201}, "name", "name: must be 1 to 200 characters and not blank"),
    ({**VALID, "name": "a\x00b"}, "name", "name: must not contain NUL characters"),
    ({**VALID, "name": "\ud800"}, "name", "name: must be valid Unicode text"),
    ({**VALID, "domains": "example.com"}, "domains", "domains: must be a list of hostnames"),
    ({**VALID, "domains": ["ok.example", "https://example.com"]}, "domains[1]",
     "domains[1]: must be a hostname such as example.com (no scheme, port or path)"),
    ({**VALID, "domains": ["example.com:8080"]}, "domains[0]", None),
    ({**VALID, "domains": ["example.com/path"]}, "domains[0]", None),
    ({**VALID, "domains": ["-bad.example"]}, "domains[0]", None),
    ({**VALID, "domains": ["intranet"]}, "domains[0]", None),
    ({**VALID, "domains": ["example.com."]}, "domains[0]", None),
    ({**VALID, "domains": [""]}, "domains[0]", None),
    ({**VALID, "domains": [42]}, "domains[0]", None),
    ({**VALID, "domains": ["d.example"] * 101}, "domains", "domains: at most 100 domains"),
    ({**VALID, "features": {"ads": True}}, "features.ads",
     "features.ads: unknown feature; known: collect, cmp, recs"),
    ({**VALID, "features": {"recs": "yes"}}, "features.recs", "features.recs: must be true or false"),
    ({**VALID, "features": [True]}, "features",
     "features: must be an object with booleans collect, cmp, recs"),
    ({**VALID, "cmp_config": []}, "cmp_config", "cmp_config: must be a JSON object"),
    ({**VALID, "recs_config": "x"}, "recs_config", "recs_config: must be a JSON object"),
    ({**VALID, "cmp_config": {"text": "x" * 20_000}}, "cmp_config",
     "cmp_config: is 20011 bytes as JSON; the limit is 16384"),
    ({**VALID, "cmp_config": {"a": {"b": "\x00"}}}, "cmp_config",
     "cmp_config: must not contain NUL characters"),
    ({**VALID, "recs_config": {"a": _nested(20)}}, "recs_config",
     "recs_config: nested deeper than 16 levels"),
    ({**VALID, "secret_key": "00"}, "secret_key",
     "secret_key: unknown field; allowed: sid, tid, name, domains, features, cmp_config, "
     "recs_config"),
    (["not", "an", "object"], "$", "$: the request body must be a JSON object"),
])
async def test_rejects_an_invalid_new_site(client: TestClient, body: Any, field: str,
                                           message: str | None) -> None:
    error = await _error(await client.post("/admin/sites", json=body, headers=ADMIN), 400)
    assert error["code"] == "invalid_field"
    assert error["field"] == field
    if message is not None:
        assert error["message"] == message
    listed = await (await client.get("/admin/sites", headers=ADMIN)).json()
    assert listed["sites"] == []


@pytest.mark.parametrize(("body", "field", "message"), [
    ({}, "$", "$: nothing to change; send one or more of name, domains, features, cmp_config, "
              "recs_config"),
    ({"sid": "other"}, "sid", "sid: cannot be changed"),
    ({"tid": "other"}, "tid", "tid: cannot be changed"),
    ({"name": None}, "name", "name: must be a string"),
    ({"domains": ["bad domain"]}, "domains[0]", None),
    ({"features": {"recs": 1}}, "features.recs", "features.recs: must be true or false"),
])
async def test_rejects_an_invalid_patch_and_keeps_the_site(client: TestClient, body: Any,
                                                           field: str, message: str | None) -> None:
    await create_site(client)
    response = await client.patch("/admin/sites/news-main", json=body, headers=ADMIN)
    error = await _error(response, 400)
    assert error["field"] == field
    if message is not None:
        assert error["message"] == message
    site = await (await client.get("/admin/sites/news-main", headers=ADMIN)).json()
    assert site["version"] == 1


@pytest.mark.parametrize("raw", [b"{", b"{'sid': 1}", b"\xff\xfe", b"", b"[" * 50_000,
                                 b'{"sid": NaN}'])
async def test_malformed_json_is_a_400(client: TestClient, raw: bytes) -> None:
    response = await client.post("/admin/sites", data=raw, headers={
        **ADMIN, "Content-Type": "application/json"})
    error = await _error(response, 400)
    assert error["code"] == "malformed_json"
    assert error["message"].startswith(("the request body is not valid JSON",
                                        "the request body is empty"))


async def test_a_body_that_is_not_json_is_a_415(client: TestClient) -> None:
    response = await client.post("/admin/sites", data=b"sid=news-main&tid=news", headers={
        **ADMIN, "Content-Type": "application/x-www-form-urlencoded"})
    error = await _error(response, 415)
    assert error == {"code": "unsupported_media_type",
                     "message": "send the body as application/json, not "
                                "application/x-www-form-urlencoded"}


async def test_an_oversized_body_is_a_413(client: TestClient) -> None:
    body = b'{"sid": "news-main", "tid": "news", "name": "' + b"x" * 300_000 + b'"}'
    response = await client.post("/admin/sites", data=body, headers={
        **ADMIN, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"]["code"] == "too_large"


async def test_rejects_an_invalid_tenant_and_tenant_filter(client: TestClient) -> None:
    error = await _error(await client.post("/admin/tenants", json={"tid": "a:b"}, headers=ADMIN),
                         400)
    assert error["field"] == "tid"
    error = await _error(await client.get("/admin/sites?tid=", headers=ADMIN), 400)
    assert error["field"] == "tid"


@pytest.mark.parametrize(("body", "field", "message"), [
    ({"site_ids": ["news-main"]}, "name", "name: is required"),
    ({"name": "dash"}, "site_ids", "site_ids: is required"),
    ({"name": "dash", "site_ids": []}, "site_ids",
     "site_ids: must be a list of 1 to 100 site ids"),
    ({"name": "dash", "site_ids": ["x"]}, "site_ids[0]", None),
    ({"name": "dash", "site_ids": ["news-main", "gone-site"]}, "site_ids",
     "site_ids: unknown site(s): gone-site"),
])
async def test_rejects_an_invalid_token_request(client: TestClient, body: Any, field: str,
                                                message: str | None) -> None:
    await create_site(client)
    error = await _error(await client.post("/admin/tokens", json=body, headers=ADMIN), 400)
    assert error["field"] == field
    if message is not None:
        assert error["message"] == message


@pytest.mark.parametrize(("given", "stored"), [
    ("example.com", "example.com"),
    ("WWW.Example.COM", "www.example.com"),
    ("localhost", "localhost"),
    ("127.0.0.1", "127.0.0.1"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a-b.c-d.example", "a-b.c-d.example"),
])
def test_accepts_hostnames_in_their_stored_form(given: str, stored: str) -> None:
    assert parse_domain(given, "domains[0]") == stored
