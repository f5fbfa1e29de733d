"""The admin site API end to end: CRUD, version bumps, tenants, and what it never reveals."""

from __future__ import annotations

import json

from aiohttp.test_utils import TestClient
from config_support import ADMIN, create_site

from viz.common.sites import DEFAULT_FEATURES


async def test_creates_a_site_with_defaults_and_a_new_tenant(client: TestClient) -> None:
    response = await client.post("/admin/sites", json={"sid": "blog", "tid": "acme"},
                                 headers=ADMIN)
    assert response.status == 201
    assert response.headers["Location"] == "/admin/sites/blog"
    assert response.headers["Cache-Control"] == "no-store"
    site = await response.json()
    assert site["sid"] == "blog" and site["tid"] == "acme" and site["name"] == "blog"
    assert site["domains"] == [] and site["features"] == dict(DEFAULT_FEATURES)
    assert site["cmp_config"] == {} and site["recs_config"] == {}
    assert site["version"] == 1 and site["previous_key_expires_at"] is None

    tenants = await (await client.get("/admin/tenants", headers=ADMIN)).json()
    assert [(t["tid"], t["name"], t["site_count"]) for t in tenants["tenants"]] == [
        ("acme", "acme", 1)]


async def test_lists_gets_updates_and_deletes_a_site(client: TestClient) -> None:
    await create_site(client, "news-main", features={"recs": True},
                      cmp_config={"banner": {"title": "Cookies?"}})
    await create_site(client, "news-sport", tid="sport")

    listed = await (await client.get("/admin/sites", headers=ADMIN)).json()
    assert [s["sid"] for s in listed["sites"]] == ["news-main", "news-sport"]
    only_news = await (await client.get("/admin/sites?tid=news", headers=ADMIN)).json()
    assert [s["sid"] for s in only_news["sites"]] == ["news-main"]

    got = await (await client.get("/admin/sites/news-main", headers=ADMIN)).json()
    assert got["features"] == {"collect": True, "cmp": True, "recs": True}
    assert got["cmp_config"] == {"banner": {"title": "Cookies?"}}

    response = await client.patch("/admin/sites/news-main", headers=ADMIN, json={
        "name": "News (main)", "domains": ["News.Example", "www.news.example", "news.example"],
        "features": {"cmp": False}, "recs_config": {"exclude": ["/login"]}})
    assert response.status == 200
    patched = await response.json()
    assert patched["name"] == "News (main)"
    assert patched["domains"] == ["news.example", "www.news.example"]
    # features merge key by key; configs are replaced.
    assert patched["features"] == {"collect": True, "cmp": False, "recs": True}
    assert patched["cmp_config"] == {"banner": {"title": "Cookies?"}}
    assert patched["recs_config"] == {"exclude": ["/login"]}
    assert patched["updated_at"] >= patched["created_at"]

    response = await client.delete("/admin/sites/news-main", headers=ADMIN)
    assert response.status == 204
    assert (await client.get("/admin/sites/news-main", headers=ADMIN)).status == 404
    again = await client.delete("/admin/sites/news-main", headers=ADMIN)
    assert again.status == 404
    assert (await again.json())["error"] == {
        "code": "not_found", "message": "no site with sid 'news-main'"}


async def test_every_change_bumps_the_version(client: TestClient) -> None:
    site = await create_site(client)
    assert site["version"] == 1
    versions = []
    for body in ({"name": "Renamed"}, {"domains": ["other.example"]}, {"features": {"recs": True}},
                 {"cmp_config": {"tiers": [0, 1, 2]}}, {"recs_config": {"n": 5}}):
        response = await client.patch("/admin/sites/news-main", json=body, headers=ADMIN)
        versions.append((await response.json())["version"])
    rotated = await client.post("/admin/sites/news-main/rotate-key", headers=ADMIN)
    versions.append((await rotated.json())["version"])
    assert versions == [2, 3, 4, 5, 6, 7]
    got = await (await client.get("/admin/sites/news-main", headers=ADMIN)).json()
    assert got["version"] == 7


async def test_duplicate_sid_is_a_conflict(client: TestClient) -> None:
    await create_site(client, "news-main")
    response = await client.post("/admin/sites", headers=ADMIN,
                                 json={"sid": "news-main", "tid": "other"})
    assert response.status == 409
    assert (await response.json())["error"] == {
        "code": "conflict", "message": "a site with sid 'news-main' already exists"}
    # The failed create left no stray tenant behind (one transaction).
    tenants = await (await client.get("/admin/tenants", headers=ADMIN)).json()
    assert [t["tid"] for t in tenants["tenants"]] == ["news"]


async def test_unknown_site_is_not_found_everywhere(client: TestClient) -> None:
    for method, path in (("GET", "/admin/sites/nope-site"), ("PATCH", "/admin/sites/nope-site"),
                         ("DELETE", "/admin/sites/nope-site"),
                         ("POST", "/admin/sites/nope-site/rotate-key"),
                         ("GET", "/admin/sites/x")):  # too short to ever exist
        response = await client.request(method, path, headers=ADMIN, json={"name": "x"})
        assert response.status == 404, (method, path)
        assert (await response.json())["error"]["code"] == "not_found"


async def test_creates_and_lists_tenants(client: TestClient) -> None:
    response = await client.post("/admin/tenants", json={"tid": "news", "name": "News Group"},
                                 headers=ADMIN)
    assert response.status == 201
    assert (await response.json())["name"] == "News Group"
    await create_site(client, "news-main", tid="news")
    duplicate = await client.post("/admin/tenants", json={"tid": "news"}, headers=ADMIN)
    assert duplicate.status == 409
    assert (await duplicate.json())["error"]["message"] == "a tenant with tid 'news' already exists"
    await client.post("/admin/tenants", json={"tid": "arts"}, headers=ADMIN)

    tenants = await (await client.get("/admin/tenants", headers=ADMIN)).json()
    assert [(t["tid"], t["name"], t["site_count"]) for t in tenants["tenants"]] == [
        ("arts", "arts", 0), ("news", "News Group", 1)]


async def test_admin_responses_never_contain_the_secret_key(client: TestClient) -> None:
    await create_site(client)
    await client.post("/admin/sites/news-main/rotate-key", headers=ADMIN)
    record = await (await client.get("/internal/sites/news-main", headers={
        "Authorization": "Bearer service-token-for-tests-abcdefgh"})).json()
    secrets = [record["keys"]["current"], record["keys"]["previous"]]
    assert all(secrets)

    bodies = []
    for method, path in (("GET", "/admin/sites"), ("GET", "/admin/sites/news-main"),
                         ("PATCH", "/admin/sites/news-main"),
                         ("POST", "/admin/sites/news-main/rotate-key")):
        response = await client.request(method, path, headers=ADMIN, json={"name": "n"})
        bodies.append(await response.text())
    record = await (await client.get("/internal/sites/news-main", headers={
        "Authorization": "Bearer service-token-for-tests-abcdefgh"})).json()
    secrets += [record["keys"]["current"]]
    for body in bodies:
        assert "key\"" not in body and "secret" not in body
        for secret in secrets:
            assert secret not in body
            assert secret.upper() not in body
        assert set(json.loads(body).get("sites", [{}])[0]) <= {
            "sid", "tid", "name", "domains", "features", "cmp_config", "recs_config", "version",
            "created_at", "updated_at", "previous_key_expires_at"}
