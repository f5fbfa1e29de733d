"""Behaviour of the Kafka envelope encoder/decoder, run against both twins."""

from __future__ import annotations

import json

import pytest
from _impls import KINDS, load

from viz._fast.errors import EnvelopeError, UnknownVersion

NOW = 1_700_000_000_000
BID = "AbCdEfGhIjKlMnOpQrSt_-"
CTX = {"tid": "tenant-7", "ua": "Mozilla/5.0", "tier": 1, "server_ms": NOW + 7}


@pytest.fixture(params=KINDS)
def impl(request):
    return load("payload", request.param), load("envelope", request.param)


def parsed(payload_mod, *events):
    doc = {"sid": "site-1", "bid": BID, "token": "0" * 64, "events": list(events)}
    return payload_mod.parse_payload(json.dumps(doc).encode(), NOW)


def test_encodes_one_envelope_per_event_with_dedup_key(impl):
    payload_mod, envelope = impl
    pl = parsed(payload_mod, {"id": "event-001", "t": "pageview", "p": "/a", "ts": NOW},
                {"id": "event-002", "t": "active", "p": "/a", "ts": NOW, "ms": 900})  # fmt: skip
    out = envelope.encode_envelopes(pl, **CTX)
    docs = [json.loads(raw) for raw in out]
    assert [d["data"]["eid"] for d in docs] == [f"site-1:{BID}:event-001", f"site-1:{BID}:event-002"]
    assert docs[0] == {"v": 1, "ts": NOW + 7, "data": {
        "eid": f"site-1:{BID}:event-001", "sid": "site-1", "tid": "tenant-7", "bid": BID,
        "id": "event-001", "t": "pageview", "p": "/a", "cts": NOW, "ua": "Mozilla/5.0",
        "tier": 1}}  # fmt: skip
    assert docs[1]["data"]["ms"] == 900


def test_round_trips_through_decode(impl):
    payload_mod, envelope = impl
    pl = parsed(payload_mod, {"id": "event-001", "t": "exit", "p": "/é", "ts": NOW,
                              "h": "https://x/\"q\"", "title": "T\\"})  # fmt: skip
    env = envelope.decode_envelope(envelope.encode_envelopes(pl, **CTX)[0])
    assert (env.v, env.ts, env.sid, env.bid, env.p, env.h, env.title, env.cts, env.tier) == (
        1, NOW + 7, "site-1", BID, "/é", 'https://x/"q"', "T\\", NOW, 1)  # fmt: skip


def test_anonymous_hit_has_no_bid(impl):
    payload_mod, envelope = impl
    hit = payload_mod.hit_event("srv-00000001", "/", None, NOW)
    raw = envelope.encode_envelope(hit, sid="site-1", bid=None, **dict(CTX, tier=0))
    env = envelope.decode_envelope(raw)
    assert env.bid is None and env.eid == "site-1::srv-00000001" and env.t == "hit"
    assert b'"bid"' not in raw


def test_escapes_control_characters_in_user_agent(impl):
    payload_mod, envelope = impl
    hit = payload_mod.hit_event("srv-00000001", "/", None, NOW)
    raw = envelope.encode_envelope(hit, sid="s-1", bid=None, **dict(CTX, ua='a\x00"\n'))
    assert json.loads(raw)["data"]["ua"] == 'a\x00"\n'


def test_unknown_version_is_its_own_error(impl):
    _, envelope = impl
    with pytest.raises(UnknownVersion) as info:
        envelope.decode_envelope(b'{"v":2,"anything":[1]}')
    assert info.value.version == 2 and isinstance(info.value, EnvelopeError)


@pytest.mark.parametrize("raw", [b"", b"null", b'{"v":1}', b"\xff", None, "{}"])
def test_undecodable_input_is_an_envelope_error(impl, raw):
    _, envelope = impl
    with pytest.raises(EnvelopeError) as info:
        envelope.decode_envelope(raw)
    assert type(info.value) is EnvelopeError


def test_tolerates_unknown_fields(impl):
    payload_mod, envelope = impl
    hit = payload_mod.hit_event("srv-00000001", "/", None, NOW)
    doc = json.loads(envelope.encode_envelope(hit, sid="s-1", bid=None, **CTX))
    doc["data"]["geo"] = {"country": "DE"}
    doc["trace"] = "abc"
    assert envelope.decode_envelope(json.dumps(doc).encode()).sid == "s-1"


