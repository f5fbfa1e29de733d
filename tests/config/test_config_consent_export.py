"""GET /admin/consent/{bid}: a visitor's consent records and ledger, for access requests."""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime, timedelta

import asyncpg
from aiohttp.test_utils import TestClient
from config_support import ADMIN, create_site

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def new_bid() -> str:
    # The ledger is append-only (no TRUNCATE between tests): each test uses browser ids of its own.
    return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


async def seed(dsn: str, bid: str, other_bid: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO consent_records (bid, tid, tier, sid, banner_version, consented_at, "
            "updated_at) VALUES ($1, 'news', 0, 'news-main', 'v2', $2, $2), "
            "($3, 'news', 1, 'news-main', 'v2', $2, $2)", bid, T0 + timedelta(hours=1), other_bid)
        rows = [(bid, T0, 2, None, None, "banner", False),
                (bid, T0 + timedelta(minutes=30), 1, 2, 2, "gpc", True),
                (bid, T0 + timedelta(hours=1), 0, 1, None, "withdrawal", False),
                (other_bid, T0, 1, None, None, "banner", False)]
        await conn.executemany(
            "INSERT INTO consent_ledger (bid, at, tid, sid, tier, previous_tier, requested_tier, "
            "method, gpc, banner_version, banner_hash, source) "
            "VALUES ($1, $2, 'news', 'news-main', $3, $4, $5, $6, $7, 'v2', 'sha256:ab', "
            "'news.example')", rows)
    finally:
        await conn.close()


async def test_exports_the_current_records_and_the_full_ledger(
        client: TestClient, config_dsn: str) -> None:
    await create_site(client)
    bid, other = new_bid(), new_bid()
    await seed(config_dsn, bid, other)

    response = await client.get(f"/admin/consent/{bid}", headers=ADMIN)
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.json()
    assert (body["bid"], body["tid"]) == (bid, None)
    assert body["records"] == [{
        "tid": "news", "sid": "news-main", "tier": 0, "banner_version": "v2",
        "consented_at": (T0 + timedelta(hours=1)).isoformat(),
        "updated_at": (T0 + timedelta(hours=1)).isoformat()}]
    assert [(e["tier"], e["previous_tier"], e["requested_tier"], e["method"], e["gpc"])
            for e in body["ledger"]] == [(2, None, None, "banner", False),
                                         (1, 2, 2, "gpc", True), (0, 1, None, "withdrawal", False)]
    first = body["ledger"][0]
    assert set(first) == {"consent_id", "at", "tid", "sid", "tier", "previous_tier",
                          "requested_tier", "explicit", "gpc", "method", "source",
                          "banner_version", "banner_hash"}
    assert (first["at"], first["source"], first["banner_hash"]) == (
        T0.isoformat(), "news.example", "sha256:ab")


async def test_filters_by_tenant_and_answers_empty_when_nothing_is_held(
        client: TestClient, config_dsn: str) -> None:
    await create_site(client)
    bid = new_bid()
    await seed(config_dsn, bid, new_bid())
    body = await (await client.get(f"/admin/consent/{bid}", params={"tid": "other"},
                                   headers=ADMIN)).json()
    assert (body["tid"], body["records"], body["ledger"]) == ("other", [], [])
    body = await (await client.get(f"/admin/consent/{new_bid()}", headers=ADMIN)).json()
    assert (body["records"], body["ledger"]) == ([], [])


async def test_refuses_a_malformed_browser_id_or_tenant_and_anonymous_callers(
        client: TestClient) -> None:
    response = await client.get("/admin/consent/not-a-bid", headers=ADMIN)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "bid"
    response = await client.get(f"/admin/consent/{new_bid()}", params={"tid": "a:b"},
                                headers=ADMIN)
    assert response.status == 400
    assert (await response.json())["error"]["field"] == "tid"
    response = await client.get(f"/admin/consent/{new_bid()}")
    assert response.status == 401
