# cython: language_level=3
"""Compiled Kafka envelope: the same bytes, rules and errors as `_envelope_py` (read its docstring).

Encoding writes validated fields straight into one C buffer: a str is copied as its UTF-8 bytes
unless it holds '"', '\\' or a control character, which only then goes through json.dumps.
Decoding reads exactly those bytes (compact, keys in order, no escapes) straight into the
Envelope or row, without building the JSON object; any other input takes the general path
(orjson, then the same checks as the pure twin), so results and errors never differ.
"""

import json

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_FromLongLong
from cpython.object cimport PyObject
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdlib cimport free, malloc
from libc.string cimport memcmp, memcpy, strlen

from viz._fast._buf cimport Buf, _reserve
from viz._fast._payload_c cimport Event, _deeper_than

from viz._fast._jsonload import JSON_ERRORS, fast_loads
from viz._fast.errors import EnvelopeError, UnknownVersion

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object o)
    void *PyUnicode_DATA(object o)
    Py_ssize_t PyUnicode_GET_LENGTH(object o)
    const char *PyUnicode_AsUTF8AndSize(object o, Py_ssize_t *size) except NULL
    bint PyLong_CheckExact(object o)
    long long PyLong_AsLongLongAndOverflow(object o, int *overflow) except? -1
    long long PyLong_AsLongLong(object o) except? -1
    Py_ssize_t PyUnicode_FindChar(object s, Py_UCS4 ch, Py_ssize_t start, Py_ssize_t end,
                                  int direction) except -2

__all__ = [
    "VERSION", "Envelope", "decode_envelope", "decode_row", "encode_envelope", "encode_envelopes",
]

VERSION = 1
MAX_DEPTH = 32
cdef int _MAX_DEPTH = MAX_DEPTH
cdef long long _MAX_SERVER_MS = 2 ** 53
cdef long long _MAX_TS_MS = 2 ** 41
cdef long long _MAX_UINT32 = 2 ** 32 - 1
cdef object _loads = fast_loads
cdef tuple _JSON_ERRORS = JSON_ERRORS
cdef object _dumps = json.dumps
cdef frozenset _DATA_KEYS = frozenset(
    {"eid", "sid", "tid", "bid", "id", "t", "p", "r", "cts", "ms", "h", "n", "title", "ua", "tier"}
)
cdef frozenset _TOP_KEYS = frozenset({"v", "ts", "data"})
cdef tuple _DATA_KEY_TUPLE = tuple(_DATA_KEYS)
cdef tuple _TOP_KEY_TUPLE = tuple(_TOP_KEYS)


# ---------------------------------------------------------------- encoding

cdef inline int _raw(Buf *b, const char *s, Py_ssize_t n) except -1:
    _reserve(b, n)
    memcpy(b.data + b.len, s, n)
    b.len += n
    return 0


cdef inline int _lit(Buf *b, const char *s) except -1:
    return _raw(b, s, strlen(s))


cdef int _int(Buf *b, object value) except -1:
    cdef char tmp[24]
    cdef int overflow = 0, n = 0, i
    cdef long long v
    cdef unsigned long long u
    if not PyLong_CheckExact(value):
        raise TypeError(f"expected int, got {type(value).__name__}")
    v = PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        raise OverflowError("int out of int64 range")
    u = <unsigned long long>v if v >= 0 else (<unsigned long long>0) - <unsigned long long>v
    while True:
        tmp[n] = <char>(48 + u % 10)
        n += 1
        u //= 10
        if u == 0:
            break
    if v < 0:
        tmp[n] = b'-'
        n += 1
    _reserve(b, n)
    for i in range(n):
        b.data[b.len + i] = tmp[n - 1 - i]
    b.len += n
    return 0


