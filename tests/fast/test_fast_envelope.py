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
