"""HTTP/1.1 framing for collect: one :class:`HttpProtocol` per connection, httptools underneath.

The protocol turns bytes into :class:`Request` objects and :class:`Cycle` answers back into
bytes, in request order (pipelining), with keep-alive, flow control and body limits. What a
request *means* is the handler's business (:class:`Handler`, implemented by the app), so tests
drive a protocol with raw bytes and a fake transport, no socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Protocol

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from viz._fast._select import NO_EXTENSIONS
from viz.collect.request import SLOT_BY_NAME, Request

log = logging.getLogger(__name__)

STATUS_LINES: dict[int, bytes] = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CONTENT_LENGTH = b"Content-Length: %d\r\n\r\n"
_CONTENT_LENGTH_0 = _CONTENT_LENGTH % 0
_slot_of = SLOT_BY_NAME.get
MAX_HEAD_BYTES = 65_536
"""Request line + headers. llhttp buffers a header until it is complete, so without this a
client could grow one header without bound; a cookie-heavy parent domain still fits."""


class Handler(Protocol):
    """What the protocol calls; implemented by :class:`viz.collect.app.CollectApp`."""

    max_body_bytes: int

    def handle(self, request: Request, cycle: Cycle) -> None:
        """Answer ``request`` through ``cycle.respond`` exactly once, now or later.

        Called on the event loop for every complete request, in order. Must not block. Should
        not raise; if it does, the protocol answers with :meth:`error_response` ``(500)``.
        """
        ...

    def error_response(self, status: int) -> tuple[int, bytes, bytes]:
        """``(status, headers, body)`` for a failure the protocol detects itself: 400 (not
        HTTP), 413 (body over ``max_body_bytes``), 500 (``handle`` raised). Counts it."""
        ...


@dataclass
class ServerState:
    """Shared by every connection of one server: the open connections and the Date header."""

    connections: set[HttpProtocol] = field(default_factory=set)
    date_header: bytes = b""
    _drained: asyncio.Event | None = None

    def remove(self, conn: HttpProtocol) -> None:
        self.connections.discard(conn)
        if not self.connections and self._drained is not None:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Return once no connection is open (the server must have stopped accepting)."""
        if self.connections:
            self._drained = asyncio.Event()
            await self._drained.wait()


class Cycle:
    """One request's answer slot. ``respond`` may be called from any later loop callback."""

    __slots__ = ("_protocol", "request", "status", "headers", "body", "close")

    def __init__(self, protocol: HttpProtocol, request: Request) -> None:
        self._protocol = protocol
        self.request = request
        self.status = 0
        """0 until answered."""
        self.headers = b""
        self.body = b""
        self.close = not request.keep_alive

    def respond(self, status: int, headers: bytes = b"", body: bytes = b"") -> None:
        """Queue the response; a second call, or one after disconnect, is ignored.

        ``headers`` is zero or more complete ``Name: value\\r\\n`` lines, without
        Content-Length or Connection: the protocol adds those when it writes the response, in
        request order, because only then does it know whether this is the connection's last.
        """
        if self.status:
            return
        self.status = status
        self.headers = headers
        self.body = body
        self._protocol.cycle_done()


class _StopParsing(Exception):
    """Raised inside a parser callback to abandon the connection's remaining bytes."""


