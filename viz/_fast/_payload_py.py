"""Pure-Python reference for parsing and validating a `POST /collect` body in one call.

`parse_payload(body, now_ms)` returns a `Payload` or raises `PayloadError(path, message)`;
`_payload_c` follows exactly the same rules in the same order (the first failing rule wins):

1. `body` is bytes of at most MAX_BODY_BYTES (65536) -> else `PayloadTooLarge` at `$` (413).
2. It is strict UTF-8 JSON (see `_jsonload`) -> else `$`.
   A document nested deeper than MAX_DEPTH (32) levels fails at `$` whatever else is wrong.
3. The top level is an object; then, in this order:
   `sid`    `[A-Za-z0-9_-]{3,64}`;  `bid` `[A-Za-z0-9_-]{22}`;  `token` `[0-9a-f]{64}`;
   `events` a list of 1..MAX_EVENTS (50) objects, each checked in this key order:
   `id`     `[A-Za-z0-9_-]{8,64}` (client event id, kept across retries)
   `t`      one of pageview, active, exit, event
   `p`      text of 1..2048 chars starting with "/"
   `r`      optional text of 0..2048 chars
   `ts`     integer client ms in [now_ms - 7 days, now_ms + 5 min]
   `ms`     optional integer 0..86_400_000; required when t is "active"
   `h`      optional text of 1..2048 chars; required when t is "exit"
   `n`      optional text of 1..128 chars; required when t is "event"
   `title`  optional text of 0..512 chars
   "Optional" means absent or null (both give None). "Text" is a str without C0 control
   characters (U+0000..U+001F); lengths count code points. Booleans are not integers.
4. Unknown keys, at the top level and in events, are ignored (a newer tracker may send fields
   this collect does not know yet) and are not forwarded.

Error paths look like `$.events[2].p`; a missing key is reported at its own path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, overload

from viz._fast._jsonload import JSON_ERRORS, strict_loads
from viz._fast.errors import PayloadError, PayloadTooLarge

__all__ = [
    "EVENT_TYPES",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_EVENTS",
    "Event",
    "Payload",
    "hit_event",
    "parse_payload",
]

MAX_BODY_BYTES = 65536
MAX_EVENTS = 50
MAX_DEPTH = 32
EVENT_TYPES = frozenset({"pageview", "active", "exit", "event"})
PAST_MS = 7 * 24 * 3600 * 1000
FUTURE_MS = 5 * 60 * 1000
MAX_ACTIVE_MS = 86_400_000

_SID = re.compile(r"[A-Za-z0-9_-]{3,64}")
_BID = re.compile(r"[A-Za-z0-9_-]{22}")
_TOKEN = re.compile(r"[0-9a-f]{64}")
_EID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_CONTROL = re.compile("[\x00-\x1f]")
_MISSING = object()
_TOP_KEYS = frozenset({"sid", "bid", "token", "events"})
_EVENT_KEYS = frozenset({"id", "t", "p", "r", "ts", "ms", "h", "n", "title"})


@dataclass(slots=True)
class Event:
    """One validated event; str fields hold no control characters and no lone surrogates."""

    id: str
    t: str
    p: str
    r: str | None
    ts: int
    ms: int | None
    h: str | None
    n: str | None
    title: str | None


@dataclass(slots=True)
class Payload:
    sid: str
    bid: str
    token: str
    events: list[Event]


def _deeper_than(obj: object, limit: int) -> bool:
    """True when obj nests more than `limit` containers; recursion never exceeds limit + 1."""
    if isinstance(obj, dict):
        return limit <= 0 or any(_deeper_than(v, limit - 1) for v in obj.values())
    if isinstance(obj, list):
        return limit <= 0 or any(_deeper_than(v, limit - 1) for v in obj)
    return False


def _ident(obj: dict, key: str, path: str, pattern: re.Pattern, what: str) -> str:
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        raise PayloadError(path, "is required")
    if not isinstance(value, str):
        raise PayloadError(path, "must be a string")
    if pattern.fullmatch(value) is None:
        raise PayloadError(path, f"must be {what}")
    return value


@overload
def _text(obj: dict, key: str, path: str, lo: int, hi: int, required: Literal[True]) -> str: ...


@overload
def _text(obj: dict, key: str, path: str, lo: int, hi: int, required: bool) -> str | None: ...


def _text(obj: dict, key: str, path: str, lo: int, hi: int, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PayloadError(path, "is required")
        return None
    if not isinstance(value, str):
        raise PayloadError(path, "must be a string")
    if not lo <= len(value) <= hi:
        raise PayloadError(path, f"must be {lo}..{hi} characters long")
    if _CONTROL.search(value) is not None:
        raise PayloadError(path, "must not contain control characters")
    return value


@overload
def _int(obj: dict, key: str, path: str, lo: int, hi: int, required: Literal[True]) -> int: ...


@overload
def _int(obj: dict, key: str, path: str, lo: int, hi: int, required: bool) -> int | None: ...


def _int(obj: dict, key: str, path: str, lo: int, hi: int, required: bool) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise PayloadError(path, "is required")
        return None
    if type(value) is not int:
        raise PayloadError(path, "must be an integer")
    if not lo <= value <= hi:
        raise PayloadError(path, f"must be within {lo}..{hi}")
    return value


def _check_unknown(obj: dict, known: frozenset, level: int) -> None:
    for key, value in obj.items():
        if key not in known and _deeper_than(value, MAX_DEPTH - level):
            raise PayloadError("$", "nested too deeply")


def _event(ev: object, path: str, now_ms: int) -> Event:
    if not isinstance(ev, dict):
        raise PayloadError(path, "must be an object")
    eid = _ident(ev, "id", path + ".id", _EID, "8-64 characters of [A-Za-z0-9_-]")
    t = ev.get("t")
    if t is None:
        raise PayloadError(path + ".t", "is required")
    if not isinstance(t, str):
        raise PayloadError(path + ".t", "must be a string")
    if t not in EVENT_TYPES:
        raise PayloadError(path + ".t", "must be pageview, active, exit or event")
    p = _text(ev, "p", path + ".p", 1, 2048, True)
    if p[0] != "/":
        raise PayloadError(path + ".p", 'must start with "/"')
    event = Event(
        eid,
        t,
        p,
        _text(ev, "r", path + ".r", 0, 2048, False),
        _int(ev, "ts", path + ".ts", now_ms - PAST_MS, now_ms + FUTURE_MS, True),
        _int(ev, "ms", path + ".ms", 0, MAX_ACTIVE_MS, t == "active"),
        _text(ev, "h", path + ".h", 1, 2048, t == "exit"),
        _text(ev, "n", path + ".n", 1, 128, t == "event"),
        _text(ev, "title", path + ".title", 0, 512, False),
    )
    if not ev.keys() <= _EVENT_KEYS:
        _check_unknown(ev, _EVENT_KEYS, 3)
    return event


def _payload(doc: object, now_ms: int) -> Payload:
    if not isinstance(doc, dict):
        raise PayloadError("$", "must be an object")
    sid = _ident(doc, "sid", "$.sid", _SID, "3-64 characters of [A-Za-z0-9_-]")
    bid = _ident(doc, "bid", "$.bid", _BID, "22 base64url characters")
    token = _ident(doc, "token", "$.token", _TOKEN, "64 lowercase hex characters")
    events = doc.get("events")
    if events is None:
        raise PayloadError("$.events", "is required")
    if not isinstance(events, list):
        raise PayloadError("$.events", "must be a list")
    if not 1 <= len(events) <= MAX_EVENTS:
        raise PayloadError("$.events", f"must hold 1..{MAX_EVENTS} events")
    parsed = [_event(ev, f"$.events[{i}]", now_ms) for i, ev in enumerate(events)]
    if not doc.keys() <= _TOP_KEYS:
        _check_unknown(doc, _TOP_KEYS, 1)
    return Payload(sid, bid, token, parsed)


def _check_now(ms: int) -> None:
    if type(ms) is not int:
        raise TypeError("server time must be an int (epoch ms)")
    if not 0 <= ms <= 2**53:
        raise ValueError("server time out of range")


def parse_payload(body: bytes, now_ms: int) -> Payload:
    """Parse and validate a collect body; `now_ms` is the server's wall clock in epoch ms."""
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    _check_now(now_ms)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge("$", f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        doc = strict_loads(body)
    except JSON_ERRORS:
        raise PayloadError("$", "body is not valid JSON") from None
    try:
        return _payload(doc, now_ms)
    except PayloadError as exc:
        if exc.path != "$" and _deeper_than(doc, MAX_DEPTH):
            raise PayloadError("$", "nested too deeply") from None
        raise


def hit_event(id: str, p: str, r: str | None, ts: int) -> Event:
    """Validate the query of an anonymous `GET /hit` into an Event with t="hit".

    `id` is generated by collect (same charset as client ids); `ts` is the server time in ms.
    Errors carry the paths `$.id`, `$.p`, `$.r`.
    """
    query = {"id": id, "p": p, "r": r}
    eid = _ident(query, "id", "$.id", _EID, "8-64 characters of [A-Za-z0-9_-]")
    path = _text(query, "p", "$.p", 1, 2048, True)
    if path[0] != "/":
        raise PayloadError("$.p", 'must start with "/"')
    ref = _text(query, "r", "$.r", 0, 2048, False)
    _check_now(ts)
    return Event(eid, "hit", path, ref, ts, None, None, None, None)
