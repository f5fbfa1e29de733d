"""GET /init?lk=: a cross-domain linker's BID is adopted only when collect verifies it.

The sites: the destination (``site-one``, tenant-1), a sister site of the same tenant on
another domain with its own key (the linker's source), and a site of another tenant.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from viz import _fast
from viz.collect.pipeline import LINKER_REFUSALS

from .support import BID, KEY, SID, TID, Harness, Response, get, make_site

pytestmark = pytest.mark.usefixtures("connection_twin")

SISTER = "sister-site"
SISTER_KEY = bytes(range(100, 132))
FOREIGN = "foreign-site"
FOREIGN_KEY = bytes(range(200, 232))
LINKED = "LinkedBidFromSister_01"  # the BID the sister site issued
BID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


def sites() -> tuple:
    return (make_site(),
            make_site(SISTER, domains=("sport.example",), key=SISTER_KEY),
            make_site(FOREIGN, domains=("other.example",), key=FOREIGN_KEY, tid="tenant-2"))


@pytest.fixture
async def h() -> Harness:
    harness = Harness(*sites())
    for sid in (SID, SISTER, FOREIGN):
        await harness.warm(sid)
    return harness


def linker(h: Harness, *, bid: str = LINKED, key: bytes = SISTER_KEY, tid: str = TID,
           source: str = SISTER, token_at: float | None = None, ts: float | None = None,
           token: str | None = None) -> str:
    """``<bid>.<ts>.<token>.<sid>``, what the source page appended as ``_vz``."""
    now = h.clock.time()
    token = token or _fast.TokenSigner([key]).issue(bid, tid, now if token_at is None else token_at)
    return f"{bid}.{int(now if ts is None else ts)}.{token}.{source}"


def refused(h: Harness) -> dict[str, float]:
    return {r: v for r in LINKER_REFUSALS
            if (v := h.sample("viz_collect_linker_refused_total", reason=r))}


def assert_fresh_id(h: Harness, response: Response, *, not_bid: str = LINKED) -> str:
    """A usable identity for the destination that is not the linker's BID."""
    assert response.status == 200
    body = response.json()
    assert BID_RE.match(body["bid"]) and body["bid"] != not_bid
    _fast.TokenSigner([KEY]).verify(body["bid"], TID, body["token"], h.clock.time())
    assert response.header("set-cookie").startswith(f"viz_bid={body['bid']};")
    return str(body["bid"])


async def test_a_linker_from_a_sister_site_of_the_tenant_is_adopted(h: Harness) -> None:
    h.clock.advance(30)  # the visitor clicked 30 s ago
    lk = linker(h, ts=h.clock.time() - 30)
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&lk={lk}"))
    assert response.status == 200
    body = response.json()
    assert body["bid"] == LINKED
    # Signed by the destination's own key: /collect on this site accepts it.
    _fast.TokenSigner([KEY]).verify(LINKED, TID, body["token"], h.clock.time())
    assert response.header("set-cookie").startswith(f"viz_bid={LINKED};")
    assert h.sample("viz_collect_linker_adopted_total") == 1
    assert refused(h) == {}


async def test_a_verified_linker_wins_over_the_trackers_stored_copy(h: Harness) -> None:
    response = await h.connect().request(
        get(f"/init?sid={SID}&tier=1&bid={BID}&lk={linker(h)}"))
    assert response.json()["bid"] == LINKED


async def test_a_token_from_the_previous_window_and_a_key_in_its_rotation_grace_verify() -> None:
    old_key = bytes(range(50, 82))
    rotated = dataclasses.replace(sites()[1], secret_key=bytes(range(150, 182)),
                                  previous_key=old_key, previous_key_expires_at=4e9)
    h = Harness(make_site(), rotated)
    await h.warm()
    await h.warm(SISTER)
    h.clock.advance(300)  # the token's window is now the previous one
    lk = linker(h, key=old_key, token_at=h.clock.time() - 300)
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&lk={lk}"))
    assert response.json()["bid"] == LINKED


