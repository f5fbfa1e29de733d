"""Regenerate tests/fixtures/{token,payload,envelope}_vectors.json (run by hand, then review).

    .venv/bin/python tests/fast/make_golden.py

Token tokens come from the stdlib hmac (independent of both twins); payload cases carry the
error path written here by hand; envelope bytes come from the pure twin and are a contract:
a diff in them is a wire-format change for the consumer.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from pathlib import Path

from viz._fast import _envelope_py, _payload_py, _token_py
from viz._fast.errors import EnvelopeError, PayloadError

OUT = Path(__file__).resolve().parents[1] / "fixtures"
NOW_MS = 1_700_000_000_000
KEY_A = bytes(range(32)).hex()
KEY_B = hashlib.sha256(b"viz golden key b").hexdigest()
BID = "AbCdEfGhIjKlMnOpQrSt_-"


def _dump(name: str, data: dict) -> None:
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    (OUT / name).write_text(text, "utf-8")


def tokens() -> dict:
    issue = []
    for key, bid, tid, ts in [
        (KEY_A, BID, "tenant-7", 1_700_000_123.25),
        (KEY_A, BID, "t", 0),
        (KEY_A, BID, "t" * 64, 299.999),
        (KEY_A, BID, "T_-9", 300),
        (KEY_B, "AAAAAAAAAAAAAAAAAAAAAA", "news-group", 1_767_225_600),
        ("6b" * 80, BID, "long-key", 1_700_000_000),
    ]:
        msg = f"{bid}:{tid}:{math.floor(ts / 300)}".encode()
        token = hmac.new(bytes.fromhex(key), msg, hashlib.sha256).hexdigest()
        issue.append({"key_hex": key, "bid": bid, "tid": tid, "ts": ts, "message": msg.decode(),
                      "token": token})  # fmt: skip

    def tok(key: str, ts: float, bid: str = BID, tid: str = "tenant-7") -> str:
        msg = f"{bid}:{tid}:{math.floor(ts / 300)}".encode()
        return hmac.new(bytes.fromhex(key), msg, hashlib.sha256).hexdigest()

    t0 = 1_700_000_100  # window 5_666_667 starts at 1_700_000_100
    verify = [
        ("same window", [KEY_A], tok(KEY_A, t0), t0 + 299, "ok"),
        ("previous window", [KEY_A], tok(KEY_A, t0), t0 + 300, "ok"),
        ("previous window, last second", [KEY_A], tok(KEY_A, t0), t0 + 599.999, "ok"),
        ("two windows old", [KEY_A], tok(KEY_A, t0), t0 + 600, "TokenExpired"),
        ("13 windows old", [KEY_A], tok(KEY_A, t0), t0 + 300 * 13, "TokenExpired"),
        ("14 windows old (beyond lookback)", [KEY_A], tok(KEY_A, t0), t0 + 300 * 14,
         "TokenInvalid"),
        ("next window (clock ahead)", [KEY_A], tok(KEY_A, t0 + 300), t0, "TokenExpired"),
        ("previous key after rotation", [KEY_B, KEY_A], tok(KEY_A, t0), t0, "ok"),
        ("unknown key", [KEY_B], tok(KEY_A, t0), t0, "TokenInvalid"),
        ("uppercase hex", [KEY_A], tok(KEY_A, t0).upper(), t0, "TokenInvalid"),
        ("63 chars", [KEY_A], tok(KEY_A, t0)[:63], t0, "TokenInvalid"),
        ("other tenant", [KEY_A], tok(KEY_A, t0, tid="tenant-8"), t0, "TokenInvalid"),
    ]
    cases = [
        {"name": name, "keys_hex": keys, "bid": BID, "tid": "tenant-7", "token": token,
         "now_s": now, "expect": expect}
        for name, keys, token, now, expect in verify
    ]  # fmt: skip
    for name, bid, tid in [
        ("bid with colon", "AbCdEfGhIjKlMnOpQrSt:-", "tenant-7"),
        ("bid 21 chars", BID[:21], "tenant-7"),
        ("tid with colon", BID, "a:b"),
        ("empty tid", BID, ""),
        ("tid 65 chars", BID, "t" * 65),
    ]:
        cases.append({"name": name, "keys_hex": [KEY_A], "bid": bid, "tid": tid,
                      "token": "0" * 64, "now_s": t0, "expect": "BadIdentifier"})  # fmt: skip
    return {
        "about": "token = hex(HMAC-SHA256(key, bid + ':' + tid + ':' + floor(ts/300))); "
        "verify accepts windows w and w-1 for every key; w+1 and w-2..w-13 -> TokenExpired",
        "window_s": 300,
        "expired_lookback_windows": 12,
        "issue": issue,
        "verify": cases,
    }


def _ev(**fields) -> dict:
    base = {"id": "ev-0000001", "t": "pageview", "p": "/", "ts": NOW_MS - 1000}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


def _body(events=None, **top) -> str:
    doc = {"sid": "news-site", "bid": BID, "token": "0123456789abcdef" * 4,
           "events": [_ev()] if events is None else events}  # fmt: skip
    doc.update(top)
    doc = {k: v for k, v in doc.items() if v is not ...}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def payloads() -> dict:
    valid = [
        ("one pageview", _body()),
        ("all fields", _body([_ev(r="https://www.google.com/", title="Héllo — wörld 🎉",
                                  t="exit", h="https://other.example/x?a=1", ms=1500)])),
        ("active needs ms", _body([_ev(t="active", ms=0)])),
        ("custom event", _body([_ev(t="event", n="signup")])),
        ("null optionals", _body([_ev(r=None, ms=None, h=None, n=None, title=None)])),
        ("unknown keys ignored", _body([_ev(extra={"a": [1, 2]}, v=2)], future=True)),
        ("escaped strings", '{"sid":"news\\u002dsite","bid":"' + BID + '","token":"'
         + "0123456789abcdef" * 4 + '","events":[{"id":"ev-0000001","t":"pageview",'
         '"p":"\\/a\\"b\\u00e9\\ud83c\\udf89","ts":' + str(NOW_MS) + "}]}"),
        ("ts at lower bound", _body([_ev(ts=NOW_MS - 7 * 86_400_000)])),
        ("ts at upper bound", _body([_ev(ts=NOW_MS + 300_000)])),
        ("50 events", _body([_ev(id=f"ev-{i:07d}") for i in range(50)])),
        ("whitespace", "\n " + _body() + " \t\r\n"),
    ]  # fmt: skip
    invalid = [
        ("not json", "{", "$"),
        ("trailing comma", _body()[:-1] + ",}", "$"),
        ("NaN", _body([_ev(ts="NaN")]).replace('"NaN"', "NaN"), "$"),
        ("lone surrogate", _body([_ev(title="x")]).replace('"x"', '"\\ud800"'), "$"),
        ("array top level", "[]", "$"),
        ("too deep", _body(deep=json.loads("[" * 40 + "]" * 40)), "$"),
        ("missing sid", _body(sid=...), "$.sid"),
        ("sid too short", _body(sid="ab"), "$.sid"),
        ("sid with dot", _body(sid="a.b"), "$.sid"),
        ("bid too long", _body(bid=BID + "x"), "$.bid"),
        ("uppercase token", _body(token="ABCDEF0123456789" * 4), "$.token"),
        ("events empty", _body([]), "$.events"),
        ("51 events", _body([_ev(id=f"ev-{i:07d}") for i in range(51)]), "$.events"),
        ("events not a list", _body({"a": 1}), "$.events"),
        ("event not an object", _body([_ev(), 5]), "$.events[1]"),
        ("id too short", _body([_ev(id="abc")]), "$.events[0].id"),
        ("unknown type", _body([_ev(t="click")]), "$.events[0].t"),
        ("path without slash", _body([_ev(p="index.html")]), "$.events[0].p"),
        ("path too long", _body([_ev(p="/" + "a" * 2048)]), "$.events[0].p"),
        ("control char in title", _body([_ev(title="a\nb")]), "$.events[0].title"),
        ("referrer not a string", _body([_ev(r=5)]), "$.events[0].r"),
        ("ts float", _body([_ev(ts=float(NOW_MS))]), "$.events[0].ts"),
        ("ts bool", _body([_ev(ts=True)]), "$.events[0].ts"),
        ("ts too old", _body([_ev(ts=NOW_MS - 7 * 86_400_000 - 1)]), "$.events[0].ts"),
        ("ts in the future", _body([_ev(ts=NOW_MS + 300_001)]), "$.events[0].ts"),
        ("ts huge", _body([_ev(ts=10**30)]), "$.events[0].ts"),
        ("active without ms", _body([_ev(t="active")]), "$.events[0].ms"),
        ("ms negative", _body([_ev(ms=-1)]), "$.events[0].ms"),
        ("exit without href", _body([_ev(t="exit")]), "$.events[0].h"),
        ("event without name", _body([_ev(t="event", n="")]), "$.events[0].n"),
        ("first error wins", _body([_ev(p="x", ts="y")]), "$.events[0].p"),
        ("deep value makes any error $", _body([_ev(p="x")], deep=json.loads("[" * 40 + "]" * 40)),
         "$"),
    ]  # fmt: skip
    cases = []
    for name, body in valid:
        doc = json.loads(body)
        expect = {"sid": doc["sid"], "bid": doc["bid"], "token": doc["token"], "events": [
            {k: ev.get(k) for k in ("id", "t", "p", "r", "ts", "ms", "h", "n", "title")}
            for ev in doc["events"]]}  # fmt: skip
        got = _payload_py.parse_payload(body.encode(), NOW_MS)
        assert got.sid == expect["sid"] and len(got.events) == len(expect["events"]), name
        cases.append({"name": name, "body": body, "expect": expect})
    for name, body, path in invalid:
        try:
            _payload_py.parse_payload(body.encode(), NOW_MS)
        except PayloadError as exc:
            assert exc.path == path, (name, exc)
        else:
            raise AssertionError(name)
        cases.append({"name": name, "body": body, "error": "PayloadError", "path": path})
    cases.append({"name": "invalid utf-8", "body_hex": _body().encode().replace(b"news", b"n\xffws").hex(),
                  "error": "PayloadError", "path": "$"})  # fmt: skip
    cases.append({"name": "body over 64 KiB", "body": _body(), "pad_spaces": 65536,
                  "error": "PayloadTooLarge", "path": "$"})  # fmt: skip
    cases.append({"name": "body of exactly 64 KiB", "body": _body(),
                  "pad_spaces": 65536 - len(_body().encode()),
                  "expect": cases[0]["expect"]})  # fmt: skip
    return {
        "about": "parse_payload(body, now_ms) vectors; body is UTF-8 text (or body_hex) "
        "followed by pad_spaces spaces; errors give the class and the JSON path",
        "now_ms": NOW_MS,
        "cases": cases,
    }


def envelopes() -> dict:
    ctx = {"sid": "news-site", "tid": "tenant-7", "bid": BID, "ua": "Mozilla/5.0 (X11)",
           "tier": 1, "server_ms": NOW_MS + 5}  # fmt: skip
    events = [
        ("pageview", dict(id="ev-0000001", t="pageview", p="/a", r=None, ts=NOW_MS, ms=None,
                          h=None, n=None, title=None), {}),
        ("all fields", dict(id="ev-0000002", t="exit", p="/a?b=1", r="https://g.co/",
                            ts=NOW_MS - 1, ms=42, h="https://x.example/", n=None,
                            title='Quote " back \\ slash é 🎉'), {}),
        ("anonymous hit", dict(id="hit-0000001", t="hit", p="/", r=None, ts=NOW_MS, ms=None,
                               h=None, n=None, title=None), {"bid": None, "tier": 0}),
        ("ua with control chars", dict(id="ev-0000003", t="event", p="/", r=None, ts=NOW_MS,
                                       ms=None, h=None, n="signup", title=None),
         {"ua": "bot\t\u0001\"x\"", "tier": 2}),
    ]  # fmt: skip
    encode = []
    for name, fields, over in events:
        c = dict(ctx, **over)
        raw = _envelope_py.encode_envelope(_payload_py.Event(**fields), **c)
        encode.append({"name": name, "event": fields, "context": c, "envelope": raw.decode()})
    decode = [{"name": "encoded " + e["name"], "raw": e["envelope"],
               "expect": {"v": 1, "ts": e["context"]["server_ms"], **_flat(e)}}
              for e in encode]  # fmt: skip
    bad = [
        ("not json", "{", "EnvelopeError"),
        ("not an object", "[1]", "EnvelopeError"),
        ("missing v", '{"ts":1,"data":{}}', "EnvelopeError"),
        ("version 2", '{"v":2,"whatever":true}', "UnknownVersion"),
        ("version as string", '{"v":"1","ts":1,"data":{}}', "EnvelopeError"),
        ("missing eid", encode[0]["envelope"].replace('"eid"', '"xid"'), "EnvelopeError"),
        ("tier as string", encode[0]["envelope"].replace('"tier":1', '"tier":"1"'),
         "EnvelopeError"),
    ]  # fmt: skip
    for name, raw, err in bad:
        try:
            _envelope_py.decode_envelope(raw.encode())
        except EnvelopeError as exc:
            assert type(exc).__name__ == err, name
        else:
            raise AssertionError(name)
        decode.append({"name": name, "raw": raw, "error": err})
    extra = encode[1]["envelope"].replace('"tier":1}', '"tier":1,"geo":{"c":"DE"}},"x":[]')
    decode.append({"name": "unknown fields tolerated", "raw": extra,
                   "expect": decode[1]["expect"]})  # fmt: skip
    return {
        "about": "encode: (event, context) -> exact envelope bytes (UTF-8); decode: raw -> "
        "flattened fields or error class. eid = sid:bid:id (bid empty when anonymous)",
        "encode": encode,
        "decode": decode,
    }


def _flat(e: dict) -> dict:
    ev, c = e["event"], e["context"]
    return {"eid": f"{c['sid']}:{c['bid'] or ''}:{ev['id']}", "sid": c["sid"], "tid": c["tid"],
            "bid": c["bid"], "id": ev["id"], "t": ev["t"], "p": ev["p"], "r": ev["r"],
            "cts": ev["ts"], "ms": ev["ms"], "h": ev["h"], "n": ev["n"], "title": ev["title"],
            "ua": c["ua"], "tier": c["tier"]}  # fmt: skip


if __name__ == "__main__":
    _token_py.TokenSigner([b"x"])  # the twins must import before we trust anything
    _dump("token_vectors.json", tokens())
    _dump("payload_vectors.json", payloads())
    _dump("envelope_vectors.json", envelopes())
    print("wrote", *(p.name for p in sorted(OUT.glob("*_vectors.json"))))
