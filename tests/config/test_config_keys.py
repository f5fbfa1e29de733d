"""Secret keys: served only by the internal API, rotated with a grace period on the injected clock."""

from __future__ import annotations

import asyncpg
from aiohttp.test_utils import TestClient
from config_support import ADMIN, GRACE_S, SERVICE, create_site

from viz.common.clock import ManualClock
from viz.common.sites import SiteRecord


async def _record(client: TestClient, sid: str = "news-main") -> SiteRecord:
    response = await client.get(f"/internal/sites/{sid}", headers=SERVICE)
    assert response.status == 200, await response.text()
    assert response.headers["Cache-Control"] == "no-store"
    return SiteRecord.from_wire(await response.json())


async def test_internal_lookup_returns_the_site_record(client: TestClient) -> None:
    await create_site(client, features={"recs": True}, cmp_config={"banner": "v1"})
    record = await _record(client)
    assert (record.sid, record.tid, record.name, record.domains) == (
        "news-main", "news", "News", ("news.example",))
    assert dict(record.features) == {"collect": True, "cmp": True, "recs": True}
    assert dict(record.cmp_config) == {"banner": "v1"} and dict(record.recs_config) == {}
    assert record.version == 1
    assert len(record.secret_key) == 32
    assert record.previous_key is None and record.previous_key_expires_at is None


async def test_each_site_gets_its_own_random_key(client: TestClient) -> None:
    await create_site(client, "site-one")
    await create_site(client, "site-two")
    assert (await _record(client, "site-one")).secret_key != (
        await _record(client, "site-two")).secret_key


async def test_internal_lookup_of_an_unknown_site_is_404(client: TestClient) -> None:
    for sid in ("none-such", "x", "bad%20sid"):
        response = await client.get(f"/internal/sites/{sid}", headers=SERVICE)
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "unknown_site"


async def test_rotation_keeps_the_previous_key_until_the_grace_period_ends(
        client: TestClient, clock: ManualClock) -> None:
    await create_site(client)
    before = await _record(client)

    response = await client.post("/admin/sites/news-main/rotate-key", headers=ADMIN)
    assert response.status == 200
    site = await response.json()
    assert site["version"] == 2
    expected_expiry = clock.time() + GRACE_S

    after = await _record(client)
    assert after.secret_key != before.secret_key and len(after.secret_key) == 32
    assert after.previous_key == before.secret_key
    assert after.previous_key_expires_at == expected_expiry
    assert after.version == 2
    assert after.verification_keys(clock.time()) == (after.secret_key, before.secret_key)

    clock.advance(GRACE_S - 1)
    assert (await _record(client)).previous_key == before.secret_key
    assert (await (await client.get("/admin/sites/news-main", headers=ADMIN)).json())[
        "previous_key_expires_at"] is not None

    clock.advance(1)
    expired = await _record(client)
    assert expired.previous_key is None and expired.previous_key_expires_at is None
    assert expired.secret_key == after.secret_key
    assert (await (await client.get("/admin/sites/news-main", headers=ADMIN)).json())[
        "previous_key_expires_at"] is None


async def test_a_second_rotation_keeps_only_the_key_it_replaced(
        client: TestClient, clock: ManualClock) -> None:
    await create_site(client)
    first = (await _record(client)).secret_key
    await client.post("/admin/sites/news-main/rotate-key", headers=ADMIN)
    second = (await _record(client)).secret_key
    clock.advance(60)
    await client.post("/admin/sites/news-main/rotate-key", headers=ADMIN)
    record = await _record(client)
    assert record.previous_key == second
    assert first not in (record.secret_key, record.previous_key)
    assert record.previous_key_expires_at == clock.time() + GRACE_S
    assert record.version == 3


async def test_changes_show_up_in_the_internal_lookup(client: TestClient) -> None:
    await create_site(client)
    await client.patch("/admin/sites/news-main", headers=ADMIN,
                       json={"domains": ["a.example"], "features": {"collect": False}})
    record = await _record(client)
    assert record.domains == ("a.example",)
    assert record.features["collect"] is False
    assert record.version == 2


async def test_database_timestamps_follow_the_injected_clock(
        client: TestClient, clock: ManualClock, config_dsn: str) -> None:
    site = await create_site(client)
    assert site["created_at"] == "2023-11-14T22:13:20+00:00"  # ManualClock's start
    clock.advance(3600)
    patched = await (await client.patch("/admin/sites/news-main", headers=ADMIN,
                                        json={"name": "Later"})).json()
    assert patched["updated_at"] == "2023-11-14T23:13:20+00:00"
    conn = await asyncpg.connect(config_dsn)
    try:
        stored = await conn.fetchval("SELECT length(secret_key) FROM sites WHERE sid = $1",
                                     "news-main")
    finally:
        await conn.close()
    assert stored == 32
