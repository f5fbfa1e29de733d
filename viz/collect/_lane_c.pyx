# cython: language_level=3
"""collect's compiled fast lane: the HTTP connection and ``POST /collect`` for the common case.

Two compiled twins of Python classes, selected by :func:`viz.collect.protocol.connection_class`
and :class:`viz.collect.app.CollectApp` unless ``VIZ_NO_EXTENSIONS=1``:

* :class:`HttpConnection` (with its :class:`Request` and :class:`Cycle`) is
  :class:`viz.collect.protocol.HttpProtocol`, line for line: the same framing, keep-alive,
  pipelining order, flow control and limits, with the connection's state in C fields and the
  httptools callbacks as C methods. ``tests/collect`` runs every protocol and endpoint test
  against both (``conftest.py``).
* :class:`CollectLane` answers ``POST /collect`` for the common case in one C function: a
  cached site, one of its origins already granted, a browser's User-Agent already screened,
  consent tier 1 and a valid token are checked, encoded and handed to the sink here, and the 204
  is written from the delivery report by a compiled callable. Anything else goes back to the
  Python request path of :class:`~viz.collect.app.CollectApp` at the point the lane reached,
  with what it already knows, so every error, drop, uncached lookup and header is answered by
  the same code with or without the lane: the lane only decides *when* it can answer by itself,
  never *what* the answer is. Nothing it does before handing a request back has an effect the
  Python path would repeat (the rate limit is taken once, the site is looked up once).
  ``tests/collect/test_lane.py`` checks that both answer every request the same, byte for
  byte, with the same messages and metrics.
"""

from bisect import bisect_left
from time import perf_counter

cimport cython

from viz import _fast
from viz.collect.errors import CollectError
from viz.collect.metrics import DELIVERY_BUCKETS_S

cdef tuple _COLLECT_204 = ("collect", 204)
cdef tuple _BUCKETS = tuple(DELIVERY_BUCKETS_S)
cdef object _parse_payload = _fast.parse_payload
cdef object _encode_envelopes = _fast.encode_envelopes
cdef tuple _PAYLOAD_ERRORS = (_fast.PayloadError,)
cdef tuple _TOKEN_ERRORS = (_fast.TokenExpired, _fast.TokenInvalid, _fast.BadIdentifier)