def test_rejects_bad_context_types(impl):
    payload_mod, envelope = impl
    hit = payload_mod.hit_event("srv-00000001", "/", None, NOW)
    with pytest.raises(TypeError):
        envelope.encode_envelope(hit, sid="s-1", bid=None, **dict(CTX, tier="1"))
    with pytest.raises(ValueError):
        envelope.encode_envelope(hit, sid="s-1", bid=None, **dict(CTX, tier=3))
    with pytest.raises(UnicodeEncodeError):
        envelope.encode_envelope(hit, sid="s-1", bid=None, **dict(CTX, ua="\ud800"))


# ------------------------------------------------------------------ decode_row


def fake_agent(ua):
    return ("B:" + ua, "1", "OS", "desktop", 0)


def fake_attribution(query, referrer):
    return ("host:" + referrer, "medium", "source:" + query, "", "", "", "", "")


def envelope_bytes(data, ts=NOW + 7):
    full = {"eid": "s:b:i", "sid": "s", "tid": "t", "id": "i", "t": "pageview", "p": "/",
            "cts": NOW, "ua": "Mozilla/5.0", "tier": 1, **data}  # fmt: skip
    return json.dumps({"v": 1, "ts": ts, "data": {k: v for k, v in full.items()
                                                   if v is not None}}).encode()


def test_decode_row_lays_out_the_warehouse_row(impl):
    _, envelope = impl
    raw = envelope_bytes({"bid": "b", "p": "/a/é?utm_source=x&q=1#frag?no", "r": "https://r/",
                          "ms": 900, "h": "https://out/", "n": "signup", "title": "T"})
    row = envelope.decode_row(raw, 3, 42, fake_agent, fake_attribution)
    assert row == [
        "s:b:i", "s", "t", NOW + 7, NOW, "pageview", "/a/é", "T", "signup", "b", 1,
        "https://r/", "host:https://r/", "medium", "source:utm_source=x&q=1", "", "", "", "", "",
        "B:Mozilla/5.0", "1", "OS", "desktop", 0, 900, "https://out/", 3, 42,
    ]  # fmt: skip


@pytest.mark.parametrize(("p", "path", "query"), [
    ("/", "/", ""), ("/a?", "/a", ""), ("/a#x?y", "/a", ""), ("/a?b?c#d", "/a", "b?c"),
    ("?q", "", "q"), ("#", "", ""), ("", "", ""),
])
def test_decode_row_splits_path_and_query_without_the_fragment(impl, p, path, query):
    _, envelope = impl
    row = envelope.decode_row(envelope_bytes({"p": p}), 0, 0, fake_agent, fake_attribution)
    assert (row[6], row[14]) == (path, "source:" + query)


def test_decode_row_fills_absent_fields_and_clamps_numbers(impl):
    _, envelope = impl
    raw = envelope_bytes({"cts": -5, "ms": 2**40}, ts=2**50)
    row = envelope.decode_row(raw, 0, 0, fake_agent, fake_attribution)
    assert (row[3], row[4], row[7], row[8], row[9], row[11], row[25], row[26]) == (
        2**41, 0, "", "", "", "", 2**32 - 1, "")  # fmt: skip
    row = envelope.decode_row(envelope_bytes({"ms": -1}), 0, 0, fake_agent, fake_attribution)
    assert row[25] == 0
    row = envelope.decode_row(envelope_bytes({}), 0, 0, fake_agent, fake_attribution)
    assert row[25] == 0


def test_decode_row_raises_what_decode_envelope_raises(impl):
    _, envelope = impl
    with pytest.raises(UnknownVersion):
        envelope.decode_row(b'{"v":2}', 0, 0, fake_agent, fake_attribution)
    with pytest.raises(EnvelopeError):
        envelope.decode_row(b'{"v":1,"ts":1}', 0, 0, fake_agent, fake_attribution)
    with pytest.raises(TypeError):
        envelope.decode_row(envelope_bytes({}), 0, 0, lambda ua: [ua], fake_attribution)


@pytest.mark.parametrize("tier", [-1, 3, 256, 2**40])
def test_a_tier_outside_0_to_2_is_undecodable_not_an_insert_failure(impl, tier):
    # The warehouse column is UInt8: such a message must go to the dead-letter topic.
    _, envelope = impl
    for raw in (envelope_bytes({"tier": tier}),  # the generic decoder
                json.dumps({"v": 1, "ts": NOW, "data": {  # collect's exact compact layout
                    "eid": "s:b:i", "sid": "s", "tid": "t", "bid": "b", "id": "i",
                    "t": "pageview", "p": "/", "cts": NOW, "ua": "u", "tier": tier}},
                    separators=(",", ":")).encode()):
        with pytest.raises(envelope.EnvelopeError, match="tier must be 0, 1 or 2"):
            envelope.decode_envelope(raw)
        with pytest.raises(envelope.EnvelopeError, match="tier must be 0, 1 or 2"):
            envelope.decode_row(raw, 0, 0, fake_agent, fake_attribution)
