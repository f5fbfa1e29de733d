"""POST /cmp/consent: the current state and its proof are written together, or not at all."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from cmp_support import (
    BID,
    CMP_CONFIG,
    ORIGIN,
    OTHER_BID,
    Sites,
    cmp_settings,
    expected_banner_hash,
    fetch,
)

import viz.cmp.store
from viz.cmp.models import Choice
from viz.cmp.store import ConsentStore, open_pool
from viz.common.clock import ManualClock


async def post(sites: Sites, body: dict[str, Any], *, origin: str | None = ORIGIN,
               gpc: bool = False, sign: bool = True, **headers: str) -> tuple[int, Any, Any]:
    """POST the decision as cmp.js does: with collect's current token for its bid (``sign``)."""
    sent = dict(headers)
    if origin is not None:
        sent["Origin"] = origin
    if gpc:
        sent["Sec-GPC"] = "1"
    if sign:
        body = await sites.signed(body)
    response = await sites.client.post("/cmp/consent", json=body, headers=sent)
    return response.status, await response.json(), response


def choice(sid: str, tier: int, bid: str | None = BID, **extra: Any) -> dict[str, Any]:
    return {"sid": sid, "tier": tier, "banner_version": "2025-01",
            **({"bid": bid} if bid is not None else {}), **extra}


async def records(dsn: str, tid: str) -> list[Any]:
    return await fetch(dsn, "SELECT * FROM consent_records WHERE tid = $1 ORDER BY bid", tid)


async def ledger(dsn: str, tid: str) -> list[Any]:
    return await fetch(dsn, "SELECT * FROM consent_ledger WHERE tid = $1 ORDER BY id", tid)


async def test_a_choice_upserts_the_current_state_and_appends_its_proof(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, clock: ManualClock) -> None:
    status, body, response = await post(sites, choice(sid, 1))
    assert status == 200, body
    assert body["tier"] == body["requested_tier"] == 1
    assert (body["previous_tier"], body["gpc"], body["gpc_capped"], body["method"]) == (
        None, False, False, "banner")
    assert body["banner_hash"] == expected_banner_hash(CMP_CONFIG)
    assert body["consented_at"] == datetime.fromtimestamp(clock.time(), UTC).isoformat()

    [record] = await records(cmp_database, sites.tid)
    assert (record["bid"], record["sid"], record["tier"], record["banner_version"]) == (
        BID, sid, 1, "2025-01")
    [row] = await ledger(cmp_database, sites.tid)
    assert str(row["consent_id"]) == body["consent_id"]
    assert row["at"] == record["consented_at"]
    assert {k: row[k] for k in ("bid", "sid", "tier", "previous_tier", "requested_tier",
                                "explicit", "banner_version", "banner_hash", "method",
                                "source", "gpc")} == {
        "bid": BID, "sid": sid, "tier": 1, "previous_tier": None, "requested_tier": None,
        "explicit": False, "banner_version": "2025-01",
        "banner_hash": expected_banner_hash(CMP_CONFIG), "method": "banner",
        "source": "news.example", "gpc": False}
    # Not HttpOnly: cmp.js reads it. Secure + SameSite=None: sent on the site's requests.
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"viz_consent={body['cookie']};")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert attributes == {"max-age", "path", "samesite", "secure"}
    assert "Max-Age=31536000" in cookie and "Path=/" in cookie and "SameSite=None" in cookie


async def test_a_failing_ledger_insert_leaves_no_current_state(
        cmp_database: str, sites: Sites, sid: str) -> None:
    """The kill switch: a CHECK-violating ledger row must take the record upsert down with it."""
    pool = await open_pool(cmp_settings(cmp_database, "http://127.0.0.1:1").postgres)
    store = ConsentStore(pool)
    try:
        bad = Choice(consent_id=uuid.uuid4(), at=datetime.now(UTC), sid=sid, tid=sites.tid,
                     bid=BID, tier=1, requested_tier=1, explicit=False, gpc=False,
                     banner_version="v1", banner_hash="sha256:x", method="forged", source="t")
        with pytest.raises(asyncpg.CheckViolationError):
            await store.record(bad)
        assert await records(cmp_database, sites.tid) == []
        assert await ledger(cmp_database, sites.tid) == []
        # The same choice with a valid method goes through: the failure was the ledger's.
        good = Choice(**{**bad.__dict__, "method": "banner"})
        await store.record(good)
        assert len(await records(cmp_database, sites.tid)) == 1
    finally:
        await pool.close()


