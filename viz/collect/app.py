"""viz-collect's endpoints: routing, the site lookup, the sink, and the one error -> HTTP map.

:class:`CollectApp` implements the protocol's :class:`~viz.collect.protocol.Handler`. A request
for a cached site runs synchronously up to the sink; its answer is written from the sink's
delivery report (``Sink.send_to``), so the hot path creates no task, no coroutine and no future.
Only a site that is not cached takes the slow path: a task that awaits the site directory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from time import perf_counter
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from viz import _fast
from viz._fast._select import NO_EXTENSIONS
from viz.collect import pipeline
from viz.collect.errors import (
    BadHttp,
    BodyTooLarge,
    CollectError,
    ConfigUnavailable,
    HeadersTooLarge,
    Internal,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    UnknownSite,
)
from viz.collect.metrics import DELIVERY_BUCKETS_S, CollectMetrics
from viz.collect.pipeline import Drop, Ingest, PipelineDeps, Step
from viz.collect.protocol import Cycle
from viz.collect.ratelimit import RateLimiter, client_key, retry_after_s
from viz.collect.request import Request, parse_query
from viz.collect.settings import CollectSettings
from viz.collect.sinks import Sink
from viz.common.clock import Clock
from viz.common.errors import UnavailableError
from viz.common.site_directory import SiteDirectory
from viz.common.sites import SiteRecord

log = logging.getLogger(__name__)

# 1x1 transparent GIF (43 bytes), the smallest image every browser decodes.
PIXEL_GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
             b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")

_NO_STORE = b"Cache-Control: no-store\r\n"
_VARY = b"Vary: Origin\r\n"
_JSON = b"Content-Type: application/json\r\n"
_GIF = b"Content-Type: image/gif\r\n"
_RETRY_AFTER = b"Retry-After: 1\r\n"
_PREFLIGHT = (b"Access-Control-Allow-Methods: GET, POST\r\n"
              b"Access-Control-Allow-Headers: Content-Type\r\n"
              b"Access-Control-Max-Age: 600\r\n")
_METRICS_TYPE = b"Content-Type: " + CONTENT_TYPE_LATEST.encode() + b"\r\n"
_OK_BODY = b'{"status":"ok"}'
_UNAVAILABLE_BODY = b'{"status":"unavailable"}'
_MISS = object()
_COLLECT_204 = ("collect", 204)
_COLLECT_OK_HEADERS = _NO_STORE + _VARY

_PROTOCOL_ERRORS: dict[int, type[CollectError]] = {
    400: BadHttp, 413: BodyTooLarge, 431: HeadersTooLarge, 500: Internal}


@dataclass
class CollectDeps:
    """The app's collaborators, created and closed by the server (or by a test)."""

    directory: SiteDirectory
    sink: Sink
    clock: Clock
    metrics: CollectMetrics


