"""Micro benchmarks of viz._fast: compiled vs pure twins, and the JSON decoders considered.

Run: .venv/bin/pytest bench/micro --benchmark-only -q   (not part of the default test run)
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

import pytest

from viz._fast import (
    _envelope_c,
    _envelope_py,
    _payload_c,
    _payload_py,
    _token_c,
    _token_py,
)

NOW_S = 1_700_000_123.25
NOW_MS = 1_700_000_000_000
BID = "AbCdEfGhIjKlMnOpQrSt_-"
TID = "tenant-7"
KIND = ["py", "c"]
TOKEN = {"py": _token_py, "c": _token_c}
PAYLOAD = {"py": _payload_py, "c": _payload_c}
ENVELOPE = {"py": _envelope_py, "c": _envelope_c}
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0"


def _event(i: int) -> dict:
    return {"id": f"evt-{i:012d}", "t": "pageview", "p": "/news/2024/05/some-article-title",
            "r": "https://www.google.com/", "ts": NOW_MS - 1000,
            "title": "Some article title – News"}  # fmt: skip


def _body(n: int) -> bytes:
    doc = {"sid": "news-site", "bid": BID, "token": "0123456789abcdef" * 4,
           "events": [_event(i) for i in range(n)]}  # fmt: skip
    return json.dumps(doc, ensure_ascii=False).encode()


BODY_1, BODY_10 = _body(1), _body(10)

try:
    import msgspec
except ImportError:
    _typed_msgspec = None
else:
    Ident = Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{8,64}$")]
    Text = Annotated[str, msgspec.Meta(max_length=2048, pattern="^[^\\x00-\\x1f]*$")]

    class _Ev(msgspec.Struct):
        id: Ident
        t: Literal["pageview", "active", "exit", "event"]
        p: Text
        ts: int
        r: Text | None = None
        ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] | None = None
        h: Text | None = None
        n: Annotated[str, msgspec.Meta(max_length=128)] | None = None
        title: Annotated[str, msgspec.Meta(max_length=512)] | None = None

    class _Body(msgspec.Struct):
        sid: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{3,64}$")]
        bid: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9_-]{22}$")]
        token: Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{64}$")]
        events: Annotated[list[_Ev], msgspec.Meta(min_length=1, max_length=50)]

    _typed_msgspec = msgspec.json.Decoder(_Body)


@pytest.mark.parametrize("kind", KIND)
def test_token_verify_current_window(benchmark, kind):
    signer = TOKEN[kind].TokenSigner([bytes(range(32))])
    token = signer.issue(BID, TID, NOW_S)
    benchmark(signer.verify, BID, TID, token, NOW_S)


@pytest.mark.parametrize("kind", KIND)
def test_token_verify_previous_window_after_rotation(benchmark, kind):
    # worst genuine case: 2 keys, token from the previous key's previous window (4 HMACs)
    old = TOKEN[kind].TokenSigner([b"o" * 32]).issue(BID, TID, NOW_S - 300)
    signer = TOKEN[kind].TokenSigner([bytes(range(32)), b"o" * 32])
    benchmark(signer.verify, BID, TID, old, NOW_S)


@pytest.mark.parametrize("kind", KIND)
def test_token_verify_forged(benchmark, kind):
    signer = TOKEN[kind].TokenSigner([bytes(range(32))])

    def forged():
        try:
            signer.verify(BID, TID, "0" * 64, NOW_S)
        except ValueError:
            pass

    benchmark(forged)


@pytest.mark.parametrize("kind", KIND)
def test_token_issue(benchmark, kind):
    benchmark(TOKEN[kind].TokenSigner([bytes(range(32))]).issue, BID, TID, NOW_S)


def test_stdlib_hmac_digest_baseline(benchmark):
    import hmac

    msg = f"{BID}:{TID}:5666667".encode()
    benchmark(hmac.digest, bytes(range(32)), msg, "sha256")


@pytest.mark.parametrize("kind", KIND)
@pytest.mark.parametrize("events", [1, 10])
def test_payload_parse(benchmark, kind, events):
    body = BODY_1 if events == 1 else BODY_10
    benchmark(PAYLOAD[kind].parse_payload, body, NOW_MS)


@pytest.mark.parametrize("events", [1, 10])
@pytest.mark.parametrize("decoder", ["json", "json_strict", "orjson", "msgspec"])
def test_decode_only_alternatives(benchmark, decoder, events):
    body = BODY_1 if events == 1 else BODY_10
    if decoder == "json":
        fn = json.loads
    elif decoder == "json_strict":
        from viz._fast._jsonload import strict_loads as fn
    elif decoder == "orjson":
        fn = pytest.importorskip("orjson").loads
    else:
        fn = pytest.importorskip("msgspec").json.Decoder().decode
    benchmark(fn, body)


@pytest.mark.parametrize("events", [1, 10])
def test_msgspec_typed_decode_alternative(benchmark, events):
    """msgspec decoding straight into Structs with constraints (no cross-field rules)."""
    if _typed_msgspec is None:
        pytest.skip("msgspec not installed")
    benchmark(_typed_msgspec.decode, BODY_1 if events == 1 else BODY_10)


@pytest.mark.parametrize("kind", KIND)
@pytest.mark.parametrize("events", [1, 10])
def test_envelope_encode_batch(benchmark, kind, events):
    payload = PAYLOAD[kind].parse_payload(BODY_1 if events == 1 else BODY_10, NOW_MS)
    benchmark(ENVELOPE[kind].encode_envelopes, payload, tid=TID, ua=UA, tier=1,
              server_ms=NOW_MS)  # fmt: skip


@pytest.mark.parametrize("kind", KIND)
def test_envelope_encode_one(benchmark, kind):
    event = PAYLOAD[kind].parse_payload(BODY_1, NOW_MS).events[0]
    benchmark(ENVELOPE[kind].encode_envelope, event, sid="news-site", tid=TID, bid=BID, ua=UA,
              tier=1, server_ms=NOW_MS)  # fmt: skip


def test_envelope_encode_json_dumps_alternative(benchmark):
    """The decode->re-encode shape we avoid: a dict per event through json.dumps."""
    event = _event(0)

    def dumps():
        data = dict(event, eid=f"news-site:{BID}:{event['id']}", sid="news-site", tid=TID,
                    bid=BID, ua=UA, tier=1)  # fmt: skip
        return json.dumps({"v": 1, "ts": NOW_MS, "data": data}, ensure_ascii=False,
                          separators=(",", ":")).encode()  # fmt: skip

    benchmark(dumps)


@pytest.mark.parametrize("kind", KIND)
def test_envelope_decode(benchmark, kind):
    payload = _payload_py.parse_payload(BODY_1, NOW_MS)
    raw = _envelope_py.encode_envelopes(payload, tid=TID, ua=UA, tier=1, server_ms=NOW_MS)[0]
    benchmark(ENVELOPE[kind].decode_envelope, raw)
