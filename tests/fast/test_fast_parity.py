"""Property tests: the compiled twins agree with the pure ones on valid and malformed input.

Agreement means the same return value, or the same exception class (and the same error
path for payloads). Settings are derandomized so the run is repeatable and bounded.
"""

from __future__ import annotations

import json

import pytest
from _impls import SKIP_C, both, envelope_fields, event_fields
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = SKIP_C

SETTINGS = settings(
    derandomize=True,
    database=None,
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NOW_MS = 1_700_000_000_000
IDCHARS = "ABCXYZabcxyz0189_-"


def outcome(fn, *args, **kwargs):
    try:
        return ("ok", fn(*args, **kwargs))
    except Exception as exc:  # noqa: BLE001 - comparing whatever both twins raise
        return ("error", type(exc).__name__, getattr(exc, "path", None))


# ------------------------------------------------------------------ tokens

ident = st.one_of(
    st.text(IDCHARS, min_size=0, max_size=70),
    st.text(IDCHARS, min_size=22, max_size=22),
    st.text(min_size=0, max_size=30),
)
keys = st.lists(st.binary(min_size=1, max_size=80), min_size=1, max_size=3)
now_s = st.one_of(
    st.floats(min_value=0, max_value=2e9), st.integers(min_value=0, max_value=2 * 10**9)
)


@SETTINGS
@given(keys, st.text(IDCHARS, min_size=22, max_size=22), st.text(IDCHARS, min_size=1,
       max_size=64), now_s, st.integers(-16, 3), st.integers(0, 2), st.data())  # fmt: skip
def test_token_twins_agree_on_genuine_tokens(ks, bid, tid, now, shift, key_index, data):
    py, c = both("token")
    signer_py, signer_c = py.TokenSigner(ks), c.TokenSigner(ks)
    issued_at = max(0.0, float(now) + shift * 300)
    issuer = py.TokenSigner(ks[key_index % len(ks):])
    token = issuer.issue(bid, tid, issued_at)
    assert c.TokenSigner(ks[key_index % len(ks):]).issue(bid, tid, issued_at) == token
    if data.draw(st.booleans()):
        flip = data.draw(st.integers(0, 63))
        token = token[:flip] + ("0" if token[flip] != "0" else "1") + token[flip + 1:]
    assert outcome(signer_py.verify, bid, tid, token, now) == outcome(
        signer_c.verify, bid, tid, token, now
    )


@SETTINGS
@given(keys, ident, ident, st.one_of(st.text(max_size=70), st.text("0123456789abcdefA",
       min_size=64, max_size=64)), now_s)  # fmt: skip
def test_token_twins_agree_on_arbitrary_input(ks, bid, tid, token, now):
    py, c = both("token")
    assert outcome(py.TokenSigner(ks).verify, bid, tid, token, now) == outcome(
        c.TokenSigner(ks).verify, bid, tid, token, now
    )
    assert outcome(py.TokenSigner(ks).issue, bid, tid, now) == outcome(
        c.TokenSigner(ks).issue, bid, tid, now
    )


# ------------------------------------------------------------------ payloads

json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False,
    allow_infinity=False), st.text(max_size=20)
)  # fmt: skip
json_any = st.recursive(
    json_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12,
)  # fmt: skip
text_value = st.one_of(
    st.text(max_size=30),
    st.text(max_size=30).map(lambda s: "/" + s),
    st.sampled_from(["", "/", "/" + "a" * 2047, "/" + "a" * 2048, "x" * 129, "\x00", "\ud800"]),
)
int_value = st.one_of(
    st.integers(NOW_MS - 8 * 86_400_000, NOW_MS + 600_000),
    st.integers(-1, 86_400_001),
    st.sampled_from([NOW_MS, True, 1.5, float(NOW_MS), 2**64, -(2**63) - 1, "1"]),
)
field_value = {
    "id": st.one_of(st.text(IDCHARS, min_size=6, max_size=66), st.text(max_size=10)),
    "t": st.sampled_from(["pageview", "active", "exit", "event", "hit", "", 1]),
    "p": text_value, "r": text_value, "ts": int_value, "ms": int_value, "h": text_value,
    "n": text_value, "title": text_value,
}  # fmt: skip
clean_text = st.text(st.characters(min_codepoint=0x20), max_size=12)
maybe = st.sampled_from(["keep"] * 24 + ["drop", "null", "junk"])