cdef int _strbody(Buf *b, object s) except -1:
    """The JSON-escaped content of str s, without quotes."""
    cdef const char *p
    cdef Py_ssize_t n, i
    cdef unsigned char c
    cdef bytes escaped
    cdef const char *e
    if type(s) is not str and not isinstance(s, str):
        raise TypeError(f"expected str, got {type(s).__name__}")
    if PyUnicode_IS_ASCII(s):
        p = <const char *>PyUnicode_DATA(s)
        n = PyUnicode_GET_LENGTH(s)
    else:
        p = PyUnicode_AsUTF8AndSize(s, &n)  # UnicodeEncodeError on lone surrogates
    for i in range(n):
        c = <unsigned char>p[i]
        if c < 0x20 or c == 0x22 or c == 0x5C:
            escaped = (<str>_dumps(s, ensure_ascii=False)).encode("utf-8")
            e = escaped
            return _raw(b, e + 1, len(escaped) - 2)
    return _raw(b, p, n)


cdef inline int _str(Buf *b, object s) except -1:
    _raw(b, b'"', 1)
    _strbody(b, s)
    return _raw(b, b'"', 1)


cdef int _opt_str(Buf *b, const char *key, object s) except -1:
    if s is not None:
        _lit(b, key)
        _str(b, s)
    return 0


cdef int _check_context(object tid, object ua, object tier, object server_ms) except -1:
    if not isinstance(tid, str) or not isinstance(ua, str):
        raise TypeError("tid and ua must be str")
    if type(tier) is not int or type(server_ms) is not int:
        raise TypeError("tier and server_ms must be int")
    if not 0 <= tier <= 2:
        raise ValueError("tier must be 0, 1 or 2")
    if not 0 <= server_ms <= _MAX_SERVER_MS:
        raise ValueError("server_ms out of range")
    return 0


cdef bytes _encode(Buf *b, object event, object sid, object tid, object bid, const char *suffix,
                   Py_ssize_t suffix_len, object server_ms):
    """One envelope into b (reset first); `suffix` is the pre-encoded ua/tier tail."""
    cdef Event ev
    if type(event) is Event:
        ev = <Event>event
        eid, t, p, r, ts, ms, h, n, title = (
            ev.id, ev.t, ev.p, ev.r, ev.ts, ev.ms, ev.h, ev.n, ev.title)
    else:  # duck-typed (the pure twin's Event works too)
        eid, t, p, r, ts, ms, h, n, title = (
            event.id, event.t, event.p, event.r, event.ts, event.ms, event.h, event.n,
            event.title)
    b.len = 0
    _lit(b, b'{"v":1,"ts":')
    _int(b, server_ms)
    _lit(b, b',"data":{"eid":"')
    _strbody(b, sid)
    _raw(b, b':', 1)
    if bid is not None:
        _strbody(b, bid)
    _raw(b, b':', 1)
    _strbody(b, eid)
    _lit(b, b'","sid":')
    _str(b, sid)
    _lit(b, b',"tid":')
    _str(b, tid)
    _opt_str(b, b',"bid":', bid)
    _lit(b, b',"id":')
    _str(b, eid)
    _lit(b, b',"t":')
    _str(b, t)
    _lit(b, b',"p":')
    _str(b, p)
    _opt_str(b, b',"r":', r)
    _lit(b, b',"cts":')
    _int(b, ts)
    if ms is not None:
        _lit(b, b',"ms":')
        _int(b, ms)
    _opt_str(b, b',"h":', h)
    _opt_str(b, b',"n":', n)
    _opt_str(b, b',"title":', title)
    _raw(b, suffix, suffix_len)
    return PyBytes_FromStringAndSize(b.data, b.len)


cdef bytes _suffix(object ua, object tier):
    cdef Buf b
    b.data = <char *>malloc(256)
    if b.data == NULL:
        raise MemoryError()
    b.len = 0
    b.cap = 256
    try:
        _lit(&b, b',"ua":')
        _str(&b, ua)
        _lit(&b, b',"tier":')
        _int(&b, tier)
        _lit(&b, b'}}')
        return PyBytes_FromStringAndSize(b.data, b.len)
    finally:
        free(b.data)


