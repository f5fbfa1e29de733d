"""The viz_consent cookie cannot be forged, and GET /cmp/status trusts only what verifies."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cmp_support import BID, COOKIE_SECRET, ORIGIN, OTHER_BID, Sites

from viz.common.clock import ManualClock
from viz.common.consent_cookie import (
    read_consent_cookie,
    sign_consent_cookie,
    verify_consent_cookie,
)

KEY = b"k" * 32
OLD_KEY = b"o" * 32
NOW = 1_700_000_000
MAX_AGE = 86_400


def signed(tier: int = 1, *, tid: str = "acme", bid: str | None = BID, version: str = "v1.2",
           issued_at: int = NOW, key: bytes = KEY) -> str:
    return sign_consent_cookie(key, tier=tier, banner_version=version, tid=tid, bid=bid,
                               issued_at=issued_at)


def verify(value: str, *, tid: str = "acme", bid: str | None = BID, now: float = NOW + 10,
           keys: tuple[bytes, ...] = (KEY,)) -> int | None:
    return verify_consent_cookie(value, tid, bid, now, keys=keys, max_age_s=MAX_AGE)


def test_a_signed_cookie_verifies_for_its_tenant_and_browser() -> None:
    value = signed(2)
    tier, version_and_rest = value.split(".", 1)
    assert tier == "2" and version_and_rest.startswith("v1.2.1700000000.")
    assert verify(value) == 2
    claim = read_consent_cookie(value, "acme", BID, NOW, keys=(KEY,), max_age_s=MAX_AGE)
    assert claim is not None and (claim.tier, claim.banner_version, claim.issued_at) == (
        2, "v1.2", NOW)


def _swap_tier(value: str, tier: str) -> str:
    return tier + value[1:]


@pytest.mark.parametrize(("label", "value", "kwargs"), [
    ("tier raised", _swap_tier(signed(0), "2"), {}),
    ("tier lowered", _swap_tier(signed(2), "1"), {}),
    ("other tenant", signed(2), {"tid": "other"}),
    ("other browser", signed(2), {"bid": OTHER_BID}),
    ("bound to a bid, presented without", signed(2), {"bid": None}),
    ("issued without a bid, presented with one", signed(2, bid=None), {}),
    ("expired", signed(2), {"now": NOW + MAX_AGE + 1}),
    ("issued in the future", signed(2, issued_at=NOW + 3600), {}),
    ("other key", signed(2, key=b"x" * 32), {}),
    ("version changed", signed(2).replace("v1.2", "v1.3"), {}),
    ("issued_at changed", signed(2).replace(str(NOW), str(NOW + 1)), {}),
    ("signature cut", signed(2)[:-1], {}),
    ("signature flipped", signed(2)[:-1] + ("A" if signed(2)[-1] != "A" else "B"), {}),
    ("no signature", "2.v1.1700000000", {}),
    ("garbage", "not-a-cookie", {}),
    ("empty", "", {}),
    ("non-ascii", "2.vé.1700000000." + "A" * 43, {}),
    ("tier out of range", _swap_tier(signed(2), "3"), {}),
    ("huge", "2." + "v" * 500 + ".1700000000." + "A" * 43, {}),
])
def test_forged_or_misplaced_cookies_are_rejected(label: str, value: str,
                                                  kwargs: dict[str, Any]) -> None:
    assert verify(value, **kwargs) is None, label


def test_a_cookie_issued_without_a_bid_verifies_only_without_one() -> None:
    assert verify(signed(0, bid=None), bid=None) == 0


def test_the_previous_key_still_verifies_during_a_rotation() -> None:
    value = signed(1, key=OLD_KEY)
    assert verify(value, keys=(KEY, OLD_KEY)) == 1
    assert verify(value, keys=(KEY,)) is None


def test_signing_refuses_values_the_cookie_cannot_carry() -> None:
    for bad in ({"tier": 3}, {"banner_version": "a b"}, {"bid": "short"}, {"tid": "a\nb"}):
        args: dict[str, Any] = {"tier": 1, "banner_version": "v1", "tid": "acme", "bid": BID,
                                "issued_at": NOW, **bad}
        with pytest.raises(ValueError):
            sign_consent_cookie(KEY, **args)


# --- over HTTP ------------------------------------------------------------------------------


async def decide(sites: Sites, sid: str, tier: int, bid: str | None = BID) -> dict[str, Any]:
    body: dict[str, Any] = {"sid": sid, "tier": tier, "banner_version": "2025-01"}
    if bid:
        body["bid"] = bid
    response = await sites.client.post("/cmp/consent", json=await sites.signed(body),
                                       headers={"Origin": ORIGIN})
    assert response.status == 200
    return dict(await response.json())


async def status(cmp: TestClient, sid: str, bid: str | None = BID,
                 cookie: str | None = None) -> dict[str, Any]:
    cmp.session.cookie_jar.clear()  # only the cookie this test names is sent
    params = {"sid": sid, **({"bid": bid} if bid else {})}
    headers = {"Origin": ORIGIN, **({"Cookie": f"viz_consent={cookie}"} if cookie else {})}
    response = await cmp.get("/cmp/status", params=params, headers=headers)
    assert response.status == 200
    return dict(await response.json())


async def test_the_issued_cookie_is_verifiable_with_the_cmp_secret(
        cmp: TestClient, sites: Sites, sid: str, clock: ManualClock) -> None:
    body = await decide(sites, sid, 2)
    keys = (COOKIE_SECRET.encode(),)
    assert verify_consent_cookie(body["cookie"], sites.tid, BID, clock.time(), keys=keys,
                                 max_age_s=MAX_AGE) == 2
    assert verify_consent_cookie(body["cookie"], sites.tid, OTHER_BID, clock.time(), keys=keys,
                                 max_age_s=MAX_AGE) is None


async def test_status_answers_from_the_cookie_then_the_record(
        cmp: TestClient, sites: Sites, sid: str, clock: ManualClock) -> None:
    assert await status(cmp, sid) == {"tier": None}
    body = await decide(sites, sid, 2)
    from_cookie = await status(cmp, sid, cookie=body["cookie"])
    assert from_cookie == {"tier": 2, "consented_at": body["consented_at"],
                           "banner_version": "2025-01", "source": "cookie"}
    from_record = await status(cmp, sid)
    assert from_record == {**from_cookie, "source": "record"}


async def test_status_ignores_a_forged_cookie(cmp: TestClient, sites: Sites, sid: str) -> None:
    declined = await decide(sites, sid, 0, bid=None)
    forged = _swap_tier(declined["cookie"], "2")
    assert await status(cmp, sid, bid=None, cookie=forged) == {"tier": None}
    assert (await status(cmp, sid, bid=None, cookie=declined["cookie"]))["tier"] == 0
    # Forged for a browser with a record: the record is the answer, not the forgery.
    await decide(sites, sid, 1)
    assert (await status(cmp, sid, cookie=_swap_tier(declined["cookie"], "2")))["tier"] == 1
    metrics = await (await cmp.get("/metrics")).text()
    assert "viz_cmp_cookies_rejected_total 2.0" in metrics


async def test_status_does_not_trust_another_browsers_or_tenants_cookie(
        cmp: TestClient, sites: Sites, sid: str) -> None:
    mine = await decide(sites, sid, 2, bid=OTHER_BID)
    assert await status(cmp, sid, bid=BID, cookie=mine["cookie"]) == {"tier": None}
    other_tenant = (await Sites(tid=sites.tid + "b", config_url=sites.config_url,
                                client=sites.client).create())["sid"]
    assert await status(cmp, other_tenant, bid=OTHER_BID, cookie=mine["cookie"]) == {
        "tier": None}


async def test_an_expired_cookie_falls_back_to_the_record(
        cmp: TestClient, sites: Sites, sid: str, clock: ManualClock) -> None:
    body = await decide(sites, sid, 2)
    clock.advance(365 * 86_400 + 1)
    assert (await status(cmp, sid, cookie=body["cookie"]))["source"] == "record"
    assert await status(cmp, sid, bid=None, cookie=body["cookie"]) == {"tier": None}


async def test_a_choice_made_before_the_bid_existed_still_answers_status(
        cmp: TestClient, sites: Sites, sid: str) -> None:
    body = await decide(sites, sid, 1, bid=None)
    answer = await status(cmp, sid, bid=BID, cookie=body["cookie"])
    assert (answer["tier"], answer["source"]) == (1, "cookie")


async def test_a_later_decision_made_without_the_bid_overrides_its_record(
        cmp: TestClient, sites: Sites, sid: str, clock: ManualClock) -> None:
    # A decline sent while the tracker held no token for its bid is recorded without the bid;
    # the browser shows its cookie, which is newer than the bid's record: the decline counts.
    await decide(sites, sid, 2)
    clock.advance(60)
    declined = await decide(sites, sid, 0, bid=None)
    answer = await status(cmp, sid, bid=BID, cookie=declined["cookie"])
    assert (answer["tier"], answer["source"]) == (0, "cookie")
    # Without that cookie (another device, cleared cookies) the record still answers.
    assert (await status(cmp, sid, bid=BID))["tier"] == 2
    # And a record newer than the bid-less cookie wins over it.
    clock.advance(60)
    await decide(sites, sid, 1)
    answer = await status(cmp, sid, bid=BID, cookie=declined["cookie"])
    assert (answer["tier"], answer["source"]) == (1, "record")
