# cython: language_level=3
"""collect's compiled fast lane: ``POST /collect`` for the common case, in one C function.

A request of a cached site, from one of its origins already granted, with a browser's
User-Agent already screened, consent tier 1 and a valid token is checked, encoded and handed to
the sink here, and its 204 is written from the delivery report by a compiled callable. Anything
else goes back to the Python request path of :class:`viz.collect.app.CollectApp` at the point
the lane reached, with what it already knows, so every error, drop, uncached lookup and header
is answered by the same code with or without the lane: the lane only decides *when* it can
answer by itself, never *what* the answer is. Nothing the lane does before it hands a request
back has an effect the Python path would repeat (the rate limit is taken once, the site is
looked up once).

The lane is an optimisation with the Python path as its pure twin: ``VIZ_NO_EXTENSIONS=1`` or a
build without it runs that path alone, and ``tests/collect/test_lane.py`` checks that both
answer every request the same, byte for byte, with the same messages and metrics.
"""

from bisect import bisect_left
from time import perf_counter

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
    cdef object _get_nowait, _miss, _time, _signer, _ua_text_of, _send_to
    cdef dict _origins, _ua_is_bot, _ua_text, _requests
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
        self._send_to = sink.send_to
        self._requests = metrics.requests
        self._histogram = metrics.delivery_seconds
        self._events = metrics.events_collect
        self._ok_headers = ok_headers

    def handle(self, request, cycle):
        """The app's ``Handler.handle``: ``POST /collect`` here, everything else by ``route``."""
        if request.target == b"/collect" and request.method == b"POST":
            self._collect(request, cycle)
        else:
            self._route(request, cycle)

    cdef _collect(self, request, cycle):
        cdef double now_s
        cdef object payload, site, origin, entry, user_agent, verdict, ua, values
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
        try:
            self._signer(site, now_s).verify(payload.bid, site.tid, payload.token, now_s)
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
            self._send_to((<str>payload.sid).encode(), values,
                          _Delivered(self, cycle, cors, len(values), perf_counter()))
        except CollectError as err:
            self._fail(cycle, "collect", err, cors)


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
