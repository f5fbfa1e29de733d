"""Arbitrary bytes and arbitrary requests never raise out of the protocol or hang it."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import Harness, parse_responses

pytestmark = pytest.mark.usefixtures("connection_twin")

ALLOWED = {200, 204, 400, 401, 403, 404, 405, 413, 431}

_methods = st.sampled_from([b"GET", b"POST", b"OPTIONS", b"PUT", b"HEAD"])
_paths = st.sampled_from([b"/collect", b"/init", b"/hit", b"/healthz", b"/x"])
_query = st.binary(max_size=60).map(lambda b: b.replace(b" ", b"").replace(b"\r", b"")
                                    .replace(b"\n", b"").replace(b"#", b""))
_header_value = st.binary(max_size=80).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F))
_headers = st.lists(st.tuples(st.sampled_from([b"Origin", b"Referer", b"User-Agent", b"Cookie",
                                               b"Sec-GPC", b"X-Other"]), _header_value),
                    max_size=5)


def _run(data: bytes) -> list[int]:
    async def go() -> list[int]:
        h = Harness()
        await h.warm()
        conn = h.connect()
        conn.send(data)
        for _ in range(20):  # let slow paths and delivery callbacks finish
            await asyncio.sleep(0)
        return [r.status for r in parse_responses(bytes(conn.transport.buffer))]

    return asyncio.run(go())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_get_an_answer_or_nothing_never_an_exception(data: bytes) -> None:
    assert set(_run(data)) <= ALLOWED


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_methods, _paths, _query, _headers, st.binary(max_size=200))
def test_random_requests_get_a_4xx_or_a_success(method: bytes, path: bytes, query: bytes,
                                                 headers: list[tuple[bytes, bytes]],
                                                 body: bytes) -> None:
    raw = method + b" " + path + (b"?" + query if query else b"") + b" HTTP/1.1\r\n"
    raw += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    raw += b"Content-Length: %d\r\n\r\n" % len(body) + body
    statuses = _run(raw)
    assert statuses and set(statuses) <= ALLOWED
