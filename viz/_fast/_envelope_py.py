"""Pure-Python reference for the Kafka envelope, the one contract between collect and consumer.

Wire format (UTF-8 JSON, compact, keys in this order, absent optional fields omitted):

    {"v":1,"ts":<server ms>,"data":{"eid","sid","tid","bid"?,"id","t","p","r"?,"cts",
     "ms"?,"h"?,"n"?,"title"?,"ua","tier"}}

    eid    dedup key: sid + ":" + bid + ":" + id  (bid empty for anonymous hits), stable
           across tracker retries because the tracker keeps its event id `id`
    sid tid bid      site, tenant, browser id (bid absent for anonymous hits)
    id t p r         client event id, type (pageview|active|exit|event|hit), path, referrer
    cts ms h n title client ms timestamp, active ms, exit href, event name, page title
    ua tier          User-Agent header, consent tier 0..2

Strings are escaped like `json.dumps(s, ensure_ascii=False)`, so both twins produce the same
bytes. `decode_envelope` tolerates unknown keys (forward compatibility) and rejects any other
`v` with `UnknownVersion`; anything undecodable raises `EnvelopeError`.

`decode_row` decodes straight into the consumer's warehouse row (a list, in this order):

    eid sid tid ts cts t path title n bid tier r *attribution(query, r) *agent(ua) ms h
    partition offset

`path` and `query` are `p` without its fragment, split at the first `?`; absent optional
strings become "", `ms` 0; `ts`/`cts` are clamped to 0..2**41 ms and `ms` to 0..2**32-1, so
the row always fits its columns. `agent` and `attribution` are the caller's enrichment (the
consumer's cached lookups); each returns a tuple that is spliced in as is.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

from viz._fast._jsonload import JSON_ERRORS, strict_loads
from viz._fast.errors import EnvelopeError, UnknownVersion

__all__ = [
    "VERSION",
    "Envelope",
    "decode_envelope",
    "decode_row",
    "encode_envelope",
    "encode_envelopes",
]

VERSION = 1
MAX_DEPTH = 32
_INT64 = 2**63
_MAX_TS_MS = 2**41  # year 2039 in ms; anything beyond is clamped, never a crash
_MAX_UINT32 = 2**32 - 1
_DATA_KEYS = frozenset(
    {"eid", "sid", "tid", "bid", "id", "t", "p", "r", "cts", "ms", "h", "n", "title", "ua", "tier"}
)
_TOP_KEYS = frozenset({"v", "ts", "data"})


@dataclass(slots=True)
class Envelope:
    """A decoded envelope, flattened: `ts` is the server time, `cts` the client's."""

    v: int
    ts: int
    eid: str
    sid: str
    tid: str
    bid: str | None
    id: str
    t: str
    p: str
    r: str | None
    cts: int
    ms: int | None
    h: str | None
    n: str | None
    title: str | None
    ua: str
    tier: int


