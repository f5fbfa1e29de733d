"""HTTP framing, byte in / byte out: keep-alive, pipelining order, limits, malformed input."""

from __future__ import annotations

import asyncio

import pytest

from viz.collect.protocol import MAX_HEAD_BYTES
from viz.collect.sinks import MemorySink

from .support import Harness, get, post

pytestmark = pytest.mark.usefixtures("connection_twin")


async def test_keeps_the_connection_open_across_requests() -> None:
    h = Harness()
    conn = h.connect()
    first = await conn.request(get("/healthz"))
    second = await conn.request(get("/healthz"))
    assert (first.status, second.status) == (200, 200)
    assert first.body == b'{"status":"ok"}'
    assert first.header("connection") is None
    assert first.header("date") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert not conn.transport.closed


async def test_answers_pipelined_requests_in_request_order_when_a_later_one_finishes_first(
) -> None:
    sink = MemorySink(acknowledge=False)
    h = Harness(sink=sink)
    await h.warm()
    conn = h.connect()
    first = h.body(1)
    second = h.body(1).replace(b"event-0000", b"event-0001")
    conn.send(post("/collect", first) + get("/healthz") + post("/collect", second))
    await conn.wait_for(lambda: sink.pending == 2)
    assert conn.transport.buffer == b""  # healthz is done, but must wait for the first POST

    sink.release_last()  # the third request completes before the first
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert conn.transport.buffer == b""

    sink.release()
    responses = await conn.wait_responses(3)
    assert [r.status for r in responses] == [204, 200, 204]
    assert not conn.transport.closed


async def test_pipelined_requests_in_one_chunk_are_all_answered() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(get("/healthz") * 10)
    responses = await conn.wait_responses(10)
    assert [r.status for r in responses] == [200] * 10


async def test_request_split_across_many_chunks_is_reassembled() -> None:
    h = Harness()
    await h.warm()
    conn = h.connect()
    raw = post("/collect", h.body(3))
    for i in range(len(raw)):
        conn.send(raw[i:i + 1])
    (response,) = await conn.wait_responses(1)
    assert response.status == 204
    assert len(h.sink.messages) == 3


async def test_malformed_http_gets_400_and_the_connection_is_closed() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(b"HELLO there\r\n\r\n")
    (response,) = conn.responses()
    assert response.status == 400
    assert response.json() == {"error": {"code": "bad_http"}}
    assert response.header("connection") == "close"
    assert conn.transport.closed
    assert h.sample("viz_collect_failures_total", code="bad_http") == 1


