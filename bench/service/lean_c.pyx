# cython: language_level=3
"""``floor-lean``'s protocol as a typed Cython extension type (target ``floor-lean-c``).

The same work as ``floor_collect.Lean`` + ``FloorProtocol`` in lean mode: the Origin and
User-Agent headers, ``viz._fast``'s payload parse, token verification and envelopes, one
message per event, a 204 with one origin's CORS grant after every report. Here the connection
state lives in C slots and the request path is one compiled method, so what remains is what the
stack itself calls through Python: httptools' callbacks, ``produce`` and its delivery callback,
and ``transport.write``. Built by ``run.py`` on demand (``python -m Cython.Build.Cythonize -i``).
Benchmark use only.
"""

import time

from httptools import HttpParserError, HttpRequestParser

cdef bytes _OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
cdef bytes _UNAVAILABLE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                           b"Retry-After: 1\r\n\r\n")
cdef bytes _BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


cdef class LeanProtocol:
    """One connection; same constructor as ``floor_collect.FloorProtocol``."""

    cdef object _kafka, _parser, _transport, _produce, _parse, _verify, _encode, _errors
    cdef bytes _url, _ua, _no_content, _want_origin
    cdef object _origin  # bytes or None
    cdef list _body
    cdef str _tid
    cdef int _waiting
    cdef bint _failed

    def __init__(self, kafka, wait, lean):
        if lean is None or not wait:
            raise ValueError("lean_c serves --lean only, with delivery reports")
        fast = lean.fast
        self._kafka = kafka
        self._produce = kafka.produce
        self._parser = HttpRequestParser(self)
        self._transport = None
        self._url = b""
        self._origin = None
        self._ua = b""
        self._body = []
        self._waiting = 0
        self._failed = False
        self._parse = fast.parse_payload
        self._verify = lean.signer.verify
        self._encode = fast.encode_envelopes
        self._errors = (fast.PayloadError, fast.TokenExpired, fast.TokenInvalid,
                        fast.BadIdentifier)
        self._tid = lean.tid
        self._want_origin = lean.origin
        self._no_content = lean.no_content

    def connection_made(self, transport):
        self._transport = transport

    def connection_lost(self, exc):
        self._transport = None

    def eof_received(self):
        return None

    def pause_writing(self):
        pass

    def resume_writing(self):
        pass

    def data_received(self, bytes data):
        try:
            self._parser.feed_data(data)
        except HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, bytes url):
        self._url = url

    def on_header(self, bytes name, bytes value):
        if name == b"Origin" or name == b"origin":
            self._origin = value
        elif name == b"User-Agent" or name == b"user-agent":
            self._ua = value

    def on_body(self, bytes body):
        self._body.append(body)

    def on_message_complete(self):
        cdef bytes body = b"".join(self._body)
        cdef long long now_ms
        self._body = []
        if self._transport is None:
            return
        if self._url != b"/collect":
            self._transport.write(_OK)
            return
        if self._origin != self._want_origin or not self._ua:
            self._transport.write(_BAD_REQUEST)
            return
        now = time.time()
        now_ms = <long long>(now * 1000)
        try:
            payload = self._parse(body, now_ms)
            self._verify(payload.bid, self._tid, payload.token, now)
        except self._errors:
            self._transport.write(_BAD_REQUEST)
            return
        values = self._encode(payload, tid=self._tid, ua=self._ua.decode("utf-8", "replace"),
                              tier=1, server_ms=now_ms)
        self._waiting = len(values)
        self._failed = False
        delivered = self._delivered
        for value in values:
            self._produce(value, delivered)

    def _delivered(self, err, _msg):
        self._kafka.delivered()
        self._waiting -= 1
        if err is not None:
            self._failed = True
        if self._waiting == 0 and self._transport is not None:
            self._transport.write(_UNAVAILABLE if self._failed else self._no_content)