cdef class CollectLane:
    """Built once per app; :meth:`handle` replaces the app's ``handle``.

    ``route``: the app's Python request handler (every request that is not ``POST
    /collect``). ``limited``: the app's rate-limit check (``None`` when the limit is off).
    ``after_limit``: /collect from the body on. ``resume``: /collect from the site lookup's
    answer on. ``fail``: the app's one error answer.
    """

    cdef object _route, _limited, _after_limit, _resume, _fail
    cdef object _get_nowait, _miss, _time, _signer, _ua_text_of, _sink
    cdef dict _origins, _ua_is_bot, _ua_text, _requests, _signers
    cdef object _histogram, _events
    cdef bytes _ok_headers
    cdef readonly unsigned long long answered
    """``POST /collect`` requests the lane took to the sink itself."""
    cdef readonly unsigned long long handed_back
    """``POST /collect`` requests it handed back to the Python path (whatever their answer)."""

    def __init__(self, *, route, limited, after_limit, resume, fail, directory, deps, sink,
                 metrics, ok_headers, miss):
        self._route = route
        self._limited = limited
        self._after_limit = after_limit
        self._resume = resume
        self._fail = fail
        self._get_nowait = directory.get_nowait
        self._miss = miss
        self._time = deps.time
        self._signer = deps.signer
        self._ua_text_of = deps.ua_text
        self._origins = deps._origins
        self._ua_is_bot = deps._ua_is_bot
        self._ua_text = deps._ua_text
        self._sink = sink
        self._requests = metrics.requests
        self._histogram = metrics.delivery_seconds
        self._events = metrics.events_collect
        self._ok_headers = ok_headers
        self._signers = deps._signers

    def handle(self, request, cycle):
        """The app's ``Handler.handle``: ``POST /collect`` here, everything else by ``route``."""
        if request.target == b"/collect" and request.method == b"POST":
            self._collect(request, cycle)
        else:
            self._route(request, cycle)

    cdef _collect(self, request, cycle):
        cdef double now_s
        cdef object payload, site, origin, entry, user_agent, verdict, ua, values, signer
        cdef bytes cors = b""
        if self._limited is not None and self._limited(request, cycle, "collect"):
            return
        now_s = self._time()
        now_ms = <long long>(now_s * 1000)
        try:
            payload = _parse_payload(request.body, now_ms)
        except _PAYLOAD_ERRORS:
            self.handed_back += 1
            self._after_limit(request, cycle)  # parses again and answers the error
            return
        site = self._get_nowait(payload.sid, self._miss)
        if site is None or site is self._miss:
            self.handed_back += 1
            self._resume(request, cycle, payload, now_s, site)
            return
        # check_and_encode_collect's checks, answered here only when every one passes from a
        # cache hit; a miss, a drop or an error goes back to it.
        origin = request.origin
        if origin is not None:
            entry = self._origins.get((origin, site.sid))
            if entry is None or (<tuple>entry)[0] is not site or (<tuple>entry)[1] is None:
                self.handed_back += 1
                self._resume(request, cycle, payload, now_s, site)
                return
            cors = (<tuple>entry)[1]
        user_agent = request.user_agent
        verdict = self._ua_is_bot.get(user_agent) if user_agent else None
        if verdict is None or verdict or not site.features.get("collect", True):
            self.handed_back += 1
            self._resume(request, cycle, payload, now_s, site)
            return
        # PipelineDeps.signer's cache hit, inlined: (record, from, until, signer).
        entry = self._signers.get(site.sid)
        if (entry is not None and (<tuple>entry)[0] is site
                and <double>(<tuple>entry)[1] <= now_s < <double>(<tuple>entry)[2]):
            signer = (<tuple>entry)[3]
        else:
            signer = self._signer(site, now_s)
        try:
            signer.verify(payload.bid, site.tid, payload.token, now_s)
        except _TOKEN_ERRORS:
            self.handed_back += 1
            self._resume(request, cycle, payload, now_s, site)
            return
        ua = self._ua_text.get(user_agent)
        if ua is None:
            ua = self._ua_text_of(user_agent)
        values = _encode_envelopes(payload, tid=site.tid, ua=ua, tier=1, server_ms=now_ms)
        self.answered += 1
        try:
            # Looked up per request: a KafkaSink swaps in the compiled Sender's once started.
            self._sink.send_to((<str>payload.sid).encode(), values,
                               _Delivered(self, cycle, cors, len(values), perf_counter()))
        except CollectError as err:
            self._fail(cycle, "collect", err, cors)


@cython.no_gc  # holds no container that could lead back to it: never part of a cycle
cdef class _Delivered:
    """The sink's report for one lane request: the 204 and its metrics, or the error answer."""

    cdef CollectLane _lane
    cdef object _cycle
    cdef bytes _cors
    cdef Py_ssize_t _count
    cdef double _started

    def __cinit__(self, CollectLane lane, cycle, bytes cors, Py_ssize_t count, double started):
        self._lane = lane
        self._cycle = cycle
        self._cors = cors
        self._count = count
        self._started = started

    def __call__(self, err):
        cdef CollectLane lane = self._lane
        cdef double seconds
        if err is not None:
            lane._fail(self._cycle, "collect", err, self._cors)
            return
        # CollectApp._collect_delivered's metrics, in the same order.
        seconds = perf_counter() - self._started
        histogram = lane._histogram
        histogram.counts[bisect_left(_BUCKETS, seconds)] += 1
        histogram.sum += seconds
        lane._events.value += self._count
        requests = lane._requests
        requests[_COLLECT_204] = requests.get(_COLLECT_204, 0) + 1
        self._cycle.respond(204, lane._ok_headers + self._cors)


# -- the connection: viz.collect.protocol.HttpProtocol, compiled ---------------------------------
#
# Every method below is its twin's, in the same order and with the same comments where they
# explain a rule; what differs is only how state is held (C fields) and how callbacks are
# reached. A change to one twin is a change to both: tests/collect runs against each.

from collections import deque

from httptools import HttpParserError, HttpParserUpgrade, HttpRequestParser

from viz.collect import request as _request_py
from viz.collect.protocol import MAX_HEAD_BYTES, STATUS_LINES, _StopParsing

import logging

log = logging.getLogger("viz.collect.protocol")

