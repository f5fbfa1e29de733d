"""Differential test: everything compiled answers any byte stream exactly as the Python twins do.

One side is the Python connection (``HttpProtocol``) over an app without the lane. The other is
the compiled connection (``HttpConnection``) over an app with the lane. Both are fed the same
generated stream: valid, odd and broken requests, pipelined, cut into arbitrary chunks. They must
write the same bytes, close (or not) alike, pause reading alike, and hand the sink the same
messages.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from viz._fast._select import NO_EXTENSIONS
from viz.collect.protocol import HttpProtocol, connection_class

from .support import (
    BID,
    ORIGIN,
    SID,
    FakeTransport,
    Harness,
    get,
    make_site,
    parse_responses,
    post,
)

pytestmark = pytest.mark.skipif(NO_EXTENSIONS, reason="VIZ_NO_EXTENSIONS=1: no compiled twin")

_REFERENCE = Harness()  # only for building bodies and tokens: every harness starts at one time
_PIECES: dict[str, bytes] = {
    "collect": post("/collect", _REFERENCE.body(1)),
    "collect 3 events": post("/collect", _REFERENCE.body(3)),
    "collect no origin": post("/collect", _REFERENCE.body(1), origin=None),
    "collect bot": post("/collect", _REFERENCE.body(1), ua=b"curl/8.0"),
    "collect tier 0": post("/collect?tier=0", _REFERENCE.body(1)),
    "collect forged token": post("/collect", _REFERENCE.body(1, token="ab" * 32)),
    "collect other origin": post("/collect", _REFERENCE.body(1), origin=b"https://evil.example"),
    "collect unknown site": post("/collect", _REFERENCE.body(1, sid="site-nope")),
    "collect not json": post("/collect", b"{oops"),
    "collect GET": get("/collect"),
    "init with bid": get(f"/init?sid={SID}&tier=1&bid={BID}"),
    "init with cookie": get(f"/init?sid={SID}&tier=1", headers=b"Cookie: viz_bid=" + BID.encode()
                            + b"\r\n"),
    "healthz": get("/healthz"),
    "not found": get("/nope"),
    "preflight": (b"OPTIONS /collect?sid=" + SID.encode() + b" HTTP/1.1\r\nOrigin: " + ORIGIN
                  + b"\r\nAccess-Control-Request-Method: POST\r\n\r\n"),
    "http/1.0": b"GET /healthz HTTP/1.0\r\n\r\n",
    "http/1.0 keep-alive": b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    "connection close": get("/healthz", headers=b"Connection: close\r\n"),
    "expect 100": post("/collect", _REFERENCE.body(1), headers=b"Expect: 100-continue\r\n"),
    "chunked": (b"POST /collect HTTP/1.1\r\nHost: x\r\nOrigin: " + ORIGIN
                + b"\r\nUser-Agent: Mozilla/5.0 Firefox/120.0\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(_REFERENCE.body(1)) + _REFERENCE.body(1) + b"\r\n0\r\n\r\n"),
    "too large": b"POST /collect HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n",
    "garbage": b"\x00\xffNOT HTTP\r\n\r\n",
    "bad header": b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    "upgrade": b"GET /healthz HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
}


async def _run(compiled: bool, chunks: list[bytes], max_pipelined: int) -> dict[str, Any]:
    h = Harness(make_site(), lane=compiled)
    await h.warm()
    cls = connection_class() if compiled else HttpProtocol
    transport = FakeTransport()
    protocol = cls(h.app, h.state, asyncio.get_running_loop(), max_pipelined=max_pipelined)
    protocol.connection_made(transport)
    paused = []
    for chunk in chunks:
        if not transport.closed:
            protocol.data_received(chunk)
        paused.append(transport.reading_paused)
        for _ in range(3):
            await asyncio.sleep(0)
    for _ in range(20):  # slow paths (uncached sites) and deliveries
        await asyncio.sleep(0)
    return {"wire": bytes(transport.buffer), "closed": transport.closed, "paused": paused,
            "pending": protocol.pending, "messages": list(h.sink.messages)}


@settings(max_examples=200, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(sorted(_PIECES)), min_size=1, max_size=8),
       st.lists(st.integers(min_value=1, max_value=400), max_size=10),
       st.integers(min_value=1, max_value=4))
def test_compiled_and_python_twins_write_the_same_bytes(pieces: list[str], cuts: list[int],
                                                         max_pipelined: int) -> None:
    stream = b"".join(_PIECES[p] for p in pieces)
    chunks, at = [], 0
    for cut in cuts:
        if at >= len(stream):
            break
        chunks.append(stream[at:at + cut])
        at += cut
    if at < len(stream):
        chunks.append(stream[at:])

    async def both() -> None:
        python = await _run(False, chunks, max_pipelined)
        compiled = await _run(True, chunks, max_pipelined)
        assert compiled == python

    asyncio.run(both())


def test_the_pieces_cover_what_they_are_named_for() -> None:
    """A piece that no longer means what its name says would make the test above weaker."""
    async def statuses(piece: str) -> list[int]:
        out = await _run(True, [_PIECES[piece]], 32)
        return [r.status for r in parse_responses(out["wire"].replace(
            b"HTTP/1.1 100 Continue\r\n\r\n", b""))]

    async def all_statuses() -> dict[str, list[int]]:
        return {piece: await statuses(piece) for piece in _PIECES}

    got = asyncio.run(all_statuses())
    assert got["collect"] == got["collect 3 events"] == got["collect no origin"] == [204]
    assert got["collect forged token"] == [403] and got["collect not json"] == [400]
    assert got["collect unknown site"] == [404] and got["collect GET"] == [405]
    assert got["init with bid"] == got["init with cookie"] == [200]
    assert got["too large"] == [413] and got["garbage"] == [400]
    assert got["chunked"] == [204]
    assert got["upgrade"] == [200]  # answered; then the connection closes
    upgraded = asyncio.run(_run(True, [_PIECES["upgrade"] + _PIECES["healthz"]], 32))
    assert upgraded["closed"] and upgraded["wire"].count(b"HTTP/1.1 ") == 1