def encode_envelope(event, *, sid, tid, bid, ua, tier, server_ms):
    """One envelope for a validated Event (from `parse_payload` or `hit_event`)."""
    cdef Buf b
    _check_context(tid, ua, tier, server_ms)
    if not isinstance(sid, str) or (bid is not None and not isinstance(bid, str)):
        raise TypeError("sid must be str and bid str or None")
    cdef bytes suffix = _suffix(ua, tier)
    b.data = <char *>malloc(1024)
    if b.data == NULL:
        raise MemoryError()
    b.cap = 1024
    b.len = 0
    try:
        return _encode(&b, event, sid, tid, bid, suffix, len(suffix), server_ms)
    finally:
        free(b.data)


def encode_envelopes(payload, *, tid, ua, tier, server_ms):
    """One envelope per event of a validated Payload, in order."""
    cdef Buf b
    cdef list out = []
    _check_context(tid, ua, tier, server_ms)
    cdef bytes suffix = _suffix(ua, tier)
    sid, bid = payload.sid, payload.bid
    b.data = <char *>malloc(1024)
    if b.data == NULL:
        raise MemoryError()
    b.cap = 1024
    b.len = 0
    try:
        for event in payload.events:
            out.append(_encode(&b, event, sid, tid, bid, suffix, len(suffix), server_ms))
    finally:
        free(b.data)
    return out


# ---------------------------------------------------------------- decoding

cdef class Envelope:
    """A decoded envelope, flattened: `ts` is the server time, `cts` the client's."""

    cdef readonly object v, ts, eid, sid, tid, bid, id, t, p, r, cts, ms, h, n, title, ua, tier

    def __init__(self, v, ts, eid, sid, tid, bid, id, t, p, r, cts, ms, h, n, title, ua, tier):
        self.v, self.ts, self.eid, self.sid, self.tid, self.bid = v, ts, eid, sid, tid, bid
        self.id, self.t, self.p, self.r, self.cts, self.ms = id, t, p, r, cts, ms
        self.h, self.n, self.title, self.ua, self.tier = h, n, title, ua, tier

    def __repr__(self):
        fields = ("v", "ts", "eid", "sid", "tid", "bid", "id", "t", "p", "r", "cts", "ms",
                  "h", "n", "title", "ua", "tier")
        return "Envelope(" + ", ".join(f"{f}={getattr(self, f)!r}" for f in fields) + ")"


cdef object _get_int(dict obj, str key, bint required):
    cdef PyObject *ref = PyDict_GetItem(obj, key)
    cdef int overflow = 0
    if ref == NULL or <object>ref is None:
        if not required:
            return None
        raise EnvelopeError(f"{key} must be an int64")
    value = <object>ref
    if not PyLong_CheckExact(value):
        raise EnvelopeError(f"{key} must be an int64")
    PyLong_AsLongLongAndOverflow(value, &overflow)
    if overflow:
        raise EnvelopeError(f"{key} must be an int64")
    return value


cdef object _get_str(dict obj, str key, bint required):
    cdef PyObject *ref = PyDict_GetItem(obj, key)
    if ref == NULL or <object>ref is None:
        if not required:
            return None
        raise EnvelopeError(f"{key} must be a string")
    value = <object>ref
    if not isinstance(value, str):
        raise EnvelopeError(f"{key} must be a string")
    return value


cdef int _check_unknown(dict obj, frozenset known, tuple known_tuple, int level) except -1:
    cdef Py_ssize_t present = 0
    for key in known_tuple:
        if PyDict_GetItem(obj, key) != NULL:
            present += 1
    if len(obj) == present:
        return 0
    for key, value in obj.items():
        if key not in known and _deeper_than(value, _MAX_DEPTH - level):
            raise EnvelopeError("envelope nested too deeply")
    return 0


# Fast path: the exact bytes `_encode` writes (compact, keys in order, no escapes) are read
# straight into an Envelope, without building the JSON object. Anything else -- whitespace,
# another key order, unknown keys, null, an escape or control character, a number that is not
# a plain int of at most 18 digits, invalid UTF-8 -- returns None and takes the general path
# below, so the result (or the error) is always what that path gives.

cdef struct Cur:
    const char *p
    const char *end