async def test_a_ledger_failure_over_http_is_a_500_and_changes_nothing(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert (await post(sites, choice(sid, 2)))[0] == 200
    monkeypatch.setattr(viz.cmp.store, "ledger_method", lambda choice, previous: "forged")
    status, body, _ = await post(sites, choice(sid, 0))
    assert (status, body["error"]["code"]) == (500, "internal")
    [record] = await records(cmp_database, sites.tid)
    assert record["tier"] == 2  # the withdrawal was not applied without its proof
    assert len(await ledger(cmp_database, sites.tid)) == 1


async def test_a_withdrawal_is_recorded_with_the_tier_it_replaced(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, clock: ManualClock) -> None:
    await post(sites, choice(sid, 2))
    clock.advance(3600)
    status, body, _ = await post(sites, choice(sid, 0))
    assert status == 200
    assert (body["tier"], body["previous_tier"], body["method"]) == (0, 2, "withdrawal")
    [record] = await records(cmp_database, sites.tid)
    assert record["tier"] == 0
    rows = await ledger(cmp_database, sites.tid)
    assert [(r["tier"], r["previous_tier"], r["method"]) for r in rows] == [
        (2, None, "banner"), (0, 2, "withdrawal")]
    # Raising it again is a new consent, not a withdrawal.
    _, body, _ = await post(sites, choice(sid, 1))
    assert (body["previous_tier"], body["method"]) == (0, "banner")


async def test_gpc_caps_tier_two_at_one_and_the_ledger_says_so(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    status, body, _ = await post(sites, choice(sid, 2), gpc=True)
    assert status == 200
    assert (body["tier"], body["requested_tier"], body["gpc"], body["gpc_capped"],
            body["method"]) == (1, 2, True, True, "gpc")
    [record] = await records(cmp_database, sites.tid)
    assert record["tier"] == 1
    [row] = await ledger(cmp_database, sites.tid)
    assert (row["tier"], row["requested_tier"], row["gpc"], row["explicit"], row["method"]) == (
        1, 2, True, False, "gpc")
    metrics = await (await cmp.get("/metrics")).text()
    assert "viz_cmp_gpc_capped_total 1.0" in metrics
    assert 'viz_cmp_decisions_total{method="gpc",tier="1"} 1.0' in metrics


async def test_gpc_does_not_touch_tiers_it_does_not_cap(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    _, body, _ = await post(sites, choice(sid, 1), gpc=True)
    assert (body["tier"], body["gpc"], body["gpc_capped"], body["method"]) == (
        1, True, False, "banner")
    _, body, _ = await post(sites, choice(sid, 2), **{"Sec-GPC": "0"})
    assert (body["tier"], body["gpc"]) == (2, False)


async def test_an_explicit_tier_two_stands_despite_gpc(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    status, body, _ = await post(sites, choice(sid, 2, explicit=True), gpc=True)
    assert status == 200
    assert (body["tier"], body["gpc"], body["gpc_capped"], body["method"]) == (
        2, True, False, "banner")
    [row] = await ledger(cmp_database, sites.tid)
    assert (row["tier"], row["requested_tier"], row["gpc"], row["explicit"]) == (
        2, None, True, True)


async def test_a_decline_before_any_browser_id_is_still_provable(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    status, body, _ = await post(sites, choice(sid, 0, bid=None))
    assert status == 200
    assert (body["tier"], body["previous_tier"]) == (0, None)
    assert await records(cmp_database, sites.tid) == []
    [row] = await ledger(cmp_database, sites.tid)
    assert row["bid"] is None and str(row["consent_id"]) == body["consent_id"]
    assert (row["tier"], row["method"]) == (0, "banner")
    # null is the same as no bid
    status, body2, _ = await post(sites, {**choice(sid, 0, bid=None), "bid": None})
    assert status == 200 and body2["consent_id"] != body["consent_id"]


async def test_confirming_the_same_choice_keeps_consented_at_and_adds_proof(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, clock: ManualClock) -> None:
    _, first, _ = await post(sites, choice(sid, 1))
    clock.advance(600)
    _, again, _ = await post(sites, choice(sid, 1))
    assert again["consented_at"] == first["consented_at"]
    assert again["previous_tier"] == 1
    assert len(await ledger(cmp_database, sites.tid)) == 2
    clock.advance(600)
    _, newer, _ = await post(sites, {**choice(sid, 1), "banner_version": "2025-02"})
    assert newer["consented_at"] > first["consented_at"]  # a new banner is a new consent


async def test_consent_is_per_tenant_and_shared_by_its_sites(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    other = (await sites.create("blog", domains=["blog.example"]))["sid"]
    await post(sites, choice(sid, 2))
    _, body, _ = await post(sites, choice(other, 1), origin="https://blog.example")
    assert (body["previous_tier"], body["method"]) == (2, "withdrawal")
    [record] = await records(cmp_database, sites.tid)
    assert (record["sid"], record["tier"]) == (other, 1)
    await post(sites, choice(sid, 1, bid=OTHER_BID))
    assert len(await records(cmp_database, sites.tid)) == 2


async def test_a_sendbeacon_text_plain_body_is_accepted(
        cmp: TestClient, sites: Sites, sid: str) -> None:
    body = await sites.signed(choice(sid, 1))
    response = await cmp.post("/cmp/consent", data=json.dumps(body),
                              headers={"Content-Type": "text/plain;charset=UTF-8",
                                       "Origin": ORIGIN})
    assert response.status == 200, await response.text()
    assert (await response.json())["tier"] == 1


async def test_a_request_without_origin_is_recorded_as_api(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    status, body, response = await post(sites, choice(sid, 1, method="api"), origin=None)
    assert status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    [row] = await ledger(cmp_database, sites.tid)
    assert (row["source"], row["method"]) == ("api", "api")


async def test_the_admin_export_returns_records_and_the_whole_ledger(
        cmp: TestClient, sites: Sites, sid: str, clock: ManualClock) -> None:
    await post(sites, choice(sid, 2))
    clock.advance(60)
    await post(sites, choice(sid, 2), gpc=True)
    clock.advance(60)
    await post(sites, choice(sid, 0))
    await post(sites, choice(sid, 1, bid=OTHER_BID))
    export = await sites.admin("GET", f"/admin/consent/{BID}?tid={sites.tid}")
    assert export["bid"] == BID and export["tid"] == sites.tid
    assert [(r["sid"], r["tier"]) for r in export["records"]] == [(sid, 0)]
    assert [(e["tier"], e["previous_tier"], e["requested_tier"], e["gpc"], e["method"])
            for e in export["ledger"]] == [
        (2, None, None, False, "banner"), (1, 2, 2, True, "gpc"), (0, 1, None, False,
                                                                  "withdrawal")]
    assert {e["banner_hash"] for e in export["ledger"]} == {expected_banner_hash(CMP_CONFIG)}
