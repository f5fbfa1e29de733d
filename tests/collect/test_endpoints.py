"""/init, /collect, /hit, preflight and the ops endpoints against the in-memory sink."""

from __future__ import annotations

import json
import re

import pytest

from viz import _fast
from viz.collect.errors import DeliveryFailed, MessageTooLarge, QueueFull
from viz.collect.sinks import MemorySink

from .support import BID, ORIGIN, SID, TID, UA, Harness, get, make_site, post

pytestmark = pytest.mark.usefixtures("connection_twin")

BID_RE = re.compile(r"^[A-Za-z0-9_-]{22}$")


@pytest.fixture
async def h() -> Harness:
    harness = Harness(make_site(), make_site("site-off", collect=False))
    await harness.warm()
    return harness


# -- GET /init ----------------------------------------------------------------------------------

async def test_init_issues_a_new_bid_with_a_verifiable_token_and_a_strict_cookie(
        h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1"))
    assert response.status == 200
    body = response.json()
    assert set(body) == {"bid", "tid", "token", "exp"}
    assert BID_RE.match(body["bid"])
    assert body["tid"] == TID
    now = h.clock.time()
    _fast.TokenSigner([make_site().secret_key]).verify(body["bid"], TID, body["token"], now)
    assert now < body["exp"] <= now + 600
    cookie = response.header("set-cookie")
    assert cookie == (f"viz_bid={body['bid']}; Max-Age=31536000; Path=/; HttpOnly; Secure; "
                      "SameSite=None")
    assert response.header("cache-control") == "no-store"


async def test_init_issues_distinct_bids_to_distinct_browsers(h: Harness) -> None:
    bids = {(await h.connect().request(get(f"/init?sid={SID}&tier=1"))).json()["bid"]
            for _ in range(20)}
    assert len(bids) == 20


async def test_init_reuses_a_valid_bid_cookie_without_extending_it(h: Harness) -> None:
    response = await h.connect().request(
        get(f"/init?sid={SID}&tier=2", headers=f"Cookie: a=1; viz_bid={BID}; b=2\r\n".encode()))
    assert response.json()["bid"] == BID
    assert response.header("set-cookie") is None


async def test_init_replaces_an_invalid_bid_cookie(h: Harness) -> None:
    response = await h.connect().request(
        get(f"/init?sid={SID}&tier=1", headers=b"Cookie: viz_bid=not:valid\r\n"))
    bid = response.json()["bid"]
    assert bid != "not:valid" and BID_RE.match(bid)
    assert response.header("set-cookie").startswith(f"viz_bid={bid};")


async def test_init_adopts_the_trackers_stored_bid_when_the_cookie_is_blocked(
        h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1&bid={BID}"))
    assert response.json()["bid"] == BID
    assert response.header("set-cookie").startswith(f"viz_bid={BID};")


async def test_init_without_consent_issues_nothing(h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=0"))
    assert response.status == 204
    assert response.header("x-viz-dropped") == "no_consent"
    assert response.header("set-cookie") is None
    assert response.body == b""
    assert h.sample("viz_collect_drops_total", reason="no_consent") == 1


async def test_init_requires_the_tier(h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}"))
    assert response.status == 400
    assert response.json()["error"]["code"] == "invalid"
    assert response.json()["error"]["path"] == "$.tier"


async def test_init_for_an_unknown_site_is_404(h: Harness) -> None:
    response = await h.connect().request(get("/init?sid=nobody-here&tier=1"))
    assert response.status == 404
    assert response.json() == {"error": {"code": "unknown_site"}}


async def test_init_echoes_an_allowed_origin_with_credentials(h: Harness) -> None:
    for origin in (b"https://example.com", b"https://www.example.com", b"http://a.b.example.com:8080"):
        response = await h.connect().request(get(f"/init?sid={SID}&tier=1", origin=origin))
        assert response.status == 200
        assert response.header("access-control-allow-origin") == origin.decode()
        assert response.header("access-control-allow-credentials") == "true"
        assert response.header("vary") == "Origin"


@pytest.mark.parametrize("origin", [b"null", b"https://evil.com", b"https://example.com.evil.com",
                                    b"https://notexample.com", b"file://", b"https://example.com/x",
                                    b"https://user@example.com"])
async def test_init_refuses_a_foreign_or_null_origin_without_cors(
        h: Harness, origin: bytes) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1", origin=origin))
    assert response.status == 403
    assert response.json() == {"error": {"code": "origin_not_allowed"}}
    assert response.header("access-control-allow-origin") is None
    assert response.header("access-control-allow-credentials") is None
    assert response.header("set-cookie") is None
    assert response.header("vary") == "Origin"


async def test_init_without_origin_gets_no_cors_headers(h: Harness) -> None:
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1", origin=None))
    assert response.status == 200
    assert response.header("access-control-allow-origin") is None
    assert response.header("vary") == "Origin"


async def test_init_for_a_bot_issues_nothing(h: Harness) -> None:
    for ua in (b"Googlebot/2.1 (+http://www.google.com/bot.html)", b"curl/8.0",
               b"Mozilla/5.0 HeadlessChrome/120.0", None):
        response = await h.connect().request(get(f"/init?sid={SID}&tier=1", ua=ua))
        assert response.status == 204
        assert response.header("x-viz-dropped") == "bot"
        assert response.header("set-cookie") is None


async def test_a_drop_answer_carries_the_cors_grant_so_the_tracker_can_read_it(
        h: Harness) -> None:
    origin = b"https://www.example.com"
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1",
                                             ua=b"Mozilla/5.0 HeadlessChrome/120.0",
                                             origin=origin))
    assert (response.status, response.header("x-viz-dropped")) == (204, "bot")
    assert response.header("access-control-allow-origin") == origin.decode()
    assert "X-Viz-Dropped" in (response.header("access-control-expose-headers") or "")


async def test_init_for_a_site_with_collect_off_is_dropped(h: Harness) -> None:
    response = await h.connect().request(get("/init?sid=site-off&tier=1"))
    assert response.status == 204
    assert response.header("x-viz-dropped") == "collect_disabled"


async def test_init_for_a_site_not_cached_yet_looks_it_up() -> None:
    h = Harness()
    response = await h.connect().request(get(f"/init?sid={SID}&tier=1"))
    assert response.status == 200
    assert h.fetcher.calls == 1
    await h.connect().request(get(f"/init?sid={SID}&tier=1"))
    assert h.fetcher.calls == 1


# -- POST /collect ------------------------------------------------------------------------------

async def test_collect_answers_204_only_once_every_event_is_acknowledged() -> None:
    sink = MemorySink(acknowledge=False)
    h = Harness(sink=sink)
    await h.warm()
    conn = h.connect()
    conn.send(post("/collect", h.body(3)))
    await conn.wait_for(lambda: sink.pending == 1)
    assert conn.responses() == []
    sink.release()
    (response,) = await conn.wait_responses(1)
    assert response.status == 204
    assert response.body == b""
    assert response.header("access-control-allow-origin") == ORIGIN.decode()
    assert response.header("access-control-allow-credentials") == "true"
    assert response.header("vary") == "Origin"
    assert len(sink.messages) == 3
    assert h.sample("viz_collect_events_total", route="collect") == 3
    assert h.sample("viz_collect_delivery_seconds_count") == 1


async def test_collect_produces_one_envelope_per_event_keyed_by_site(h: Harness) -> None:
    response = await h.connect().request(post("/collect?tier=2", h.body(2)))
    assert response.status == 204
    assert [key for key, _ in h.sink.messages] == [SID.encode()] * 2
    envelopes = [_fast.decode_envelope(value) for _, value in h.sink.messages]
    assert [e.id for e in envelopes] == ["event-0000", "event-0001"]
    first = envelopes[0]
    assert (first.sid, first.tid, first.bid, first.t, first.p) == (SID, TID, BID, "pageview",
                                                                   "/page/0")
    assert first.eid == f"{SID}:{BID}:event-0000"
    assert first.ua == UA.decode()
    assert first.tier == 2
    assert first.ts == int(h.clock.time() * 1000)


async def test_collect_with_an_expired_token_gets_401_token_expired(h: Harness) -> None:
    token = h.token()
    h.clock.advance(15 * 60)
    response = await h.connect().request(post("/collect", h.body(1, token=token)))
    assert response.status == 401
    assert response.json() == {"error": {"code": "token_expired"}}
    # Readable by the tracker, so it can refresh via /init and resend the same events.
    assert response.header("access-control-allow-origin") == ORIGIN.decode()
    assert h.sink.messages == []
    assert h.sample("viz_collect_failures_total", code="token_expired") == 1


async def test_collect_accepts_a_token_from_the_previous_window(h: Harness) -> None:
    token = h.token()
    h.clock.advance(300)
    assert (await h.connect().request(post("/collect", h.body(1, token=token)))).status == 204


async def test_collect_with_a_forged_token_gets_403_token_invalid(h: Harness) -> None:
    forged = h.token(key=b"x" * 32)
    response = await h.connect().request(post("/collect", h.body(1, token=forged)))
    assert response.status == 403
    assert response.json() == {"error": {"code": "token_invalid"}}
    other_bid = h.token(bid="B" * 22)
    response = await h.connect().request(post("/collect", h.body(1, token=other_bid)))
    assert response.status == 403


async def test_collect_with_unreadable_json_is_400_malformed(h: Harness) -> None:
    response = await h.connect().request(post("/collect", b"{not json"))
    assert response.status == 400
    assert response.json()["error"]["code"] == "malformed"


async def test_collect_with_an_invalid_field_is_400_with_its_path(h: Harness) -> None:
    doc = json.loads(h.body(3))
    doc["events"][2]["p"] = "no-slash"
    response = await h.connect().request(post("/collect", json.dumps(doc).encode()))
    assert response.status == 400
    error = response.json()["error"]
    assert (error["code"], error["path"]) == ("invalid", "$.events[2].p")
    assert h.sink.messages == []


async def test_collect_from_a_bot_is_dropped_without_producing(h: Harness) -> None:
    response = await h.connect().request(
        post("/collect", h.body(1), ua=b"Mozilla/5.0 (compatible; bingbot/2.0)"))
    assert response.status == 204
    assert response.header("x-viz-dropped") == "bot"
    assert h.sink.messages == []
    assert h.sample("viz_collect_drops_total", reason="bot") == 1


async def test_collect_with_tier_0_is_dropped_as_no_consent(h: Harness) -> None:
    response = await h.connect().request(post("/collect?tier=0", h.body(1)))
    assert response.header("x-viz-dropped") == "no_consent"
    assert h.sink.messages == []


async def test_collect_for_an_unknown_site_is_404(h: Harness) -> None:
    response = await h.connect().request(post("/collect", h.body(1, sid="nobody-here")))
    assert response.status == 404


async def test_collect_from_a_foreign_origin_is_403_without_cors(h: Harness) -> None:
    response = await h.connect().request(post("/collect", h.body(1),
                                              origin=b"https://evil.example"))
    assert response.status == 403
    assert response.header("access-control-allow-origin") is None
    response = await h.connect().request(post("/collect", h.body(1), origin=b"null"))
    assert response.status == 403
    assert response.header("access-control-allow-origin") is None
    assert h.sink.messages == []


async def test_collect_for_a_site_with_collect_off_is_dropped(h: Harness) -> None:
    body = h.body(1, sid="site-off")
    response = await h.connect().request(post("/collect", body))
    assert response.header("x-viz-dropped") == "collect_disabled"


async def test_collect_gets_503_with_retry_after_when_the_queue_is_full(h: Harness) -> None:
    h.sink.raise_on_send = QueueFull
    response = await h.connect().request(post("/collect", h.body(1)))
    assert response.status == 503
    assert response.header("retry-after") == "1"
    assert response.json() == {"error": {"code": "queue_full"}}
    assert response.header("access-control-expose-headers") == "Retry-After, X-Viz-Dropped"


async def test_collect_gets_503_with_retry_after_at_the_delivery_deadline() -> None:
    sink = MemorySink(acknowledge=False, delivery_timeout_s=0.05)
    h = Harness(sink=sink)
    await h.warm()
    response = await h.connect().request(post("/collect", h.body(2)))
    assert response.status == 503
    assert response.header("retry-after") == "1"
    assert response.json() == {"error": {"code": "delivery_timeout"}}
    assert h.sample("viz_collect_failures_total", code="delivery_timeout") == 1


async def test_collect_gets_503_when_the_broker_reports_a_failure() -> None:
    sink = MemorySink(acknowledge=False)
    h = Harness(sink=sink)
    await h.warm()
    conn = h.connect()
    conn.send(post("/collect", h.body(1)))
    await conn.wait_for(lambda: sink.pending == 1)
    sink.fail_pending(DeliveryFailed)
    (response,) = await conn.wait_responses(1)
    assert response.status == 503


async def test_collect_gets_413_not_a_retry_when_the_broker_says_message_too_large(
        h: Harness) -> None:
    h.sink.raise_on_send = MessageTooLarge
    response = await h.connect().request(post("/collect", h.body(1)))
    assert response.status == 413
    assert response.json() == {"error": {"code": "message_too_large"}}
    assert response.header("retry-after") is None


async def test_collect_keeps_serving_a_known_site_while_config_is_down(h: Harness) -> None:
    h.fetcher.fail = True
    h.clock.advance(400)  # past the cache TTL: the entry is stale, the refresh fails
    response = await h.connect().request(post("/collect", h.body(1)))
    assert response.status == 204
    response = await h.connect().request(post("/collect", h.body(1, sid="never-seen")))
    assert response.status == 503
    assert response.json() == {"error": {"code": "config_unavailable"}}
    assert response.header("retry-after") == "1"


# -- GET /hit -----------------------------------------------------------------------------------

async def test_hit_produces_an_anonymous_event_and_answers_a_gif(h: Harness) -> None:
    response = await h.connect().request(
        get(f"/hit?sid={SID}&p=%2Fhome&r=https%3A%2F%2Fsearch.example%2F", origin=None,
            headers=f"Referer: https://www.example.com/home\r\nCookie: viz_bid={BID}\r\n"
            .encode()))
    assert response.status == 200
    assert response.header("content-type") == "image/gif"
    assert response.body.startswith(b"GIF89a")
    assert response.header("set-cookie") is None
    ((key, value),) = h.sink.messages
    envelope = _fast.decode_envelope(value)
    assert key == SID.encode()
    assert (envelope.t, envelope.p, envelope.r) == ("hit", "/home", "https://search.example/")
    assert envelope.bid is None
    assert envelope.tier == 0


async def test_hit_ids_are_unique(h: Harness) -> None:
    for _ in range(3):
        await h.connect().request(get(f"/hit?sid={SID}&p=/"))
    ids = {_fast.decode_envelope(v).eid for _, v in h.sink.messages}
    assert len(ids) == 3


async def test_hit_from_a_foreign_page_is_refused(h: Harness) -> None:
    response = await h.connect().request(
        get(f"/hit?sid={SID}&p=/", origin=None, headers=b"Referer: https://evil.example/\r\n"))
    assert response.status == 403
    response = await h.connect().request(get(f"/hit?sid={SID}&p=/", origin=b"null"))
    assert response.status == 403
    assert h.sink.messages == []


async def test_hit_without_origin_or_referer_is_dropped(h: Harness) -> None:
    response = await h.connect().request(get(f"/hit?sid={SID}&p=/", origin=None))
    assert response.status == 204
    assert response.header("x-viz-dropped") == "no_origin"


async def test_hit_by_beacon_post_is_accepted(h: Harness) -> None:
    response = await h.connect().request(post(f"/hit?sid={SID}&p=/", b""))
    assert response.status == 200
    assert len(h.sink.messages) == 1


async def test_hit_with_a_bad_path_is_400(h: Harness) -> None:
    response = await h.connect().request(get(f"/hit?sid={SID}&p=relative"))
    assert response.status == 400
    assert response.json()["error"]["path"] == "$.p"


# -- OPTIONS ------------------------------------------------------------------------------------

async def test_preflight_grants_only_the_sites_own_origin(h: Harness) -> None:
    raw = (b"OPTIONS /collect?sid=%s HTTP/1.1\r\nOrigin: %s\r\n"
           b"Access-Control-Request-Method: POST\r\n\r\n")
    ok = await h.connect().request(raw % (SID.encode(), ORIGIN))
    assert ok.status == 204
    assert ok.header("access-control-allow-origin") == ORIGIN.decode()
    assert ok.header("access-control-allow-credentials") == "true"
    assert "POST" in ok.header("access-control-allow-methods")
    assert ok.header("vary") == "Origin"
    for origin in (b"https://evil.example", b"null"):
        refused = await h.connect().request(raw % (SID.encode(), origin))
        assert refused.status == 204
        assert refused.header("access-control-allow-origin") is None
        assert refused.header("vary") == "Origin"
    no_sid = await h.connect().request(b"OPTIONS /collect HTTP/1.1\r\nOrigin: %s\r\n\r\n"
                                       % ORIGIN)
    assert no_sid.header("access-control-allow-origin") is None


# -- operations ---------------------------------------------------------------------------------

async def test_readyz_follows_the_sinks_cached_broker_state(h: Harness) -> None:
    assert (await h.connect().request(get("/readyz"))).status == 200
    h.sink.is_ready = False
    response = await h.connect().request(get("/readyz"))
    assert response.status == 503
    assert response.header("retry-after") == "1"


async def test_metrics_count_requests_drops_and_failures(h: Harness) -> None:
    conn = h.connect()
    await conn.request(post("/collect", h.body(1)))
    await conn.request(post("/collect", h.body(1), ua=b"python-requests/2.31"))
    await conn.request(post("/collect", b"[]"))
    response = await conn.request(get("/metrics"))
    assert response.status == 200
    assert response.header("content-type").startswith("text/plain")
    text = response.body.decode()
    assert 'viz_collect_requests_total{route="collect",status="204"} 2.0' in text
    assert 'viz_collect_requests_total{route="collect",status="400"} 1.0' in text
    assert 'viz_collect_drops_total{reason="bot"} 1.0' in text
    assert 'viz_collect_failures_total{code="malformed"} 1.0' in text
    assert "viz_collect_delivery_seconds_bucket" in text