@pytest.mark.parametrize(("case", "reason"), [
    ("forged token", "invalid"),
    ("token for another bid", "invalid"),
    ("token signed for another tenant", "invalid"),
    ("destination's key instead of the source's", "invalid"),
    ("source of another tenant", "other_tenant"),
    ("unknown source site", "unknown_site"),
    ("expired token", "expired"),
    ("time in the future", "timestamp"),
    ("time too old for any live token", "timestamp"),
    ("not a linker", "malformed"),
    ("no token", "malformed"),
])
async def test_a_linker_that_does_not_verify_is_ignored_and_counted(
        h: Harness, case: str, reason: str) -> None:
    h.clock.advance(3600)
    now = h.clock.time()
    lk = {
        "forged token": lambda: linker(h, token="ab" * 32),
        "token for another bid": lambda: linker(h, token=_fast.TokenSigner([SISTER_KEY]).issue(
            BID, TID, now)),
        "token signed for another tenant": lambda: linker(h, tid="tenant-2"),
        "destination's key instead of the source's": lambda: linker(h, key=KEY),
        "source of another tenant": lambda: linker(h, key=FOREIGN_KEY, tid="tenant-2",
                                                   source=FOREIGN),
        "unknown source site": lambda: linker(h, source="nobody-here"),
        "expired token": lambda: linker(h, token_at=now - 900),
        "time in the future": lambda: linker(h, ts=now + 600),
        "time too old for any live token": lambda: linker(h, ts=now - 900),
        "not a linker": lambda: "garbage",
        "no token": lambda: f"{LINKED}.{int(now)}..{SISTER}",
    }[case]()
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&lk={lk}"))
    assert_fresh_id(h, response)
    assert refused(h) == {reason: 1}
    assert h.sample("viz_collect_linker_adopted_total") == 0


async def test_a_refused_linker_falls_back_to_the_trackers_stored_copy(h: Harness) -> None:
    lk = linker(h, token="ab" * 32)
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&bid={BID}&lk={lk}"))
    assert response.json()["bid"] == BID  # as if no linker had been sent
    assert refused(h) == {"invalid": 1}


async def test_a_valid_cookie_wins_and_the_linker_is_not_even_looked_at(h: Harness) -> None:
    calls = h.fetcher.calls
    response = await h.connect().request(get(
        f"/init?sid={SID}&tier=1&lk={linker(h, source='not-cached-site')}",
        headers=f"Cookie: viz_bid={BID}\r\n".encode()))
    assert response.json()["bid"] == BID
    assert response.header("set-cookie") is None
    assert h.fetcher.calls == calls
    assert refused(h) == {}
    assert h.sample("viz_collect_linker_adopted_total") == 0


async def test_a_bid_without_a_linker_is_still_the_trackers_stored_copy(h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&bid={LINKED}"))
    assert response.json()["bid"] == LINKED
    assert refused(h) == {}
    assert h.sample("viz_collect_linker_adopted_total") == 0


async def test_a_source_site_not_cached_is_looked_up_then_verified() -> None:
    h = Harness(*sites())
    await h.warm()
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&lk={linker(h)}"))
    assert response.json()["bid"] == LINKED
    assert h.fetcher.calls == 2  # the destination, then the source
    await h.connect().request(get(f"/init?sid={SID}&tier=1&lk={linker(h)}"))
    assert h.fetcher.calls == 2  # cached since


async def test_a_source_site_that_cannot_be_looked_up_does_not_fail_the_visit() -> None:
    h = Harness(*sites())
    await h.warm()
    h.fetcher.fail = True  # viz-config is down and the source site was never cached
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&lk={linker(h)}"))
    assert_fresh_id(h, response)
    assert refused(h) == {"unavailable": 1}


async def test_a_linker_does_not_change_what_a_dropped_init_answers(h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=0&lk={linker(h)}"))
    assert (response.status, response.header("x-viz-dropped")) == (204, "no_consent")
    assert response.header("set-cookie") is None
    assert refused(h) == {} and h.sample("viz_collect_linker_adopted_total") == 0


async def test_metrics_export_the_linker_counters(h: Harness) -> None:
    conn = h.connect()
    await conn.request(get(f"/init?sid={SID}&tier=1&lk={linker(h)}"))
    await conn.request(get(f"/init?sid={SID}&tier=1&lk={linker(h, source='nobody-here')}"))
    text = (await conn.request(get("/metrics"))).body.decode()
    assert 'viz_collect_linker_refused_total{reason="unknown_site"} 1.0' in text
    assert 'viz_collect_linker_refused_total{reason="invalid"} 0.0' in text
    assert "viz_collect_linker_adopted_total 1.0" in text