cdef inline bint _skip(Cur *c, const char *lit, Py_ssize_t n) noexcept:
    if c.end - c.p < n or memcmp(c.p, lit, n) != 0:
        return False
    c.p += n
    return True


cdef object _fast_str(Cur *c):
    """The JSON string at c.p (which must be an unescaped one), or None."""
    cdef const char *start
    cdef const char *q
    cdef unsigned char ch
    if c.p >= c.end or c.p[0] != 34:  # '"'
        return None
    start = c.p + 1
    q = start
    while q < c.end:
        ch = <unsigned char>q[0]
        if ch == 0x22:
            break
        if ch == 0x5C or ch < 0x20:
            return None
        q += 1
    else:
        return None
    try:
        value = PyUnicode_DecodeUTF8(start, q - start, NULL)
    except UnicodeDecodeError:
        return None
    c.p = q + 1
    return value


cdef object _fast_int(Cur *c):
    """The JSON integer at c.p if it is a plain one of 1 to 18 digits, or None."""
    cdef long long v = 0
    cdef int digits = 0
    cdef bint negative = False
    if c.p < c.end and c.p[0] == 45:  # '-'
        negative = True
        c.p += 1
    if c.p >= c.end or not (48 <= <int>c.p[0] <= 57):
        return None
    if c.p[0] == 48:  # '0'
        c.p += 1
        if negative or (c.p < c.end and 48 <= <int>c.p[0] <= 57):
            return None
        return 0
    while c.p < c.end and 48 <= <int>c.p[0] <= 57:
        if digits == 18:
            return None
        v = v * 10 + (<int>c.p[0] - 48)
        digits += 1
        c.p += 1
    return PyLong_FromLongLong(-v if negative else v)


cdef Envelope _fast_decode(const char *data, Py_ssize_t n):
    cdef Cur c
    cdef Envelope env = Envelope.__new__(Envelope)
    c.p = data
    c.end = data + n
    if not _skip(&c, b'{"v":1,"ts":', 12):
        return None
    env.v = 1
    env.ts = _fast_int(&c)
    if env.ts is None or not _skip(&c, b',"data":{"eid":', 15):
        return None
    env.eid = _fast_str(&c)
    if env.eid is None or not _skip(&c, b',"sid":', 7):
        return None
    env.sid = _fast_str(&c)
    if env.sid is None or not _skip(&c, b',"tid":', 7):
        return None
    env.tid = _fast_str(&c)
    if env.tid is None:
        return None
    if _skip(&c, b',"bid":', 7):
        env.bid = _fast_str(&c)
        if env.bid is None:
            return None
    if not _skip(&c, b',"id":', 6):
        return None
    env.id = _fast_str(&c)
    if env.id is None or not _skip(&c, b',"t":', 5):
        return None
    env.t = _fast_str(&c)
    if env.t is None or not _skip(&c, b',"p":', 5):
        return None
    env.p = _fast_str(&c)
    if env.p is None:
        return None
    if _skip(&c, b',"r":', 5):
        env.r = _fast_str(&c)
        if env.r is None:
            return None
    if not _skip(&c, b',"cts":', 7):
        return None
    env.cts = _fast_int(&c)
    if env.cts is None:
        return None
    if _skip(&c, b',"ms":', 6):
        env.ms = _fast_int(&c)
        if env.ms is None:
            return None
    if _skip(&c, b',"h":', 5):
        env.h = _fast_str(&c)
        if env.h is None:
            return None
    if _skip(&c, b',"n":', 5):
        env.n = _fast_str(&c)
        if env.n is None:
            return None
    if _skip(&c, b',"title":', 9):
        env.title = _fast_str(&c)
        if env.title is None:
            return None
    if not _skip(&c, b',"ua":', 6):
        return None
    env.ua = _fast_str(&c)
    if env.ua is None or not _skip(&c, b',"tier":', 8):
        return None
    env.tier = _fast_int(&c)
    if env.tier is None or not _skip(&c, b'}}', 2) or c.p != c.end:
        return None
    return env