async def test_malformed_request_after_a_good_one_is_answered_after_it() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(get("/healthz") + b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    responses = conn.responses()
    assert [r.status for r in responses] == [200, 400]
    assert conn.transport.closed
    conn.send(get("/healthz"))  # ignored after the error
    assert len(conn.responses()) == 2


async def test_oversized_content_length_gets_413_before_any_body_is_sent() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(b"POST /collect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
              b"Content-Length: 10000000\r\n\r\n")
    (response,) = conn.responses()
    assert response.status == 413
    assert response.json() == {"error": {"code": "too_large"}}
    assert conn.transport.closed
    conn.send(b"x" * 100_000)  # the body that follows is never buffered
    assert conn.protocol._body_parts == []


async def test_chunked_body_is_cut_off_at_the_limit_with_413() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(b"POST /collect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (40_000, b"a" * 40_000)
    conn.send(chunk)
    assert conn.responses() == []
    conn.send(chunk)  # 80 000 bytes > 64 KiB
    (response,) = conn.responses()
    assert response.status == 413
    assert conn.transport.closed
    assert conn.protocol._body_size <= 80_000


async def test_endless_header_gets_431_and_close() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(b"GET /healthz HTTP/1.1\r\nX-Long: ")
    for _ in range(MAX_HEAD_BYTES // 8192 + 2):
        if conn.transport.closed:
            break
        conn.send(b"a" * 8192)
    (response,) = conn.responses()
    assert response.status == 431
    assert conn.transport.closed


async def test_connection_close_request_is_answered_then_closed() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(get("/healthz", headers=b"Connection: close\r\n") + get("/healthz"))
    (response,) = conn.responses()
    assert response.status == 200
    assert response.header("connection") == "close"
    assert conn.transport.closed


async def test_http_1_0_closes_unless_keep_alive_is_asked_for() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(b"GET /healthz HTTP/1.0\r\n\r\n")
    assert conn.responses()[0].header("connection") == "close"
    assert conn.transport.closed

    conn = h.connect()
    conn.send(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert conn.responses()[0].header("connection") == "keep-alive"
    assert not conn.transport.closed


async def test_unknown_path_is_404_and_wrong_method_is_405() -> None:
    h = Harness()
    conn = h.connect()
    assert (await conn.request(get("/nope"))).status == 404
    response = await conn.request(b"PUT /collect HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert response.status == 405
    assert response.json() == {"error": {"code": "method_not_allowed"}}
    assert (await conn.request(get("/collect"))).status == 405


async def test_idle_keep_alive_connection_is_closed_after_the_timeout() -> None:
    h = Harness()
    conn = h.connect(keep_alive_timeout_s=0.05)
    await conn.request(get("/healthz"))
    await conn.wait_for(lambda: conn.transport.closed, timeout_s=2.0)


async def test_connection_stalled_mid_request_is_closed_after_the_timeout() -> None:
    h = Harness()
    conn = h.connect(keep_alive_timeout_s=0.05)
    conn.send(b"GET /healthz HTTP/1.1\r\nHost:")
    await conn.wait_for(lambda: conn.transport.closed, timeout_s=2.0)
    assert conn.responses() == []


async def test_expect_100_continue_is_answered_before_the_body() -> None:
    h = Harness()
    await h.warm()
    conn = h.connect()
    body = h.body(1)
    head = post("/collect", body, headers=b"Expect: 100-continue\r\n")[:-len(body)]
    conn.send(head)
    assert bytes(conn.transport.buffer) == b"HTTP/1.1 100 Continue\r\n\r\n"
    conn.transport.buffer.clear()
    conn.send(body)
    (response,) = await conn.wait_responses(1)
    assert response.status == 204


async def test_reading_pauses_when_too_many_requests_are_in_flight() -> None:
    sink = MemorySink(acknowledge=False)
    h = Harness(sink=sink)
    await h.warm()
    conn = h.connect(max_pipelined=2)
    conn.send(post("/collect", h.body(1)) + post("/collect", h.body(1)))
    await conn.wait_for(lambda: sink.pending == 2)
    assert conn.transport.reading_paused
    sink.release()
    await conn.wait_responses(2)
    assert not conn.transport.reading_paused


async def test_a_handler_bug_becomes_500_not_a_dead_connection() -> None:
    h = Harness()

    def broken(request: object, cycle: object) -> None:
        raise RuntimeError("bug")

    h.app._routes[b"/healthz"] = broken
    conn = h.connect()
    response = await conn.request(get("/healthz"))
    assert response.status == 500
    assert response.json() == {"error": {"code": "internal"}}
    assert (await conn.request(get("/nope"))).status == 404


async def test_websocket_upgrade_is_not_spoken() -> None:
    h = Harness()
    conn = h.connect()
    conn.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
              b"Upgrade: websocket\r\n\r\n\x81\x05hello")
    await conn.wait_for(lambda: conn.transport.closed)
    assert all(r.status != 101 for r in conn.responses())


async def test_graceful_shutdown_answers_in_flight_requests_then_closes() -> None:
    sink = MemorySink(acknowledge=False)
    h = Harness(sink=sink)
    await h.warm()
    conn = h.connect()
    idle = h.connect()
    conn.send(post("/collect", h.body(1)))
    await conn.wait_for(lambda: sink.pending == 1)
    for c in list(h.state.connections):
        c.shutdown()
    assert idle.transport.closed
    assert not conn.transport.closed
    conn.send(get("/healthz"))  # not read any more
    sink.release()
    (response,) = await conn.wait_responses(1)
    assert response.status == 204
    assert response.header("connection") == "close"
    assert conn.transport.closed
    assert not h.state.connections


async def test_graceful_shutdown_answers_every_pipelined_request_already_read() -> None:
    sink = MemorySink(acknowledge=False)
    h = Harness(sink=sink)
    await h.warm()
    conn = h.connect()
    conn.send(post("/collect", h.body(1)) + post("/collect", h.body(1)) + get("/healthz"))
    await conn.wait_for(lambda: sink.pending == 2)
    conn.protocol.shutdown()
    sink.release()
    responses = await conn.wait_responses(3)
    assert [r.status for r in responses] == [204, 204, 200]
    assert conn.transport.closed
