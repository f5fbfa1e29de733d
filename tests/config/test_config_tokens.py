"""API tokens: shown once, stored as a SHA-256 digest, scoped to sites, revocable."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from config_support import ADMIN, create_site

from viz.common.clock import ManualClock
from viz.common.settings import PostgresSettings
from viz.config.store import ConfigStore, open_pool


@pytest.fixture
async def store(config_dsn: str, clock: ManualClock) -> ConfigStore:
    pool = await open_pool(PostgresSettings(dsn=config_dsn, pool_min=1, pool_max=2,
                                            connect_timeout_s=5.0))
    yield ConfigStore(pool, clock=clock, key_grace_s=900)
    await pool.close()


async def _create_token(client: TestClient, *site_ids: str, name: str = "dashboard") -> dict:
    response = await client.post("/admin/tokens", json={"name": name, "site_ids": list(site_ids)},
                                 headers=ADMIN)
    assert response.status == 201, await response.text()
    return await response.json()


async def test_creates_a_token_and_shows_it_only_once(client: TestClient,
                                                      config_dsn: str) -> None:
    await create_site(client, "news-main")
    await create_site(client, "news-sport")
    created = await _create_token(client, "news-main", "news-sport", "news-main")
    plain = created["token"]
    assert plain.startswith("vzt_") and len(plain) == 47
    assert created["prefix"] == plain[:12]
    assert created["site_ids"] == ["news-main", "news-sport"]
    assert created["last_used_at"] is None and created["revoked_at"] is None

    listed = await (await client.get("/admin/tokens", headers=ADMIN)).text()
    assert plain not in listed and plain[12:20] not in listed
    assert hashlib.sha256(plain.encode()).hexdigest() not in listed
    tokens = (await (await client.get("/admin/tokens", headers=ADMIN)).json())["tokens"]
    assert [set(t) for t in tokens] == [{"id", "name", "prefix", "site_ids", "created_at",
                                         "last_used_at", "revoked_at"}]

    conn = await asyncpg.connect(config_dsn)
    try:
        rows = await conn.fetch("SELECT * FROM api_tokens")
    finally:
        await conn.close()
    assert len(rows) == 1
    assert bytes(rows[0]["token_hash"]) == hashlib.sha256(plain.encode()).digest()
    stored = repr([dict(r) for r in rows])
    assert plain not in stored and plain[12:] not in stored


async def test_lookup_returns_the_scope_of_a_valid_token(client: TestClient, store: ConfigStore,
                                                         clock: ManualClock) -> None:
    await create_site(client, "news-main")
    plain = (await _create_token(client, "news-main"))["token"]

    scope = await store.lookup_token(plain)
    assert scope is not None
    assert scope.allows("news-main") and not scope.allows("news-sport")
    tokens = (await (await client.get("/admin/tokens", headers=ADMIN)).json())["tokens"]
    assert tokens[0]["last_used_at"] == "2023-11-14T22:13:20+00:00"
    assert scope.token_id == tokens[0]["id"]

    # Used again within a minute: no write; a minute later: recorded.
    clock.advance(30)
    await store.lookup_token(plain)
    tokens = (await (await client.get("/admin/tokens", headers=ADMIN)).json())["tokens"]
    assert tokens[0]["last_used_at"] == "2023-11-14T22:13:20+00:00"
    clock.advance(30)
    await store.lookup_token(plain)
    tokens = (await (await client.get("/admin/tokens", headers=ADMIN)).json())["tokens"]
    assert tokens[0]["last_used_at"] == "2023-11-14T22:14:20+00:00"


async def test_lookup_rejects_unknown_and_malformed_tokens(client: TestClient,
                                                           store: ConfigStore) -> None:
    await create_site(client, "news-main")
    plain = (await _create_token(client, "news-main"))["token"]
    tampered = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    for candidate in (tampered, "", "vzt_", plain + "x", plain[4:], "Bearer " + plain,
                      "vzt_\udcff" + plain[5:]):
        assert await store.lookup_token(candidate) is None


async def test_a_revoked_token_stops_working(client: TestClient, store: ConfigStore,
                                             clock: ManualClock) -> None:
    await create_site(client, "news-main")
    created = await _create_token(client, "news-main")
    other = await _create_token(client, "news-main", name="other")
    assert await store.lookup_token(created["token"]) is not None

    clock.advance(5)
    response = await client.delete(f"/admin/tokens/{created['id']}", headers=ADMIN)
    assert response.status == 204
    assert await store.lookup_token(created["token"]) is None
    assert await store.lookup_token(other["token"]) is not None

    # Revoking twice is fine and keeps the first revocation time.
    clock.advance(5)
    assert (await client.delete(f"/admin/tokens/{created['id']}", headers=ADMIN)).status == 204
    tokens = (await (await client.get("/admin/tokens", headers=ADMIN)).json())["tokens"]
    by_id = {t["id"]: t for t in tokens}
    assert by_id[created["id"]]["revoked_at"] == "2023-11-14T22:13:25+00:00"
    assert by_id[other["id"]]["revoked_at"] is None


async def test_revoking_an_unknown_token_is_404(client: TestClient) -> None:
    for token_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = await client.delete(f"/admin/tokens/{token_id}", headers=ADMIN)
        assert response.status == 404
        assert (await response.json())["error"]["message"] == f"no API token with id {token_id!r}"


async def test_introspection_tells_a_service_which_sites_a_token_may_read(
        client: TestClient) -> None:
    from config_support import SERVICE

    await create_site(client, "news-main")
    created = await _create_token(client, "news-main")
    url = "/internal/tokens/introspect"
    response = await client.post(url, json={"token": created["token"]}, headers=SERVICE)
    assert response.status == 200
    assert await response.json() == {"token_id": created["id"], "sites": ["news-main"]}

    response = await client.post(url, json={"token": "vzt_" + "x" * 43}, headers=SERVICE)
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "unknown_token"
    # The admin token is not a service token.
    response = await client.post(url, json={"token": created["token"]}, headers=ADMIN)
    assert response.status == 401

    await client.delete(f"/admin/tokens/{created['id']}", headers=ADMIN)
    response = await client.post(url, json={"token": created["token"]}, headers=SERVICE)
    assert response.status == 404