@st.composite
def events(draw):
    ev = {"id": "event-" + draw(st.text(IDCHARS, min_size=3, max_size=10)), "t":
          draw(st.sampled_from(["pageview", "active", "exit", "event"])), "p": "/" +
          draw(clean_text), "ts": NOW_MS - draw(st.integers(0, 10**6)), "ms": 5,
          "h": "https://x/", "n": "name", "title": draw(clean_text)}  # fmt: skip
    for key in list(ev):
        how = draw(maybe)
        if how == "drop":
            del ev[key]
        elif how == "null":
            ev[key] = None
        elif how == "junk":
            ev[key] = draw(st.one_of(field_value[key], json_any))
    if draw(st.sampled_from([False] * 9 + [True])):
        ev[draw(st.text(max_size=4))] = draw(json_any)
    return ev


@st.composite
def documents(draw):
    doc = {"sid": "site-1", "bid": "AbCdEfGhIjKlMnOpQrSt_-", "token": "0123456789abcdef" * 4,
           "events": draw(st.lists(events(), min_size=1, max_size=6))}  # fmt: skip
    for key, junk in [("sid", ident), ("bid", ident), ("token", st.text("0123456789abcdefA",
                      min_size=63, max_size=65)), ("events", json_any)]:  # fmt: skip
        how = draw(st.sampled_from(["keep"] * 16 + ["drop", "null", "junk"]))
        if how == "drop":
            del doc[key]
        elif how == "null":
            doc[key] = None
        elif how == "junk":
            doc[key] = draw(junk)
    if draw(st.sampled_from([False] * 9 + [True])):
        doc[draw(st.text(max_size=4))] = draw(json_any)
    return draw(json_any) if draw(st.sampled_from([False] * 19 + [True])) else doc


def payload_outcome(mod, body):
    result = outcome(mod.parse_payload, body, NOW_MS)
    if result[0] == "ok":
        pl = result[1]
        return ("ok", pl.sid, pl.bid, pl.token, [event_fields(e) for e in pl.events])
    return result


def _encode(doc) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


@SETTINGS
@given(documents())
def test_payload_twins_agree_on_generated_documents(doc):
    py, c = both("payload")
    body = _encode(doc)
    assert payload_outcome(py, body) == payload_outcome(c, body)
    ascii_body = json.dumps(doc).encode()  # the same document with \\u escapes
    assert payload_outcome(py, ascii_body) == payload_outcome(c, ascii_body)