class HttpProtocol(asyncio.Protocol):
    """One client connection. Everything is injected, so tests need no event loop server."""

    def __init__(self, handler: Handler, state: ServerState, loop: asyncio.AbstractEventLoop,
                 *, keep_alive_timeout_s: float = 15.0, max_pipelined: int = 32) -> None:
        self._handler = handler
        self.state = state
        self._loop = loop
        self._keep_alive_timeout_s = keep_alive_timeout_s
        self._max_pipelined = max_pipelined
        self._max_body = handler.max_body_bytes
        self._parser = HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._request: Request | None = None
        self._body_parts: list[bytes] = []
        self._body_size = 0
        self._pending: deque[Cycle] = deque()
        self._error_status = 0
        self._in_head = True
        self._head_began = False
        self._head_bytes = 0
        self._reading_paused = False
        self._writing_paused = False
        self._idle_handle: asyncio.TimerHandle | None = None
        self._last_activity = 0.0
        self.closing = False
        """No further requests are read; the connection closes once the pending ones are answered."""
        self._closed = False
        self._peer = ""

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.state.connections.add(self)
        self._touch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.closing = True
        self.state.remove(self)
        self._pending.clear()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        self._last_activity = self._loop.time()
        self._head_began = False
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            # WebSocket/h2c upgrades are not spoken here: answer what was already read, then
            # close instead of reading the other protocol's bytes.
            self.closing = True
            if not self._pending:
                self._close_transport()
            return
        except HttpParserError:
            self._fail(self._error_status or 400)
            return
        if self._in_head:
            # Count whole chunks only once a head spans chunks: a burst of pipelined requests
            # in one chunk must not look like one huge head.
            if self._head_began:
                return
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._fail(431)

    def eof_received(self) -> bool | None:
        # The client half-closed: answer what it sent, then close (return False).
        self.closing = True
        if not self._pending:
            self._close_transport()
        return True

    def pause_writing(self) -> None:
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._update_reading()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._request = request = Request()
        request.peer = self._peer
        self._in_head = True
        self._head_began = True
        self._head_bytes = 0
        self._body_parts = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        request = self._request
        request.target = request.target + url if request.target else url  # type: ignore[union-attr]

    def on_header(self, name: bytes, value: bytes) -> None:
        # Called for every header of every request: header_slot's lookup, inlined.
        slot = _slot_of(name)
        if slot is None:
            if len(name) > 14:
                return
            slot = _slot_of(name.lower())
            if slot is None:
                return
        if slot:  # "" is a known header collect skips
            setattr(self._request, slot, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        request = self._request
        parser = self._parser
        request.method = parser.get_method()  # type: ignore[union-attr]
        keep_alive = request.keep_alive = parser.should_keep_alive()  # type: ignore[union-attr]
        # Only a kept-alive HTTP/1.0 request needs its version (its answer must say keep-alive),
        # and llhttp keeps one alive only with a Connection header; get_http_version formats a
        # string (~0.7 µs), so a request without that header is not asked.
        if keep_alive and request.connection is not None:  # type: ignore[union-attr]
            request.http_10 = parser.get_http_version() == "1.0"  # type: ignore[union-attr]
        length = request.content_length  # type: ignore[union-attr]
        if length is not None:
            try:
                too_large = int(length) > self._max_body
            except ValueError:
                too_large = False  # llhttp itself rejects a non-numeric Content-Length
            if too_large:
                # Refused before a byte of the body is read; the connection cannot be reused
                # (the body would follow), so it is closed after the 413.
                self._error_status = 413
                raise _StopParsing()
        expect = request.expect  # type: ignore[union-attr]
        if (expect is not None and expect.lower() == b"100-continue" and not self._pending
                and self._transport is not None):
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._max_body:  # chunked bodies have no Content-Length to check
            self._error_status = 413
            raise _StopParsing()
        self._body_parts.append(body)

    def on_message_complete(self) -> None:
        request = self._request
        self._request = None
        if request is None or self.closing:
            return
        parts = self._body_parts
        if parts:
            request.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._body_parts = []
        cycle = Cycle(self, request)
        self._pending.append(cycle)
        if cycle.close:
            # Connection: close (or HTTP/1.0 without keep-alive): nothing after this is read.
            self.closing = True
        elif len(self._pending) >= self._max_pipelined:
            self._update_reading()
        try:
            self._handler.handle(request, cycle)
        except Exception:
            log.exception("collect handler raised")
            cycle.respond(*self._handler.error_response(500))

    # -- response ordering --------------------------------------------------------------------

    def cycle_done(self) -> None:
        """Write every answered response at the head of the queue, in request order."""
        pending = self._pending
        transport = self._transport
        if self._closed or transport is None:
            return
        while pending and pending[0].status:
            cycle = pending.popleft()
            # The last response of a closing connection says so (RFC 9112 §9.6); earlier
            # pipelined ones must not, or the client would drop the answers after them.
            last = cycle.close or (self.closing and not pending)
            # The response's bytes; Content-Length and Connection are only known here.
            if last:
                conn = _CLOSE
            elif cycle.request.http_10:
                conn = _KEEP_ALIVE
            else:
                conn = b""
            body = cycle.body
            transport.write(b"".join((
                STATUS_LINES[cycle.status], self.state.date_header, cycle.headers, conn,
                _CONTENT_LENGTH % len(body) if body else _CONTENT_LENGTH_0, body)))
            if last:
                self.closing = True
                pending.clear()
                self._close_transport()
                return
        if not pending:
            if self.closing:
                self._close_transport()
                return
            # _touch, inlined.
            self._last_activity = self._loop.time()
            if self._idle_handle is None:
                self._idle_handle = self._loop.call_later(self._keep_alive_timeout_s,
                                                          self._on_idle)
        if self._reading_paused:
            self._update_reading()

    def _fail(self, status: int) -> None:
        """Answer a protocol-level error after what is pending, then close the connection."""
        self.closing = True
        self._request = None
        cycle = Cycle(self, Request())
        cycle.close = True
        self._pending.append(cycle)
        status, headers, body = self._handler.error_response(status)
        cycle.respond(status, headers, body)

    def shutdown(self) -> None:
        """Graceful stop: read nothing more; close once every pending request is answered."""
        self.closing = True
        if not self._pending:
            self._close_transport()

    def abort(self) -> None:
        """Drop the connection now, whatever is pending (shutdown deadline passed)."""
        self.closing = True
        if self._transport is not None and not self._closed:
            self._transport.abort()
            self._closed = True
        self.state.remove(self)

    @property
    def pending(self) -> int:
        return len(self._pending)

    # -- flow control and idle timeout --------------------------------------------------------

    def _update_reading(self) -> None:
        transport = self._transport
        if transport is None or self._closed:
            return
        should_pause = self._writing_paused or len(self._pending) >= self._max_pipelined
        if should_pause and not self._reading_paused:
            self._reading_paused = True
            transport.pause_reading()
        elif not should_pause and self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()

    def _touch(self) -> None:
        # One timer per idle period, not one per request: the timer re-arms itself for the
        # remainder when the connection was active since it was set.
        self._last_activity = self._loop.time()
        if self._idle_handle is None:
            self._idle_handle = self._loop.call_later(self._keep_alive_timeout_s, self._on_idle)

    def _on_idle(self) -> None:
        self._idle_handle = None
        if self._closed:
            return
        if self._pending:
            return  # a request is being answered; cycle_done re-arms when it is
        idle_for = self._loop.time() - self._last_activity
        if idle_for >= self._keep_alive_timeout_s:
            self._close_transport()
        else:
            self._idle_handle = self._loop.call_later(
                self._keep_alive_timeout_s - idle_for, self._on_idle)

    def _close_transport(self) -> None:
        self.closing = True
        if self._transport is not None and not self._closed:
            self._transport.close()
            self._closed = True
        self.state.remove(self)


Connection = Callable[..., HttpProtocol]
"""What makes a connection: ``(handler, state, loop, *, keep_alive_timeout_s, max_pipelined)``."""


def connection_class() -> Connection:
    """The compiled twin of :class:`HttpProtocol` (``viz.collect._lane_c.HttpConnection``),
    or :class:`HttpProtocol` itself with ``VIZ_NO_EXTENSIONS=1`` or without the build."""
    if not NO_EXTENSIONS:
        try:
            from viz.collect._lane_c import HttpConnection
        except ImportError:
            pass
        else:
            return HttpConnection  # type: ignore[no-any-return]
    return HttpProtocol