class CollectApp:
    max_body_bytes: int = _fast.MAX_BODY_BYTES

    def __init__(self, settings: CollectSettings, deps: CollectDeps, *, lane: bool = True) -> None:
        self._directory = deps.directory
        self._sink = deps.sink
        self._clock = deps.clock
        self.metrics = deps.metrics
        self._deps = PipelineDeps(deps.clock)
        self._cookie_tail = (b"; Max-Age=%d; Path=/; HttpOnly; Secure; SameSite=None\r\n"
                             % settings.cookie_max_age_s)
        self._tasks: set[asyncio.Task[None]] = set()
        self.shutting_down = False
        self._limiter = (RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
                         if settings.rate_limit_per_s > 0 else None)
        self._address_slot = {"peer": "peer", "x-forwarded-for": "x_forwarded_for",
                               "x-real-ip": "x_real_ip"}[settings.client_address]
        self._routes: dict[bytes, Callable[[Request, Cycle], None]] = {
            b"/collect": self._collect,
            b"/init": self._init,
            b"/hit": self._hit,
            b"/healthz": self._healthz,
            b"/readyz": self._readyz,
            b"/metrics": self._metrics,
        }
        self.lane = self._make_lane(deps) if lane else None
        if self.lane is not None:
            # The protocol calls ``handler.handle`` for every request: the lane's takes
            # ``POST /collect`` and hands everything else to the method below.
            self.handle = self.lane.handle  # type: ignore[method-assign]
            self.metrics.watch_lane(self.lane)

    def _make_lane(self, deps: CollectDeps) -> Any:
        """The compiled ``POST /collect`` lane (``viz.collect._lane_c``), or ``None`` without
        it (``VIZ_NO_EXTENSIONS=1``, or not built): then the Python path answers alone."""
        if NO_EXTENSIONS:
            return None
        try:
            from viz.collect._lane_c import CollectLane
        except ImportError:
            return None
        return CollectLane(
            route=self.handle, limited=self._limited if self._limiter is not None else None,
            after_limit=self._collect_after_limit, resume=self._collect_resume, fail=self._fail,
            directory=deps.directory, deps=self._deps, sink=deps.sink, metrics=deps.metrics,
            ok_headers=_COLLECT_OK_HEADERS, miss=_MISS)

    # -- Handler ------------------------------------------------------------------------------

    def handle(self, request: Request, cycle: Cycle) -> None:
        """Route ``request``; with the compiled lane, ``handle`` is the lane's (see __init__)."""
        target = request.target
        q = target.find(b"?")
        route = self._routes.get(target if q < 0 else target[:q])
        if route is None:
            self._fail(cycle, "other", NotFound())
            return
        route(request, cycle)

    def error_response(self, status: int) -> tuple[int, bytes, bytes]:
        err = _PROTOCOL_ERRORS.get(status, Internal)()
        self.metrics.failures[err.code].inc()
        self.metrics.request("other", err.status)
        return err.status, _JSON + _NO_STORE, err.body()

    async def close(self) -> None:
        """Wait for slow-path tasks still running (their requests are still being answered)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- answers: every response of the app goes through one of these -------------------------

    def _reply(self, cycle: Cycle, route: str, status: int, headers: bytes,
               body: bytes = b"") -> None:
        self.metrics.request(route, status)
        cycle.respond(status, headers, body)

    def _fail(self, cycle: Cycle, route: str, err: CollectError, cors: bytes = b"") -> None:
        """The one place a failure becomes HTTP: status, JSON reason, Retry-After if retryable."""
        if isinstance(err, Internal):
            log.error("internal error on %s: %s", route, err.message)
        self.metrics.failures[err.code].inc()
        headers = _JSON + _NO_STORE + _VARY + cors
        if err.retryable:
            headers += _RETRY_AFTER
        self._reply(cycle, route, err.status, headers, err.body())

    def _limited(self, request: Request, cycle: Cycle, route: str) -> bool:
        """Answer 429 and return True when the request's client is over its rate.

        Checked before anything else, so a flood costs one dict lookup per request. The answer
        carries no CORS headers (the site is not looked up): a browser sees a network error and
        the tracker backs off exponentially; other clients get the Retry-After."""
        limiter = self._limiter
        if limiter is None:
            return False
        address = getattr(request, self._address_slot)
        if isinstance(address, bytes):
            address = address.decode("latin-1")
        # Behind a proxy that did not set the header: all such requests share one bucket.
        wait = limiter.take(client_key(address or request.peer), self._clock.monotonic())
        if not wait:
            return False
        err = RateLimited()
        self.metrics.failures[err.code].inc()
        self._reply(cycle, route, err.status,
                    _JSON + _NO_STORE + b"Retry-After: %d\r\n" % retry_after_s(wait), err.body())
        return True

    def _drop(self, cycle: Cycle, route: str, drop: Drop, cors: bytes) -> None:
        self.metrics.drops[drop.reason].inc()
        self._reply(cycle, route, 204, drop.header + _NO_STORE + _VARY + cors)

    # -- the shape every ingest endpoint shares -----------------------------------------------

    def _ingest(self, request: Request, cycle: Cycle, route: str, before: Step,
                with_site: Step, finish: Callable[[Ingest, Cycle], None]) -> None:
        if self._limited(request, cycle, route):
            return
        self._ingest_after_limit(request, cycle, route, before, with_site, finish)

    def _ingest_after_limit(self, request: Request, cycle: Cycle, route: str, before: Step,
                            with_site: Step, finish: Callable[[Ingest, Cycle], None]) -> None:
        ingest = Ingest(request, self._deps)
        try:
            drop = before(ingest)
            if drop is not None:
                self._drop(cycle, route, drop, b"")
                return
            # What the directory can answer without awaiting (a cached site, fresh or usable
            # stale, or a cached "no such site"); anything else takes a task.
            site = self._directory.get_nowait(ingest.sid, _MISS)
        except CollectError as err:
            self._fail(cycle, route, err)
            return
        self._ingest_site(ingest, cycle, route, site, with_site, finish)

    def _ingest_site(self, ingest: Ingest, cycle: Cycle, route: str, site: object,
                     with_site: Step, finish: Callable[[Ingest, Cycle], None]) -> None:
        """Go on from what ``get_nowait`` answered: a record, ``None`` or ``_MISS``."""
        if site is _MISS:
            task = asyncio.get_running_loop().create_task(
                self._ingest_slow(ingest, cycle, route, with_site, finish))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._ingest_with_site(ingest, cycle, route, site, with_site, finish)  # type: ignore[arg-type]

    async def _ingest_slow(self, ingest: Ingest, cycle: Cycle, route: str, with_site: Step,
                           finish: Callable[[Ingest, Cycle], None]) -> None:
        try:
            try:
                site = await self._directory.get(ingest.sid)
            except UnavailableError:
                raise ConfigUnavailable() from None
        except CollectError as err:
            self._fail(cycle, route, err)
            return
        except Exception:  # the task boundary: a bug answers 500, never hangs the request
            log.exception("site lookup failed on %s", route)
            self._fail(cycle, route, Internal("site lookup raised"))
            return
        self._ingest_with_site(ingest, cycle, route, site, with_site, finish)

    def _ingest_with_site(self, ingest: Ingest, cycle: Cycle, route: str,
                          site: SiteRecord | None, with_site: Step,
                          finish: Callable[[Ingest, Cycle], None]) -> None:
        if site is None:
            self._fail(cycle, route, UnknownSite())
            return
        ingest.site = site
        try:
            drop = with_site(ingest)
        except CollectError as err:
            self._fail(cycle, route, err, ingest.cors)
            return
        if drop is not None:
            self._drop(cycle, route, drop, ingest.cors)
            return
        finish(ingest, cycle)

    def _produce(self, ingest: Ingest, cycle: Cycle, route: str,
                 on_ok: Callable[[Cycle, bytes, int], None]) -> None:
        try:
            self._sink.send_to(ingest.sid.encode(), ingest.values, partial(
                self._delivered, cycle, route, ingest.cors, len(ingest.values),
                perf_counter(), on_ok))
        except CollectError as err:
            self._fail(cycle, route, err, ingest.cors)

    def _delivered(self, cycle: Cycle, route: str, cors: bytes, count: int, started: float,
                   on_ok: Callable[[Cycle, bytes, int], None], err: CollectError | None) -> None:
        if err is None:
            self.metrics.delivery_seconds.observe(perf_counter() - started)
            on_ok(cycle, cors, count)
            return
        self._fail(cycle, route, err, cors)

    # -- POST /collect ------------------------------------------------------------------------

    def _collect(self, request: Request, cycle: Cycle) -> None:
        method = request.method
        if method == b"POST":
            self._ingest(request, cycle, "collect", pipeline.COLLECT_BEFORE_SITE,
                         pipeline.COLLECT_WITH_SITE, self._collect_finish)
        elif method == b"OPTIONS":
            self._preflight(request, cycle)
        else:
            self._fail(cycle, "collect", MethodNotAllowed())

    def _collect_after_limit(self, request: Request, cycle: Cycle) -> None:
        """The lane's way back when the body does not parse: /collect from the body on."""
        self._ingest_after_limit(request, cycle, "collect", pipeline.COLLECT_BEFORE_SITE,
                                 pipeline.COLLECT_WITH_SITE, self._collect_finish)

    def _collect_resume(self, request: Request, cycle: Cycle, payload: _fast.Payload,
                        now_s: float, site: object) -> None:
        """The lane's way back once the body parsed and the site was looked up (a record,
        ``None`` or ``_MISS``): /collect from there on, at the lane's clock reading."""
        ingest = Ingest(request, self._deps)
        ingest.now_s = now_s
        ingest.now_ms = int(now_s * 1000)
        ingest.payload = payload
        ingest.sid = payload.sid
        self._ingest_site(ingest, cycle, "collect", site, pipeline.COLLECT_WITH_SITE,
                          self._collect_finish)

    def _collect_finish(self, ingest: Ingest, cycle: Cycle) -> None:
        # _produce and _delivered specialised for /collect, its route's only answer inlined:
        # this and _collect_delivered run for every event the service takes.
        values = ingest.values
        try:
            self._sink.send_to(ingest.sid.encode(), values, partial(
                self._collect_delivered, cycle, ingest.cors, len(values), perf_counter()))
        except CollectError as err:
            self._fail(cycle, "collect", err, ingest.cors)

    def _collect_delivered(self, cycle: Cycle, cors: bytes, count: int, started: float,
                           err: CollectError | None) -> None:
        if err is not None:
            self._fail(cycle, "collect", err, cors)
            return
        # The metrics' observe, inc and request, inlined.
        metrics = self.metrics
        seconds = perf_counter() - started
        histogram = metrics.delivery_seconds
        histogram.counts[bisect_left(DELIVERY_BUCKETS_S, seconds)] += 1
        histogram.sum += seconds
        metrics.events_collect.value += count
        requests = metrics.requests
        requests[_COLLECT_204] = requests.get(_COLLECT_204, 0) + 1
        cycle.respond(204, _COLLECT_OK_HEADERS + cors)

    # -- GET /init ----------------------------------------------------------------------------

    def _init(self, request: Request, cycle: Cycle) -> None:
        method = request.method
        if method == b"GET":
            self._ingest(request, cycle, "init", pipeline.INIT_BEFORE_SITE,
                         pipeline.INIT_WITH_SITE, self._init_finish)
        elif method == b"OPTIONS":
            self._preflight(request, cycle)
        else:
            self._fail(cycle, "init", MethodNotAllowed())

    def _init_finish(self, ingest: Ingest, cycle: Cycle) -> None:
        """Verify a linker when one came without a valid cookie, then answer. The source site is
        usually cached (a visitor arrives from a page of it): then no task is created."""
        if ingest.linker is None:
            self._init_answer(ingest, cycle)
            return
        linker = pipeline.parse_linker(ingest)
        if isinstance(linker, str):
            self._linker_refused(ingest, cycle, linker)
            return
        source = self._directory.get_nowait(linker.sid, _MISS)
        if source is _MISS:
            task = asyncio.get_running_loop().create_task(
                self._init_linker_slow(ingest, cycle, linker))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._init_linker(ingest, cycle, linker, source)  # type: ignore[arg-type]

    async def _init_linker_slow(self, ingest: Ingest, cycle: Cycle,
                                linker: pipeline.Linker) -> None:
        try:
            source = await self._directory.get(linker.sid)
        except UnavailableError:
            self._linker_refused(ingest, cycle, "unavailable")
            return
        except Exception:  # the task boundary: the visitor still gets an id, never a hang
            log.exception("linker source lookup failed")
            self._linker_refused(ingest, cycle, "unavailable")
            return
        self._init_linker(ingest, cycle, linker, source)

    def _init_linker(self, ingest: Ingest, cycle: Cycle, linker: pipeline.Linker,
                     source: SiteRecord | None) -> None:
        reason = pipeline.verify_linker(ingest, linker, source)
        if reason is not None:
            self._linker_refused(ingest, cycle, reason)
            return
        self.metrics.linker_adopted.inc()
        self._init_answer(ingest, cycle)

    def _linker_refused(self, ingest: Ingest, cycle: Cycle, reason: str) -> None:
        """A refused linker is not an error: the visitor gets an id as if none had been sent."""
        self.metrics.linker_refused[reason].inc()
        self._init_answer(ingest, cycle)

    def _init_answer(self, ingest: Ingest, cycle: Cycle) -> None:
        try:
            drop = pipeline.INIT_ISSUE(ingest)
        except CollectError as err:
            self._fail(cycle, "init", err, ingest.cors)
            return
        if drop is not None:
            self._drop(cycle, "init", drop, ingest.cors)
            return
        body = json.dumps({"bid": ingest.bid, "tid": ingest.site.tid,
                           "token": ingest.token, "exp": ingest.exp},
                          separators=(",", ":")).encode()
        headers = _JSON + _NO_STORE + _VARY + ingest.cors
        if ingest.set_cookie:
            headers += b"Set-Cookie: viz_bid=" + ingest.bid.encode() + self._cookie_tail
        self._reply(cycle, "init", 200, headers, body)

    # -- GET /hit -----------------------------------------------------------------------------

    def _hit(self, request: Request, cycle: Cycle) -> None:
        method = request.method
        if method == b"GET" or method == b"POST":  # POST: navigator.sendBeacon(url)
            self._ingest(request, cycle, "hit", pipeline.HIT_BEFORE_SITE,
                         pipeline.HIT_WITH_SITE, self._hit_finish)
        elif method == b"OPTIONS":
            self._preflight(request, cycle)
        else:
            self._fail(cycle, "hit", MethodNotAllowed())

    def _hit_finish(self, ingest: Ingest, cycle: Cycle) -> None:
        self._produce(ingest, cycle, "hit", self._hit_ok)

    def _hit_ok(self, cycle: Cycle, cors: bytes, count: int) -> None:
        self.metrics.events_hit.inc(count)
        self._reply(cycle, "hit", 200, _GIF + _NO_STORE + _VARY + cors, PIXEL_GIF)

    # -- OPTIONS (CORS preflight) -------------------------------------------------------------

    def _preflight(self, request: Request, cycle: Cycle) -> None:
        """Allowed only for an Origin of the site named by ``?sid=``; otherwise the answer
        carries no Access-Control-Allow-Origin and the browser refuses the real request."""
        ingest = Ingest(request, self._deps)
        try:
            ingest.sid = parse_query(request.query).get("sid", "")
        except ValueError:
            ingest.sid = ""
        if request.origin is None or not ingest.sid:
            self._reply(cycle, "options", 204, _VARY)
            return
        site = self._directory.get_nowait(ingest.sid, _MISS)
        if site is _MISS:
            task = asyncio.get_running_loop().create_task(self._preflight_slow(ingest, cycle))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self._preflight_answer(ingest, cycle, site)  # type: ignore[arg-type]

    async def _preflight_slow(self, ingest: Ingest, cycle: Cycle) -> None:
        try:
            site = await self._directory.get(ingest.sid)
        except Exception:  # unknown or unreachable: no CORS grant either way
            site = None
        self._preflight_answer(ingest, cycle, site)

    def _preflight_answer(self, ingest: Ingest, cycle: Cycle, site: SiteRecord | None) -> None:
        origin = ingest.request.origin
        headers = _VARY
        if site is not None and origin is not None and pipeline.origin_allowed(site, origin):
            headers += pipeline.cors_headers(origin) + _PREFLIGHT
        self._reply(cycle, "options", 204, headers)

    # -- operations ---------------------------------------------------------------------------

    def _healthz(self, request: Request, cycle: Cycle) -> None:
        self._reply(cycle, "healthz", 200, _JSON + _NO_STORE, _OK_BODY)

    def _readyz(self, request: Request, cycle: Cycle) -> None:
        if self._sink.ready() and not self.shutting_down:
            self._reply(cycle, "readyz", 200, _JSON + _NO_STORE, _OK_BODY)
        else:
            self._reply(cycle, "readyz", 503, _JSON + _NO_STORE + _RETRY_AFTER,
                        _UNAVAILABLE_BODY)

    def _metrics(self, request: Request, cycle: Cycle) -> None:
        body = generate_latest(self.metrics.registry)
        self._reply(cycle, "metrics", 200, _METRICS_TYPE + _NO_STORE, body)
