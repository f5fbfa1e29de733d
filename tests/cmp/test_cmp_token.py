"""A decision naming a browser id needs viz-collect's token for it: only that browser decides.

Tokens here are computed from the site's keys as SPEC §3 defines them (``collect_token``), not
with the code under test. Every refusal must leave the ledger and the records untouched.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cmp_support import BID, ORIGIN, OTHER_BID, Sites, collect_token, fetch

from viz.common.clock import ManualClock

WINDOW_S = 300


def decision(sid: str, tier: int = 1, **extra: Any) -> dict[str, Any]:
    return {"sid": sid, "tier": tier, "banner_version": "2025-01", "bid": BID, **extra}


async def post(cmp: TestClient, body: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
    response = await cmp.post("/cmp/consent", json=body, headers={"Origin": ORIGIN})
    return response.status, await response.json(), response


async def stored(dsn: str, tid: str) -> tuple[list[Any], list[Any]]:
    """(records, ledger rows) of the tenant."""
    return (await fetch(dsn, "SELECT bid, tier FROM consent_records WHERE tid = $1", tid),
            await fetch(dsn, "SELECT bid, tier FROM consent_ledger WHERE tid = $1", tid))


async def test_a_decision_with_collects_token_is_recorded_for_its_bid(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, clock: ManualClock) -> None:
    token = await sites.token(sid, BID)
    status, body, response = await post(cmp, decision(sid, 2, token=token))
    assert status == 200, body
    assert body["tier"] == 2
    records, ledger = await stored(cmp_database, sites.tid)
    assert [(r["bid"], r["tier"]) for r in records] == [(BID, 2)]
    assert [(r["bid"], r["tier"]) for r in ledger] == [(BID, 2)]
    assert "viz_consent=" in response.headers["Set-Cookie"]
    # A token from the previous 5-minute window still counts, as it does for collect.
    previous = await sites.token(sid, BID, at=clock.time() - WINDOW_S)
    status, body, _ = await post(cmp, decision(sid, 0, token=previous))
    assert (status, body["tier"], body["method"]) == (200, 0, "withdrawal")


@pytest.mark.parametrize("case", [
    "another bid", "another tenant", "another site of the tenant", "forged",
    "older than the lookback",
])
async def test_a_token_that_is_not_this_browsers_is_403_and_stores_nothing(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, clock: ManualClock,
        caplog: pytest.LogCaptureFixture, case: str) -> None:
    key, _ = await sites.keys(sid)
    now = clock.time()
    token = {
        "another bid": collect_token(key, OTHER_BID, sites.tid, now),
        "another tenant": collect_token(key, BID, sites.tid + "x", now),
        "another site of the tenant": await sites.token(
            (await sites.create("blog", domains=["blog.example"]))["sid"], BID),
        "forged": "0" * 64,
        # Collect tells "expired" from "forged" for about an hour; older is just invalid.
        "older than the lookback": collect_token(key, BID, sites.tid, now - 2 * 3600),
    }[case]
    caplog.set_level(logging.DEBUG)
    status, body, response = await post(cmp, decision(sid, 2, token=token))
    assert (status, body["error"]["code"]) == (403, "token_invalid"), body
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN  # cmp.js can tell why
    assert "Set-Cookie" not in response.headers
    assert await stored(cmp_database, sites.tid) == ([], [])
    assert key.hex() not in await response.text() and key.hex() not in caplog.text
    metrics = await (await cmp.get("/metrics")).text()
    assert 'viz_cmp_tokens_refused_total{reason="token_invalid"} 1.0' in metrics


async def test_a_forged_token_cannot_withdraw_or_raise_a_recorded_decision(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    assert (await post(cmp, decision(sid, 1, token=await sites.token(sid, BID))))[0] == 200
    key, _ = await sites.keys(sid)
    for tier in (0, 2):
        stranger = collect_token(key, OTHER_BID, sites.tid, sites.clock.time())
        status, _, _ = await post(cmp, decision(sid, tier, token=stranger))
        assert status == 403
    records, ledger = await stored(cmp_database, sites.tid)
    assert [(r["bid"], r["tier"]) for r in records] == [(BID, 1)]
    assert len(ledger) == 1
    status = await cmp.get("/cmp/status", params={"sid": sid, "bid": BID})
    assert (await status.json())["tier"] == 1


async def test_an_expired_token_is_401_token_expired_and_a_fresh_one_goes_through(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, clock: ManualClock) -> None:
    old = await sites.token(sid, BID)
    clock.advance(3 * WINDOW_S)  # a page left open: the token is three windows old
    status, body, response = await post(cmp, decision(sid, 1, token=old))
    assert status == 401
    # The status and reason collect gives an expired token, so the tracker handles both alike.
    assert body["error"]["code"] == "token_expired"
    assert "/init" in body["error"]["message"]
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Set-Cookie" not in response.headers
    assert await stored(cmp_database, sites.tid) == ([], [])
    # What the tracker does next: a fresh token from /init, the same decision again.
    status, body, _ = await post(cmp, decision(sid, 1, token=await sites.token(sid, BID)))
    assert (status, body["tier"]) == (200, 1)
    metrics = await (await cmp.get("/metrics")).text()
    assert 'viz_cmp_tokens_refused_total{reason="token_expired"} 1.0' in metrics


@pytest.mark.parametrize("extra", [{}, {"token": None}], ids=["absent", "null"])
async def test_a_bid_without_a_token_is_400_token_required_and_stores_nothing(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str,
        extra: dict[str, Any]) -> None:
    body = decision(sid, 2, **extra)
    status, answer, response = await post(cmp, body)
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["field"]) == ("token_required", "token")
    assert "/init" in answer["error"]["message"]
    assert "Set-Cookie" not in response.headers
    assert await stored(cmp_database, sites.tid) == ([], [])


@pytest.mark.parametrize(("change", "message"), [
    ({"bid": None}, "only goes with a bid"),
    ({"token": "A" * 64}, "64 lowercase hex"),
    ({"token": "0" * 63}, "64 lowercase hex"),
    ({"token": 5}, "64 lowercase hex"),
])
async def test_a_token_out_of_place_or_shape_is_named_in_a_400(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str, change: dict[str, Any],
        message: str) -> None:
    body = {**decision(sid, token=await sites.token(sid, BID)), **change}
    status, answer, _ = await post(cmp, body)
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["field"]) == ("invalid_field", "token")
    assert message in answer["error"]["message"]
    assert await stored(cmp_database, sites.tid) == ([], [])


async def test_a_decision_without_a_bid_needs_no_token(
        cmp: TestClient, cmp_database: str, sites: Sites, sid: str) -> None:
    """Before /init there is no bid to protect: the ledger row names no browser and the cookie
    is bound to the tenant alone, so it changes no browser's recorded state."""
    status, body, _ = await post(cmp, {"sid": sid, "tier": 0, "banner_version": "2025-01"})
    assert (status, body["tier"]) == (200, 0)
    records, ledger = await stored(cmp_database, sites.tid)
    assert records == [] and [(r["bid"], r["tier"]) for r in ledger] == [(None, 0)]


async def test_the_previous_key_counts_until_its_grace_ends_as_for_collect(
        cmp: TestClient, cmp_database: str, sites: Sites, clock: ManualClock) -> None:
    sid = (await sites.create("rotated"))["sid"]
    old_key, _ = await sites.keys(sid)
    await sites.admin("POST", f"/admin/sites/{sid}/rotate-key")
    new_key, previous = await sites.keys(sid)
    assert previous == old_key != new_key
    # A page still holding a token from before the rotation, and one with a fresh token.
    for key in (old_key, new_key):
        status, body, _ = await post(cmp, decision(sid, token=await sites.token(
            sid, BID, key=key)))
        assert status == 200, body

    # Once the grace period is over only the new key signs valid tokens.
    grace_ends = (await sites.record(sid))["keys"]["previous_expires_at"]
    clock.advance(grace_ends - clock.time() + 1)
    status, body, _ = await post(cmp, decision(sid, token=await sites.token(
        sid, BID, key=old_key)))
    assert (status, body["error"]["code"]) == (403, "token_invalid")
    status, _, _ = await post(cmp, decision(sid, token=await sites.token(sid, BID, key=new_key)))
    assert status == 200
    _, ledger = await stored(cmp_database, sites.tid)
    assert len(ledger) == 3