cdef bytes _CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
cdef bytes _CLOSE = b"Connection: close\r\n"
cdef bytes _KEEP_ALIVE = b"Connection: keep-alive\r\n"
cdef bytes _CONTENT_LENGTH = b"Content-Length: %d\r\n\r\n"
cdef bytes _CONTENT_LENGTH_0 = b"Content-Length: 0\r\n\r\n"
cdef dict _STATUS_LINES = STATUS_LINES
cdef Py_ssize_t _MAX_HEAD_BYTES = MAX_HEAD_BYTES

# Header name -> field number (0: a known header that is skipped), from the Python twin's table.
cdef tuple _FIELDS = ("origin", "referer", "user_agent", "cookie", "content_length",
                      "content_type", "sec_gpc", "expect", "connection", "x_forwarded_for",
                      "x_real_ip")
cdef dict _FIELD_BY_NAME = {
    name: (_FIELDS.index(slot) + 1 if slot else 0)
    for name, slot in _request_py.SLOT_BY_NAME.items()}
if set(s for s in _request_py.SLOT_BY_NAME.values() if s) != set(_FIELDS):
    raise ImportError("viz.collect._lane_c: Request fields differ from viz.collect.request's")


@cython.no_gc  # holds bytes, str and None only
cdef class Request:
    """:class:`viz.collect.request.Request`, compiled: the same attributes and properties."""

    cdef public bytes method, target, body
    cdef public object origin, referer, user_agent, cookie, content_length, content_type
    cdef public object sec_gpc, expect, connection, x_forwarded_for, x_real_ip
    cdef public str peer
    cdef public bint keep_alive, http_10

    def __init__(self):
        self.method = b""
        self.target = b""
        self.peer = ""
        self.body = b""
        self.keep_alive = True
        self.http_10 = False

    cdef inline void _set(self, int field, bytes value):
        if field == 1:
            self.origin = value
        elif field == 2:
            self.referer = value
        elif field == 3:
            self.user_agent = value
        elif field == 4:
            self.cookie = value
        elif field == 5:
            self.content_length = value
        elif field == 6:
            self.content_type = value
        elif field == 7:
            self.sec_gpc = value
        elif field == 8:
            self.expect = value
        elif field == 9:
            self.connection = value
        elif field == 10:
            self.x_forwarded_for = value
        elif field == 11:
            self.x_real_ip = value

    @property
    def path(self):
        q = self.target.find(b"?")
        return self.target if q < 0 else self.target[:q]

    @property
    def query(self):
        q = self.target.find(b"?")
        return b"" if q < 0 else self.target[q + 1:]


cdef class Cycle:
    """:class:`viz.collect.protocol.Cycle`, compiled."""

    cdef HttpConnection _protocol
    cdef public object request
    cdef public int status
    cdef public bytes headers, body
    cdef public bint close

    def __init__(self, HttpConnection protocol, request):
        self._protocol = protocol
        self.request = request
        self.status = 0
        self.headers = b""
        self.body = b""
        self.close = not request.keep_alive

    def respond(self, int status, bytes headers=b"", bytes body=b""):
        if self.status:
            return
        self.status = status
        self.headers = headers
        self.body = body
        self._protocol.cycle_done()