cdef Envelope _decode(raw):
    cdef dict top, data
    cdef Envelope env
    if not isinstance(raw, bytes):
        raise EnvelopeError("message value is not bytes")
    env = _fast_decode(PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
    if env is not None:
        _check_tier(env.tier)
        return env
    try:
        doc = _loads(raw)
    except _JSON_ERRORS:
        raise EnvelopeError("message value is not JSON") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("envelope must be an object")
    top = <dict>doc
    v = _get_int(top, "v", True)
    if v != VERSION:
        raise UnknownVersion(v)
    env = Envelope.__new__(Envelope)
    env.v = v
    env.ts = _get_int(top, "ts", True)
    raw_data = top.get("data")
    if not isinstance(raw_data, dict):
        raise EnvelopeError("data must be an object")
    data = <dict>raw_data
    env.eid = _get_str(data, "eid", True)
    env.sid = _get_str(data, "sid", True)
    env.tid = _get_str(data, "tid", True)
    env.bid = _get_str(data, "bid", False)
    env.id = _get_str(data, "id", True)
    env.t = _get_str(data, "t", True)
    env.p = _get_str(data, "p", True)
    env.r = _get_str(data, "r", False)
    env.cts = _get_int(data, "cts", True)
    env.ms = _get_int(data, "ms", False)
    env.h = _get_str(data, "h", False)
    env.n = _get_str(data, "n", False)
    env.title = _get_str(data, "title", False)
    env.ua = _get_str(data, "ua", True)
    env.tier = _get_int(data, "tier", True)
    _check_unknown(data, _DATA_KEYS, _DATA_KEY_TUPLE, 2)
    _check_unknown(top, _TOP_KEYS, _TOP_KEY_TUPLE, 1)
    _check_tier(env.tier)
    return env


cdef inline int _check_tier(object tier) except -1:
    # The warehouse column is UInt8: an out-of-range tier must go to the dead-letter topic,
    # not fail every insert of its batch.
    if not 0 <= tier <= 2:
        raise EnvelopeError("tier must be 0, 1 or 2")
    return 0


def decode_envelope(raw):
    """Decode one Kafka message value; raise EnvelopeError or UnknownVersion."""
    return _decode(raw)


cdef inline object _clamp(object value, long long high):
    # value is an exact int within int64 (_get_int checked it, or _fast_int read <= 18 digits)
    cdef long long v = PyLong_AsLongLong(value)
    if v < 0:
        return 0
    if v > high:
        return high
    return value


def decode_row(raw, partition, offset, agent, attribution):
    """Decode one Kafka message value into a warehouse row (layout: `_envelope_py`)."""
    cdef Envelope env = _decode(raw)
    cdef str p = <str>env.p
    cdef Py_ssize_t end = PyUnicode_FindChar(p, 0x23, 0, PyUnicode_GET_LENGTH(p), 1)  # '#'
    cdef Py_ssize_t q
    if end < 0:
        end = PyUnicode_GET_LENGTH(p)
    q = PyUnicode_FindChar(p, 0x3F, 0, end, 1)  # '?'
    if q < 0:
        path, query = (p if end == PyUnicode_GET_LENGTH(p) else p[:end]), ""
    else:
        path, query = p[:q], p[q + 1:end]
    referrer = "" if env.r is None else env.r
    ua_columns = agent(env.ua)
    attr_columns = attribution(query, referrer)
    if type(ua_columns) is not tuple or type(attr_columns) is not tuple:
        raise TypeError("agent and attribution must return tuples")
    cdef list row = [
        env.eid, env.sid, env.tid, _clamp(env.ts, _MAX_TS_MS), _clamp(env.cts, _MAX_TS_MS),
        env.t, path, "" if env.title is None else env.title, "" if env.n is None else env.n,
        "" if env.bid is None else env.bid, env.tier, referrer]
    row.extend(<tuple>attr_columns)
    row.extend(<tuple>ua_columns)
    row.append(0 if env.ms is None else _clamp(env.ms, _MAX_UINT32))
    row.append("" if env.h is None else env.h)
    row.append(partition)
    row.append(offset)
    return row