@SETTINGS
@given(documents(), st.data())
def test_payload_twins_agree_on_corrupted_bytes(doc, data):
    py, c = both("payload")
    body = bytearray(_encode(doc))
    for _ in range(data.draw(st.integers(1, 3))):
        if not body:
            break
        pos = data.draw(st.integers(0, len(body) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            body[pos] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del body[pos:]
        else:
            body[pos:pos] = data.draw(st.sampled_from([b"\\u", b"[", b"{", b'"', b"1e999", b",",
                                                       b"\\ud800", b"NaN", b"\xed\xa0\x80"]))  # fmt: skip
    assert payload_outcome(py, bytes(body)) == payload_outcome(c, bytes(body))


# ------------------------------------------------------------------ envelopes

opt_text = st.one_of(st.none(), st.text(max_size=20))


@SETTINGS
@given(st.text(max_size=20), st.text(max_size=20), opt_text, st.text(max_size=40),
       st.integers(0, 2), st.integers(0, 2**53), st.text(max_size=20), st.text(max_size=20),
       opt_text, st.integers(-(2**63), 2**63 - 1), st.one_of(st.none(), st.integers(0, 2**40)),
       opt_text, opt_text, opt_text)  # fmt: skip
def test_envelope_twins_encode_identical_bytes(sid, tid, bid, ua, tier, server_ms, eid, p, r,
                                               ts, ms, h, n, title):
    (py_payload, c_payload), (py, c) = both("payload"), both("envelope")
    fields = (eid, "pageview", p, r, ts, ms, h, n, title)
    ctx = dict(sid=sid, tid=tid, bid=bid, ua=ua, tier=tier, server_ms=server_ms)
    want = outcome(py.encode_envelope, py_payload.Event(*fields), **ctx)
    assert outcome(c.encode_envelope, c_payload.Event(*fields), **ctx) == want
    if want[0] == "ok":
        env = c.decode_envelope(want[1])
        assert (env.p, env.r, env.ua, env.bid, env.cts) == (p, r, ua, bid, ts)


def envelope_outcome(mod, raw):
    result = outcome(mod.decode_envelope, raw)
    return ("ok", envelope_fields(result[1])) if result[0] == "ok" else result


@st.composite
def envelope_docs(draw):
    data = {"eid": "s:b:i", "sid": "s", "tid": "t", "bid": "b", "id": "i", "t": "pageview",
            "p": "/", "r": "x", "cts": 1, "ms": 2, "h": "h", "n": "n", "title": "x", "ua": "u",
            "tier": 1}  # fmt: skip
    doc = {"v": 1, "ts": 5, "data": data}
    for obj in (data, doc):
        for key in list(obj):
            how = draw(st.sampled_from(["keep"] * 6 + ["drop", "null", "junk"]))
            if how == "drop":
                del obj[key]
            elif how == "null":
                obj[key] = None
            elif how == "junk":
                obj[key] = draw(json_any)
    return doc


@SETTINGS
@given(st.one_of(envelope_docs(), json_any), st.booleans())
def test_envelope_twins_agree_on_decoding(doc, corrupt):
    py, c = both("envelope")
    raw = _encode(doc)
    if corrupt and raw:
        raw = raw[: len(raw) // 2]
    assert envelope_outcome(py, raw) == envelope_outcome(c, raw)


@pytest.mark.parametrize("raw", [b'{"v":18446744073709551615}', b'{"v":1e400}', b'{"v":-0}',
                                 b'{"v":9223372036854775808}', b'{"v":' + b"9" * 400 + b"}"])  # fmt: skip
def test_envelope_twins_agree_on_odd_versions(raw):
    py, c = both("envelope")
    assert envelope_outcome(py, raw) == envelope_outcome(c, raw)


def _agent_columns(ua):
    return (ua[:5], str(len(ua)), "os", "desktop", int(ua.startswith("b")))


def _attribution_columns(query, referrer):
    return (referrer[:8], "m" if query else "direct", query[:3], query, "", "", "", referrer)


@st.composite
def row_envelope_docs(draw):
    """Mostly valid envelopes whose fields exercise decode_row: paths with ? and #, numbers
    around the clamps, absent or null optional fields; now and then a broken one."""
    doc = draw(envelope_docs()) if draw(st.integers(0, 4)) == 0 else {
        "v": 1, "ts": draw(st.integers(-(2**63), 2**63 - 1)),
        "data": {"eid": "s:b:i", "sid": "s", "tid": "t", "id": "i", "t": "pageview",
                 "cts": draw(st.integers(-(2**63), 2**63 - 1)), "ua": draw(st.text(max_size=8)),
                 "tier": draw(st.integers(0, 2))}}  # fmt: skip
    data = doc.get("data")
    if isinstance(data, dict):
        data["p"] = draw(st.one_of(st.text(max_size=12),
                                   st.lists(st.sampled_from(["/", "a", "?", "#", "é", "=", "&"]),
                                            max_size=10).map("".join)))  # fmt: skip
        for key in ("bid", "r", "h", "n", "title"):
            if draw(st.booleans()):
                data[key] = draw(st.one_of(st.none(), st.text(max_size=6)))
        if draw(st.booleans()):
            data["ms"] = draw(st.one_of(st.none(), st.integers(-(2**33), 2**33),
                                        st.integers(-(2**63), 2**63 - 1)))  # fmt: skip
    return doc


def row_outcome(mod, raw, partition, offset):
    return outcome(mod.decode_row, raw, partition, offset, _agent_columns, _attribution_columns)


_CANONICAL = ("eid", "sid", "tid", "bid", "id", "t", "p", "r", "cts", "ms", "h", "n", "title",
              "ua", "tier")  # fmt: skip


def canonical_bytes(doc, ensure_ascii=False):
    """`doc` the way collect writes envelopes (compact, keys in order): the compiled decoder's
    fast path reads these without building the JSON object."""
    if isinstance(doc, dict) and isinstance(doc.get("data"), dict):
        data = doc["data"]
        data = {k: data[k] for k in sorted(data, key=lambda k: (_CANONICAL + (k,)).index(k))}
        doc = {**{k: doc[k] for k in sorted(doc, key=lambda k: ("v", "ts", "data", k).index(k))},
               "data": data}  # fmt: skip
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=ensure_ascii).encode(
        "utf-8", "surrogatepass")


@SETTINGS
@given(st.one_of(row_envelope_docs(), json_any), st.sampled_from(["spaced", "canonical",
       "canonical-ascii"]), st.booleans(), st.integers(0, 2**16 - 1), st.integers(0, 2**63 - 1))  # fmt: skip
def test_decode_row_twins_agree(doc, style, corrupt, partition, offset):
    py, c = both("envelope")
    raw = _encode(doc) if style == "spaced" else canonical_bytes(doc, style == "canonical-ascii")
    if corrupt and raw:
        raw = raw[: len(raw) // 2]
    want = row_outcome(py, raw, partition, offset)
    assert row_outcome(c, raw, partition, offset) == want
    assert envelope_outcome(c, raw) == envelope_outcome(py, raw)
    if want[0] == "ok":  # the row carries exactly what decode_envelope decoded
        env = py.decode_envelope(raw)
        assert (want[1][0], want[1][1], want[1][-2:]) == (env.eid, env.sid, [partition, offset])


@SETTINGS
@given(row_envelope_docs(), st.integers(0, 10**6), st.sampled_from([
    b" ", b"0", b"00", b"-", b"-0", b"\\", b"\\n", b'"', b"\x00", b"\x1f", b"\x7f", b"\xff",
    b"9" * 18, b"9" * 19, b".5", b"e1", b"null", b"\xed\xa0\x80", b"\xc3\xa9", b"\xc3",
    b"\xf4\x90\x80\x80", b",", b"}", b'"x":1,', b"\xef\xbb\xbf"]), st.booleans())  # fmt: skip
def test_envelope_twins_agree_on_damaged_canonical_bytes(doc, pos, piece, replace):
    py, c = both("envelope")
    raw = canonical_bytes(doc)
    i = pos % (len(raw) + 1)
    raw = raw[:i] + piece + raw[i + int(replace):]
    assert envelope_outcome(c, raw) == envelope_outcome(py, raw)
    assert row_outcome(c, raw, 1, 2) == row_outcome(py, raw, 1, 2)


# ------------------------------------------------------------------ native blocks

NATIVE_TYPES = ["String", "LowCardinality(String)", "UInt8", "UInt16", "UInt32", "UInt64",
                "Int64", "DateTime64(3, 'UTC')", "DateTime64(3)"]  # fmt: skip
_NATIVE_BITS = {"UInt8": 8, "UInt16": 16, "UInt32": 32, "UInt64": 64}


def native_value(type_name):
    if "String" in type_name:
        return st.text(max_size=12) | st.text(max_size=200)
    if type_name in _NATIVE_BITS:
        return st.integers(0, 2 ** _NATIVE_BITS[type_name] - 1) | st.booleans()
    return st.integers(-(2**63), 2**63 - 1)


bad_native_value = st.one_of(st.none(), st.floats(allow_nan=False), st.integers(-(2**70), 2**70),
                             st.text(max_size=3), st.just("\ud800"), st.binary(max_size=3))


@st.composite
def native_tables(draw):
    """Mostly valid tables; some with a bad value (or two), a short row or an unsupported type."""
    types = draw(st.lists(st.sampled_from(NATIVE_TYPES), min_size=1, max_size=6))
    names = [f"c{i}" for i in range(len(types))]
    rows = draw(st.lists(st.tuples(*[native_value(t) for t in types]), max_size=8))
    rows = [list(row) if draw(st.booleans()) else row for row in rows]
    fault = draw(st.sampled_from(["none"] * 6 + ["value", "values", "short", "type"]))
    if rows and fault in ("value", "values"):
        for _ in range(1 if fault == "value" else 2):
            i, j = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(types) - 1))
            rows[i] = [*rows[i][:j], draw(bad_native_value), *rows[i][j + 1:]]
    elif rows and fault == "short":
        rows[-1] = rows[-1][:-1]
    elif fault == "type":
        types = [*types[:-1], draw(st.sampled_from(["Float64", "DateTime64(6)", "Date"]))]
    return names, types, rows


@SETTINGS
@given(native_tables())
def test_native_block_twins_agree(table):
    py, c = both("native")
    names, types, rows = table
    assert outcome(c.native_block, names, types, rows) == outcome(py.native_block, names, types,
                                                                 rows)
