# cython: language_level=3
"""Compiled `POST /collect` parsing: the same rules, order and errors as `_payload_py`.

Decoding is orjson when installed (else the stdlib strict decoder); the checks run here in C
over the decoded objects and the results are C-level classes `_envelope_c` reads directly.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.object cimport PyObject

from viz._fast._jsonload import JSON_ERRORS, fast_loads
from viz._fast.errors import PayloadError, PayloadTooLarge

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void *PyUnicode_DATA(object o)
    int PyUnicode_KIND(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    bint PyLong_CheckExact(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1

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

cdef Py_ssize_t _MAX_BODY = MAX_BODY_BYTES
cdef int _MAX_EVENTS = MAX_EVENTS
cdef int _MAX_DEPTH = MAX_DEPTH
cdef long long _PAST_MS = PAST_MS, _FUTURE_MS = FUTURE_MS, _MAX_ACTIVE_MS = MAX_ACTIVE_MS
cdef long long _MAX_NOW = 2 ** 53
cdef object _loads = fast_loads
cdef tuple _JSON_ERRORS = JSON_ERRORS
cdef frozenset _TOP_KEYS = frozenset({"sid", "bid", "token", "events"})
cdef frozenset _EVENT_KEYS = frozenset({"id", "t", "p", "r", "ts", "ms", "h", "n", "title"})

cdef tuple _TOP_KEY_TUPLE = tuple(_TOP_KEYS)
cdef tuple _EVENT_KEY_TUPLE = tuple(_EVENT_KEYS)

cdef unsigned char _IDCHAR[256]
cdef unsigned char _HEXCHAR[256]


cdef void _init_tables() noexcept:
    cdef int c
    for c in range(256):
        _IDCHAR[c] = (
            (c >= 0x41 and c <= 0x5A) or (c >= 0x61 and c <= 0x7A)
            or (c >= 0x30 and c <= 0x39) or c == 0x5F or c == 0x2D
        )
        _HEXCHAR[c] = (c >= 0x30 and c <= 0x39) or (c >= 0x61 and c <= 0x66)


_init_tables()


cdef class Event:
    """One validated event; str fields hold no control characters and no lone surrogates."""

    def __init__(self, id, t, p, r, ts, ms, h, n, title):
        self.id = id
        self.t = t
        self.p = p
        self.r = r
        self.ts = ts
        self.ms = ms
        self.h = h
        self.n = n
        self.title = title

    def __repr__(self):
        return (f"Event(id={self.id!r}, t={self.t!r}, p={self.p!r}, r={self.r!r}, "
                f"ts={self.ts!r}, ms={self.ms!r}, h={self.h!r}, n={self.n!r}, "
                f"title={self.title!r})")


cdef class Payload:
    def __init__(self, sid, bid, token, events):
        self.sid = sid
        self.bid = bid
        self.token = token
        self.events = events

    def __repr__(self):
        return (f"Payload(sid={self.sid!r}, bid={self.bid!r}, token={self.token!r}, "
                f"events={self.events!r})")


cdef bint _deeper_than(object obj, int limit) except -1:
    """True when obj nests more than `limit` containers; recursion never exceeds limit + 1."""
    if isinstance(obj, dict):
        if limit <= 0:
            return True
        for v in (<dict>obj).values():
            if _deeper_than(v, limit - 1):
                return True
    elif isinstance(obj, list):
        if limit <= 0:
            return True
        for v in <list>obj:
            if _deeper_than(v, limit - 1):
                return True
    return False


cdef inline bint _chars_ok(object s, const unsigned char *table, Py_ssize_t lo, Py_ssize_t hi):
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef const unsigned char *p
    if n < lo or n > hi or not PyUnicode_IS_ASCII(s):
        return False
    p = <const unsigned char *>PyUnicode_DATA(s)
    for i in range(n):
        if not table[p[i]]:
            return False
    return True


cdef bint _has_control(object s) noexcept:
    cdef Py_ssize_t n = PyUnicode_GET_LENGTH(s), i
    cdef int kind = PyUnicode_KIND(s)
    cdef void *data = PyUnicode_DATA(s)
    if kind == 1:
        for i in range(n):
            if (<const unsigned char *>data)[i] < 0x20:
                return True
    elif kind == 2:
        for i in range(n):
            if (<const unsigned short *>data)[i] < 0x20:
                return True
    else:
        for i in range(n):
            if (<const unsigned int *>data)[i] < 0x20:
                return True
    return False


cdef str _path(str base, str key):
    return base + "." + key


cdef str _ident(dict obj, str key, str base, const unsigned char *table,
                Py_ssize_t lo, Py_ssize_t hi, str what):
    cdef PyObject *ref = PyDict_GetItem(obj, key)
    if ref == NULL or <object>ref is None:
        raise PayloadError(_path(base, key), "is required")
    value = <object>ref
    if not isinstance(value, str):
        raise PayloadError(_path(base, key), "must be a string")
    if not _chars_ok(value, table, lo, hi):
        raise PayloadError(_path(base, key), "must be " + what)
    return value


cdef object _text(dict obj, str key, str base, Py_ssize_t lo, Py_ssize_t hi, bint required):
    cdef PyObject *ref = PyDict_GetItem(obj, key)
    cdef Py_ssize_t n
    if ref == NULL or <object>ref is None:
        if required:
            raise PayloadError(_path(base, key), "is required")
        return None
    value = <object>ref
    if not isinstance(value, str):
        raise PayloadError(_path(base, key), "must be a string")
    n = PyUnicode_GET_LENGTH(value)
    if n < lo or n > hi:
        raise PayloadError(_path(base, key), f"must be {lo}..{hi} characters long")
    if _has_control(value):
        raise PayloadError(_path(base, key), "must not contain control characters")
    return value


cdef object _int(dict obj, str key, str base, long long lo, long long hi, bint required):
    cdef PyObject *ref = PyDict_GetItem(obj, key)
    cdef int overflow = 0
    cdef long long v
    if ref == NULL or <object>ref is None:
        if required:
            raise PayloadError(_path(base, key), "is required")
        return None
    value = <object>ref
    if not PyLong_CheckExact(value):
        raise PayloadError(_path(base, key), "must be an integer")
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow or v < lo or v > hi:
        raise PayloadError(_path(base, key), f"must be within {lo}..{hi}")
    return value


cdef inline Py_ssize_t _count_known(dict obj, tuple keys) noexcept:
    # cheaper than frozenset.issuperset(dict), which builds a temporary set
    cdef Py_ssize_t n = 0
    for key in keys:
        if PyDict_GetItem(obj, key) != NULL:
            n += 1
    return n


cdef void _check_unknown(dict obj, frozenset known, int level) except *:
    for key, value in obj.items():
        if key not in known and _deeper_than(value, _MAX_DEPTH - level):
            raise PayloadError("$", "nested too deeply")


cdef Event _event(object raw, int index, long long now_ms):
    cdef dict ev
    cdef Event e
    cdef str base = f"$.events[{index}]"  # only the cost of a small format per event
    if not isinstance(raw, dict):
        raise PayloadError(base, "must be an object")
    ev = <dict>raw
    e = Event.__new__(Event)
    e.id = _ident(ev, "id", base, _IDCHAR, 8, 64, "8-64 characters of [A-Za-z0-9_-]")
    ref = PyDict_GetItem(ev, "t")
    if ref == NULL or <object>ref is None:
        raise PayloadError(base + ".t", "is required")
    t = <object>ref
    if not isinstance(t, str):
        raise PayloadError(base + ".t", "must be a string")
    if not (t == "pageview" or t == "active" or t == "exit" or t == "event"):
        raise PayloadError(base + ".t", "must be pageview, active, exit or event")
    e.t = t
    e.p = _text(ev, "p", base, 1, 2048, True)
    if e.p[0] != "/":
        raise PayloadError(base + ".p", 'must start with "/"')
    e.r = _text(ev, "r", base, 0, 2048, False)
    e.ts = _int(ev, "ts", base, now_ms - _PAST_MS, now_ms + _FUTURE_MS, True)
    e.ms = _int(ev, "ms", base, 0, _MAX_ACTIVE_MS, t == "active")
    e.h = _text(ev, "h", base, 1, 2048, t == "exit")
    e.n = _text(ev, "n", base, 1, 128, t == "event")
    e.title = _text(ev, "title", base, 0, 512, False)
    if len(ev) > _count_known(ev, _EVENT_KEY_TUPLE):
        _check_unknown(ev, _EVENT_KEYS, 3)
    return e


cdef Payload _payload(object doc, long long now_ms):
    cdef dict top
    cdef list events, parsed
    cdef Payload result
    cdef Py_ssize_t i, count
    if not isinstance(doc, dict):
        raise PayloadError("$", "must be an object")
    top = <dict>doc
    result = Payload.__new__(Payload)
    result.sid = _ident(top, "sid", "$", _IDCHAR, 3, 64, "3-64 characters of [A-Za-z0-9_-]")
    result.bid = _ident(top, "bid", "$", _IDCHAR, 22, 22, "22 base64url characters")
    result.token = _ident(top, "token", "$", _HEXCHAR, 64, 64, "64 lowercase hex characters")
    raw = top.get("events")
    if raw is None:
        raise PayloadError("$.events", "is required")
    if not isinstance(raw, list):
        raise PayloadError("$.events", "must be a list")
    events = <list>raw
    count = len(events)
    if count < 1 or count > _MAX_EVENTS:
        raise PayloadError("$.events", f"must hold 1..{_MAX_EVENTS} events")
    parsed = []
    for i in range(count):
        parsed.append(_event(events[i], i, now_ms))
    result.events = parsed
    if len(top) > _count_known(top, _TOP_KEY_TUPLE):
        _check_unknown(top, _TOP_KEYS, 1)
    return result


cdef long long _check_now(object ms) except? -1:
    if type(ms) is not int:
        raise TypeError("server time must be an int (epoch ms)")
    if not 0 <= ms <= _MAX_NOW:
        raise ValueError("server time out of range")
    return ms


def parse_payload(body, now_ms):
    """Parse and validate a collect body; `now_ms` is the server's wall clock in epoch ms."""
    if not isinstance(body, bytes):
        raise TypeError("body must be bytes")
    cdef long long now = _check_now(now_ms)
    if len(<bytes>body) > _MAX_BODY:
        raise PayloadTooLarge("$", f"body exceeds {_MAX_BODY} bytes")
    try:
        doc = _loads(body)
    except _JSON_ERRORS:
        raise PayloadError("$", "body is not valid JSON") from None
    try:
        return _payload(doc, now)
    except PayloadError as exc:
        if exc.path != "$" and _deeper_than(doc, _MAX_DEPTH):
            raise PayloadError("$", "nested too deeply") from None
        raise


def hit_event(id, p, r, ts):
    """Validate the query of an anonymous `GET /hit` into an Event with t="hit".

    `id` is generated by collect (same charset as client ids); `ts` is the server time in ms.
    Errors carry the paths `$.id`, `$.p`, `$.r`.
    """
    cdef dict query = {"id": id, "p": p, "r": r}
    cdef Event e = Event.__new__(Event)
    e.id = _ident(query, "id", "$", _IDCHAR, 8, 64, "8-64 characters of [A-Za-z0-9_-]")
    e.p = _text(query, "p", "$", 1, 2048, True)
    if e.p[0] != "/":
        raise PayloadError("$.p", 'must start with "/"')
    e.r = _text(query, "r", "$", 0, 2048, False)
    e.ts = _check_now(ts)
    e.t = "hit"
    return e
