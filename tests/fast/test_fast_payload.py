"""Behaviour of parse_payload / hit_event, run against both twins."""

from __future__ import annotations

import json

import pytest
from _impls import KINDS, event_fields, load

from viz._fast.errors import PayloadError, PayloadTooLarge
from viz.common.errors import VizError

NOW = 1_700_000_000_000
BID = "AbCdEfGhIjKlMnOpQrSt_-"
TOKEN = "0123456789abcdef" * 4


@pytest.fixture(params=KINDS)
def payload(request):
    return load("payload", request.param)


def body(*events, **top) -> bytes:
    doc = {"sid": "site-1", "bid": BID, "token": TOKEN, "events": list(events)}
    doc.update(top)
    return json.dumps(doc).encode()


def ev(**fields):
    return {"id": "event-001", "t": "pageview", "p": "/", "ts": NOW, **fields}


def error_of(payload, raw: bytes) -> PayloadError:
    with pytest.raises(PayloadError) as info:
        payload.parse_payload(raw, NOW)
    return info.value


def test_parses_a_pageview_into_typed_fields(payload):
    got = payload.parse_payload(body(ev(r="https://a.example/", title="Hi")), NOW)
    assert (got.sid, got.bid, got.token) == ("site-1", BID, TOKEN)
    assert event_fields(got.events[0]) == {
        "id": "event-001", "t": "pageview", "p": "/", "r": "https://a.example/", "ts": NOW,
        "ms": None, "h": None, "n": None, "title": "Hi",
    }  # fmt: skip


def test_error_path_points_at_the_offending_event_field(payload):
    exc = error_of(payload, body(ev(), ev(), ev(p="nope")))
    assert exc.path == "$.events[2].p"
    assert str(exc).startswith("$.events[2].p: ")


def test_rejects_body_over_64_kib_before_decoding(payload):
    exc = error_of(payload, b"{" * 65537)
    assert isinstance(exc, PayloadTooLarge) and exc.path == "$"


def test_missing_key_is_reported_at_its_own_path(payload):
    assert error_of(payload, body(ev(), token=None)).path == "$.token"
    assert error_of(payload, body({"id": "event-001", "p": "/", "ts": NOW})).path == (
        "$.events[0].t"
    )


@pytest.mark.parametrize(
    "fields,path",
    [
        ({"t": "active"}, "$.events[0].ms"),
        ({"t": "exit"}, "$.events[0].h"),
        ({"t": "event"}, "$.events[0].n"),
        ({"ms": 86_400_001}, "$.events[0].ms"),
        ({"ts": NOW - 7 * 86_400_000 - 1}, "$.events[0].ts"),
        ({"ts": NOW + 300_001}, "$.events[0].ts"),
        ({"title": "x" * 513}, "$.events[0].title"),
        ({"n": "x" * 129, "t": "event"}, "$.events[0].n"),
        ({"r": "\u0000"}, "$.events[0].r"),
    ],
)
def test_rejects_events_breaking_type_rules(payload, fields, path):
    assert error_of(payload, body(ev(**fields))).path == path


def test_accepts_required_fields_per_type(payload):
    got = payload.parse_payload(
        body(ev(t="active", ms=0), ev(t="exit", h="https://x/"), ev(t="event", n="buy")), NOW
    )
    assert [e.t for e in got.events] == ["active", "exit", "event"]


def test_ignores_unknown_keys(payload):
    got = payload.parse_payload(body(ev(future={"a": [1]}), v=9), NOW)
    assert not hasattr(got.events[0], "future")


def test_rejects_nesting_deeper_than_32_levels_at_root(payload):
    # the top-level object is level 1, so 32 nested lists under it make 33 levels
    deep = json.loads("[" * 32 + "]" * 32)
    assert error_of(payload, body(ev(), x=deep)).path == "$"
    assert error_of(payload, body(ev(p="x"), x=deep)).path == "$"
    payload.parse_payload(body(ev(), x=json.loads("[" * 31 + "]" * 31)), NOW)
    very_deep = b'{"sid":' + b"[" * 3000 + b"]" * 3000 + b"}"
    assert error_of(payload, very_deep).path == "$"


def test_rejects_lone_surrogates_and_invalid_utf8_at_root(payload):
    assert error_of(payload, body(ev(title="X")).replace(b'"X"', b'"\\udc00"')).path == "$"
    assert error_of(payload, body(ev(title="X")).replace(b'"X"', b'"\xed\xa0\x80"')).path == "$"
    assert error_of(payload, body(ev(title="X")).replace(b'"X"', b'"\xff"')).path == "$"


def test_accepts_escaped_and_non_ascii_text(payload):
    raw = body(ev(p="/caf\u00e9/\U0001f389", title='"quoted" \\ slash'))
    got = payload.parse_payload(raw, NOW).events[0]
    assert got.p == "/caf\u00e9/\U0001f389" and got.title == '"quoted" \\ slash'


def test_errors_are_value_errors_of_viz():
    assert issubclass(PayloadError, VizError) and issubclass(PayloadError, ValueError)
    assert issubclass(PayloadTooLarge, PayloadError)


def test_rejects_non_bytes_body_and_bad_clock(payload):
    with pytest.raises(TypeError):
        payload.parse_payload(body(ev()).decode(), NOW)
    with pytest.raises(TypeError):
        payload.parse_payload(body(ev()), float(NOW))


def test_hit_event_validates_query_fields(payload):
    hit = payload.hit_event("srv-00000001", "/a", None, NOW)
    assert (hit.t, hit.p, hit.r, hit.ts, hit.ms) == ("hit", "/a", None, NOW, None)
    for args, path in [
        (("short", "/a", None), "$.id"),
        (("srv-00000001", "a", None), "$.p"),
        (("srv-00000001", "/a", "x" * 2049), "$.r"),
    ]:
        with pytest.raises(PayloadError) as info:
            payload.hit_event(*args, NOW)
        assert info.value.path == path