def _s(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return json.dumps(value, ensure_ascii=False)


def _i(value: object) -> str:
    if type(value) is not int:
        raise TypeError(f"expected int, got {type(value).__name__}")
    if not -_INT64 <= value < _INT64:
        raise OverflowError("int out of int64 range")
    return str(value)


def _check_context(tid: object, ua: object, tier: object, server_ms: object) -> None:
    if not isinstance(tid, str) or not isinstance(ua, str):
        raise TypeError("tid and ua must be str")
    if type(tier) is not int or type(server_ms) is not int:
        raise TypeError("tier and server_ms must be int")
    if not 0 <= tier <= 2:
        raise ValueError("tier must be 0, 1 or 2")
    if not 0 <= server_ms <= 2**53:
        raise ValueError("server_ms out of range")


def _encode(event, sid: str, tid: str, bid: str | None, ua: str, tier: int, server_ms: int) -> bytes:
    eid_bid = "" if bid is None else bid
    out = [
        '{"v":1,"ts":', _i(server_ms),
        ',"data":{"eid":', _s(f"{_str(sid)}:{_str(eid_bid)}:{_str(event.id)}"),
        ',"sid":', _s(sid), ',"tid":', _s(tid),
    ]  # fmt: skip
    if bid is not None:
        out += (',"bid":', _s(bid))
    out += (',"id":', _s(event.id), ',"t":', _s(event.t), ',"p":', _s(event.p))
    if event.r is not None:
        out += (',"r":', _s(event.r))
    out += (',"cts":', _i(event.ts))
    if event.ms is not None:
        out += (',"ms":', _i(event.ms))
    for key, value in (("h", event.h), ("n", event.n), ("title", event.title)):
        if value is not None:
            out += (f',"{key}":', _s(value))
    out += (',"ua":', _s(ua), ',"tier":', _i(tier), "}}")
    return "".join(out).encode("utf-8")


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return value


def encode_envelope(
    event, *, sid: str, tid: str, bid: str | None, ua: str, tier: int, server_ms: int
) -> bytes:
    """One envelope for a validated Event (from `parse_payload` or `hit_event`)."""
    _check_context(tid, ua, tier, server_ms)
    _str(sid)
    if bid is not None:
        _str(bid)
    return _encode(event, sid, tid, bid, ua, tier, server_ms)


def encode_envelopes(payload, *, tid: str, ua: str, tier: int, server_ms: int) -> list[bytes]:
    """One envelope per event of a validated Payload, in order."""
    _check_context(tid, ua, tier, server_ms)
    return [
        _encode(ev, payload.sid, tid, payload.bid, ua, tier, server_ms) for ev in payload.events
    ]


def _deeper_than(obj: object, limit: int) -> bool:
    if isinstance(obj, dict):
        return limit <= 0 or any(_deeper_than(v, limit - 1) for v in obj.values())
    if isinstance(obj, list):
        return limit <= 0 or any(_deeper_than(v, limit - 1) for v in obj)
    return False


def _check_unknown(obj: dict, known: frozenset, level: int) -> None:
    if not obj.keys() <= known:
        for key, value in obj.items():
            if key not in known and _deeper_than(value, MAX_DEPTH - level):
                raise EnvelopeError("envelope nested too deeply")


@overload
def _get_int(obj: dict, key: str, required: Literal[True]) -> int: ...


@overload
def _get_int(obj: dict, key: str, required: bool) -> int | None: ...


def _get_int(obj: dict, key: str, required: bool) -> int | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if type(value) is not int or not -_INT64 <= value < _INT64:
        raise EnvelopeError(f"{key} must be an int64")
    return value


@overload
def _get_str(obj: dict, key: str, required: Literal[True]) -> str: ...


@overload
def _get_str(obj: dict, key: str, required: bool) -> str | None: ...


def _get_str(obj: dict, key: str, required: bool) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise EnvelopeError(f"{key} must be a string")
    return value


def decode_envelope(raw: bytes) -> Envelope:
    """Decode one Kafka message value; raise EnvelopeError or UnknownVersion."""
    if not isinstance(raw, bytes):
        raise EnvelopeError("message value is not bytes")
    try:
        doc = strict_loads(raw)
    except JSON_ERRORS:
        raise EnvelopeError("message value is not JSON") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("envelope must be an object")
    v = _get_int(doc, "v", True)
    if v != VERSION:
        raise UnknownVersion(v)
    ts = _get_int(doc, "ts", True)
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EnvelopeError("data must be an object")
    env = Envelope(
        v,
        ts,
        _get_str(data, "eid", True),
        _get_str(data, "sid", True),
        _get_str(data, "tid", True),
        _get_str(data, "bid", False),
        _get_str(data, "id", True),
        _get_str(data, "t", True),
        _get_str(data, "p", True),
        _get_str(data, "r", False),
        _get_int(data, "cts", True),
        _get_int(data, "ms", False),
        _get_str(data, "h", False),
        _get_str(data, "n", False),
        _get_str(data, "title", False),
        _get_str(data, "ua", True),
        _get_int(data, "tier", True),
    )
    _check_unknown(data, _DATA_KEYS, 2)
    _check_unknown(doc, _TOP_KEYS, 1)
    if not 0 <= env.tier <= 2:  # a UInt8 column: out of range would fail the whole insert
        raise EnvelopeError("tier must be 0, 1 or 2")
    return env


def decode_row(
    raw: bytes,
    partition: int,
    offset: int,
    agent: Callable[[str], tuple],
    attribution: Callable[[str, str], tuple],
) -> list[Any]:
    """Decode one Kafka message value into a warehouse row (layout in the module docstring);
    raise what `decode_envelope` raises, and TypeError when an enrichment returns no tuple."""
    env = decode_envelope(raw)
    path, _, query = env.p.partition("#")[0].partition("?")
    referrer = env.r or ""
    ua_columns = agent(env.ua)
    attr_columns = attribution(query, referrer)
    if type(ua_columns) is not tuple or type(attr_columns) is not tuple:
        raise TypeError("agent and attribution must return tuples")
    return [
        env.eid, env.sid, env.tid, min(max(env.ts, 0), _MAX_TS_MS),
        min(max(env.cts, 0), _MAX_TS_MS), env.t, path, env.title or "", env.n or "",
        env.bid or "", env.tier, referrer, *attr_columns, *ua_columns,
        min(max(env.ms or 0, 0), _MAX_UINT32), env.h or "", partition, offset,
    ]  # fmt: skip