cdef class HttpConnection:
    """:class:`viz.collect.protocol.HttpProtocol`, compiled; ``POST /collect`` goes to the
    handler's :class:`CollectLane` directly when it has one."""

    cdef object _handler, _loop, _parser, _transport, _idle_handle, _handle
    cdef public object state
    cdef CollectLane _lane
    cdef double _keep_alive_timeout_s, _last_activity
    cdef Py_ssize_t _max_pipelined, _max_body, _head_bytes
    cdef readonly Py_ssize_t _body_size
    cdef Request _request
    cdef readonly list _body_parts
    cdef object _pending  # deque[Cycle]
    cdef int _error_status
    cdef bint _in_head, _head_began, _reading_paused, _writing_paused, _closed
    cdef public bint closing
    cdef str _peer

    def __init__(self, handler, state, loop, *, double keep_alive_timeout_s=15.0,
                 Py_ssize_t max_pipelined=32):
        self._handler = handler
        self._handle = handler.handle
        lane = getattr(handler, "lane", None)
        self._lane = lane if isinstance(lane, CollectLane) else None
        self.state = state
        self._loop = loop
        self._keep_alive_timeout_s = keep_alive_timeout_s
        self._max_pipelined = max_pipelined
        self._max_body = handler.max_body_bytes
        self._parser = HttpRequestParser(self)
        self._transport = None
        self._request = None
        self._body_parts = []
        self._body_size = 0
        self._pending = deque()
        self._error_status = 0
        self._in_head = True
        self._head_began = False
        self._head_bytes = 0
        self._reading_paused = False
        self._writing_paused = False
        self._idle_handle = None
        self._last_activity = 0.0
        self.closing = False
        self._closed = False
        self._peer = ""

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        self.state.connections.add(self)
        self._touch()

    def connection_lost(self, exc):
        self._closed = True
        self.closing = True
        self.state.remove(self)
        self._pending.clear()
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None

    def data_received(self, data):
        if self.closing:
            return
        self._last_activity = self._loop.time()
        self._head_began = False
        try:
            self._parser.feed_data(data)
        except HttpParserUpgrade:
            self.closing = True
            if not self._pending:
                self._close_transport()
            return
        except HttpParserError:
            self._fail(self._error_status or 400)
            return
        if self._in_head:
            if self._head_began:
                return
            self._head_bytes += len(data)
            if self._head_bytes > _MAX_HEAD_BYTES:
                self._fail(431)

    def eof_received(self):
        self.closing = True
        if not self._pending:
            self._close_transport()
        return True

    def pause_writing(self):
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self):
        self._writing_paused = False
        self._update_reading()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self):
        cdef Request request = Request.__new__(Request)
        request.method = b""
        request.target = b""
        request.body = b""
        request.keep_alive = True
        request.peer = self._peer
        self._request = request
        self._in_head = True
        self._head_began = True
        self._head_bytes = 0
        self._body_parts = []
        self._body_size = 0

    def on_url(self, bytes url):
        request = self._request
        request.target = request.target + url if request.target else url

    def on_header(self, bytes name, bytes value):
        field = _FIELD_BY_NAME.get(name)
        if field is None:
            if len(name) > 14:
                return
            field = _FIELD_BY_NAME.get(name.lower())
            if field is None:
                return
        # 0 is a known header collect skips. (A header outside a message cannot happen: the
        # check keeps a C call off a None all the same.)
        if field and self._request is not None:
            self._request._set(<int>field, value)

    def on_headers_complete(self):
        self._in_head = False
        request = self._request
        parser = self._parser
        request.method = parser.get_method()
        keep_alive = request.keep_alive = parser.should_keep_alive()
        if keep_alive and request.connection is not None:
            request.http_10 = parser.get_http_version() == "1.0"
        length = request.content_length
        if length is not None:
            try:
                too_large = int(length) > self._max_body
            except ValueError:
                too_large = False  # llhttp itself rejects a non-numeric Content-Length
            if too_large:
                self._error_status = 413
                raise _StopParsing()
        expect = request.expect
        if (expect is not None and expect.lower() == b"100-continue" and not self._pending
                and self._transport is not None):
            self._transport.write(_CONTINUE)

    def on_body(self, bytes body):
        self._body_size += len(body)
        if self._body_size > self._max_body:
            self._error_status = 413
            raise _StopParsing()
        self._body_parts.append(body)

    def on_message_complete(self):
        cdef Request request = self._request
        cdef list parts
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
            self.closing = True
        elif len(self._pending) >= self._max_pipelined:
            self._update_reading()
        try:
            if (self._lane is not None and request.target == b"/collect"
                    and request.method == b"POST"):
                self._lane._collect(request, cycle)
            else:
                self._handle(request, cycle)
        except Exception:
            log.exception("collect handler raised")
            cycle.respond(*self._handler.error_response(500))

    # -- response ordering --------------------------------------------------------------------

    cpdef cycle_done(self):
        """Write every answered response at the head of the queue, in request order."""
        cdef Cycle cycle
        cdef bint last
        cdef bytes conn, body
        pending = self._pending
        transport = self._transport
        if self._closed or transport is None:
            return
        while pending and (<Cycle>pending[0]).status:
            cycle = pending.popleft()
            last = cycle.close or (self.closing and not pending)
            if last:
                conn = _CLOSE
            elif cycle.request.http_10:
                conn = _KEEP_ALIVE
            else:
                conn = b""
            body = cycle.body
            transport.write(b"".join((
                _STATUS_LINES[cycle.status], self.state.date_header, cycle.headers, conn,
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
            self._last_activity = self._loop.time()
            if self._idle_handle is None:
                self._idle_handle = self._loop.call_later(self._keep_alive_timeout_s,
                                                          self._on_idle)
        if self._reading_paused:
            self._update_reading()

    cdef _fail(self, int status):
        """Answer a protocol-level error after what is pending, then close the connection."""
        self.closing = True
        self._request = None
        cycle = Cycle(self, Request())
        cycle.close = True
        self._pending.append(cycle)
        status, headers, body = self._handler.error_response(status)
        cycle.respond(status, headers, body)

    def shutdown(self):
        """Graceful stop: read nothing more; close once every pending request is answered."""
        self.closing = True
        if not self._pending:
            self._close_transport()

    def abort(self):
        """Drop the connection now, whatever is pending (shutdown deadline passed)."""
        self.closing = True
        if self._transport is not None and not self._closed:
            self._transport.abort()
            self._closed = True
        self.state.remove(self)

    @property
    def pending(self):
        return len(self._pending)

    # -- flow control and idle timeout --------------------------------------------------------

    cdef _update_reading(self):
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

    cdef _touch(self):
        self._last_activity = self._loop.time()
        if self._idle_handle is None:
            self._idle_handle = self._loop.call_later(self._keep_alive_timeout_s, self._on_idle)

    def _on_idle(self):
        self._idle_handle = None
        if self._closed:
            return
        if self._pending:
            return
        idle_for = self._loop.time() - self._last_activity
        if idle_for >= self._keep_alive_timeout_s:
            self._close_transport()
        else:
            self._idle_handle = self._loop.call_later(
                self._keep_alive_timeout_s - idle_for, self._on_idle)

    cdef _close_transport(self):
        self.closing = True
        if self._transport is not None and not self._closed:
            self._transport.close()
            self._closed = True
        self.state.remove(self)


# -- the sink's send path: viz.collect.sinks.KafkaSink.send_to and _Batch, compiled ----------------

from confluent_kafka import KafkaError, KafkaException

from viz.collect.errors import DeliveryFailed, QueueFull
from viz.collect.sinks import delivery_error

_sink_log = logging.getLogger("viz.collect.sinks")


@cython.no_gc  # its report never leads back to it
cdef class Batch:
    """:class:`viz.collect.sinks._Batch`, compiled: the messages of one request."""

    cdef public object report
    cdef public Py_ssize_t remaining
    cdef public double deadline

    def __init__(self, report, Py_ssize_t remaining, double deadline):
        self.report = report
        self.remaining = remaining
        self.deadline = deadline

    def on_delivery(self, err, msg):
        report = self.report
        if report is None:  # failed, timed out or abandoned
            return
        if err is None:
            self.remaining -= 1
            if self.remaining:
                return
            self.report = None
            outcome = None
        else:
            self.report = None
            outcome = delivery_error(err)
        try:
            report(outcome)
        except Exception:
            _sink_log.exception("delivery report callback raised")

    def expire(self, error):
        report = self.report
        if report is not None:
            self.report = None
            try:
                report(error)
            except Exception:
                _sink_log.exception("delivery report callback raised")


cdef class Sender:
    """:meth:`viz.collect.sinks.KafkaSink.send_to`, compiled, for one started sink."""

    cdef object _sink, _producer, _produce, _topic, _inflight, _time
    cdef Py_ssize_t _max_messages
    cdef double _timeout_s

    def __init__(self, sink, producer, topic, Py_ssize_t max_messages, double timeout_s,
                 inflight, time):
        self._sink = sink
        self._producer = producer
        self._produce = producer.produce
        self._topic = topic
        self._max_messages = max_messages
        self._timeout_s = timeout_s
        self._inflight = inflight
        self._time = time

    def use(self, producer):
        """Produce through ``producer`` from now on (the sink recreated its producer)."""
        self._producer = producer
        self._produce = producer.produce

    def send_to(self, bytes key, values, report):
        cdef Py_ssize_t count = len(values)
        cdef Batch batch
        produce = self._produce
        topic = self._topic
        if len(self._producer) + count > self._max_messages:
            raise QueueFull()
        batch = Batch(report, count, self._time() + self._timeout_s)
        on_delivery = batch.on_delivery
        try:
            for value in values:
                produce(topic, value, key, on_delivery=on_delivery)
        except BufferError:
            batch.report = None  # reports of what was queued are ignored
            self._sink._track(batch)
            raise QueueFull() from None
        except KafkaException as exc:
            batch.report = None
            self._sink._track(batch)
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError):
                raise delivery_error(err) from None
            raise DeliveryFailed(str(exc)) from None
        self._inflight.append(batch)
        if self._sink._tick_handle is None:
            self._sink._arm()
