"""HTTP handlers of viz-cmp: decode, find the site, admit the origin, verify collect's token, decide,
store, answer.

Errors are raised (``HttpError`` subclasses) and rendered by the base app's error middleware;
:func:`cmp_headers` adds ``Vary: Origin``, ``Cache-Control: no-store`` and, once a handler has
admitted the request's Origin, the CORS grant, to answers and errors alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from viz.cmp import models
from viz.cmp.cookie import COOKIE_NAME, ConsentCookies
from viz.cmp.metrics import CmpMetrics
from viz.cmp.store import ConsentStore
from viz.common.clock import Clock
from viz.common.errors import UnavailableError
from viz.common.site_directory import SiteDirectory
from viz.common.sites import SID_RE, SiteRecord
from viz.common.web import HttpError, ServiceUnavailable

STORE_KEY = web.AppKey("viz_cmp_store", ConsentStore)
DIRECTORY_KEY = web.AppKey("viz_cmp_sites", SiteDirectory)
COOKIES_KEY = web.AppKey("viz_cmp_cookies", ConsentCookies)
CLOCK_KEY = web.AppKey("viz_cmp_clock", Clock)  # type: ignore[type-abstract]
CMP_METRICS_KEY = web.AppKey("viz_cmp_metrics", CmpMetrics)
OPENAPI_KEY = web.AppKey("viz_cmp_openapi", bytes)
CORS_KEY = web.RequestKey("viz_cmp_cors", dict)
"""The CORS grant of this request, set once its Origin is known to be one of the site's."""

_PREFLIGHT = {"Access-Control-Allow-Methods": "GET, POST",
              "Access-Control-Allow-Headers": "Content-Type",
              "Access-Control-Max-Age": "600"}


def _grant(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}


def _extra_headers(request: web.Request) -> dict[str, str]:
    if not request.path.startswith("/cmp/"):
        return {}
    # Answers depend on the Origin and on the visitor's cookie: never shared, never cached.
    return {"Vary": "Origin", "Cache-Control": "no-store", **request.get(CORS_KEY, {})}


@web.middleware
async def cmp_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except HttpError as err:
        err.headers.update(_extra_headers(request))
        raise
    response.headers.update(_extra_headers(request))
    return response


def _iso(value: datetime) -> str:
    return value.isoformat()


def _epoch_iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


async def _site(request: web.Request, sid: str) -> SiteRecord:
    try:
        site = await request.app[DIRECTORY_KEY].get(sid)
    except UnavailableError:
        raise ServiceUnavailable("the site configuration is unavailable; retry shortly") \
            from None
    if site is None:
        raise models.UnknownSite(sid)
    return site


def _admit(request: web.Request, site: SiteRecord) -> str:
    """Check the Origin (granting CORS) and the cmp feature; returns the ledger's ``source``."""
    origin = request.headers.get("Origin")
    host = models.allowed_origin(site, origin)
    if origin is not None and host is not None:
        request[CORS_KEY] = _grant(origin)
    if not site.features.get("cmp", False):
        raise models.CmpDisabled(site.sid)
    return host if host is not None else models.NO_ORIGIN_SOURCE


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_KEY], content_type="application/yaml")


async def preflight(request: web.Request) -> web.Response:
    """CORS preflight, granted only to an Origin of the site named by ``?sid=``.

    Otherwise the answer carries no ``Access-Control-Allow-Origin`` and the browser does not
    send the real request. cmp.js can avoid preflights altogether by posting ``text/plain``.
    """
    origin = request.headers.get("Origin")
    sid = request.query.get("sid", "")
    if origin is None or not SID_RE.fullmatch(sid):
        return web.Response(status=204)
    try:
        site = await request.app[DIRECTORY_KEY].get(sid)
        if site is None or not site.features.get("cmp", False):
            return web.Response(status=204)
        models.allowed_origin(site, origin)
    except (UnavailableError, models.OriginNotAllowed):
        return web.Response(status=204)
    return web.Response(status=204, headers={**_grant(origin), **_PREFLIGHT})


async def consent(request: web.Request) -> web.Response:
    body = await models.read_body(request)
    site = await _site(request, models.body_sid(body, request.query))
    source = _admit(request, site)
    metrics = request.app[CMP_METRICS_KEY]
    now = request.app[CLOCK_KEY].time()
    try:
        wanted = models.parse_consent(body)
        # Only the browser collect identified may decide for its bid (nothing is stored else).
        models.verify_token(wanted, site, now)
    except (models.TokenRequired, models.TokenExpired, models.TokenInvalid) as err:
        metrics.tokens_refused.labels(err.code).inc()
        raise
    choice = models.choose(wanted, site, gpc=models.gpc_signal(request.headers), source=source,
                           at=datetime.fromtimestamp(now, UTC), consent_id=uuid.uuid4())
    recorded = await request.app[STORE_KEY].record(choice)

    metrics.decisions.labels(str(choice.tier), recorded.method).inc()
    if choice.gpc:
        metrics.gpc_signals.inc()
    if choice.gpc_capped:
        metrics.gpc_capped.inc()

    cookies = request.app[COOKIES_KEY]
    issued_at = int(now)
    value = cookies.sign(tier=choice.tier, banner_version=choice.banner_version, tid=site.tid,
                         bid=choice.bid, issued_at=issued_at)
    response = web.json_response({
        "tier": choice.tier,
        "requested_tier": choice.requested_tier,
        "previous_tier": recorded.previous_tier,
        "gpc": choice.gpc,
        "gpc_capped": choice.gpc_capped,
        "method": recorded.method,
        "consent_id": str(choice.consent_id),
        "consented_at": _iso(recorded.consented_at),
        "banner_version": choice.banner_version,
        "banner_hash": choice.banner_hash,
        "cookie": value,
        "expires_at": _epoch_iso(issued_at + cookies.max_age_s),
    })
    cookies.set(response, value)
    return response


async def status(request: web.Request) -> web.Response:
    """The visitor's tier: from a valid cookie for (tid, bid), else the newer of the stored
    record for (bid, tid) and a valid cookie from a decision made without a bid (before the bid
    existed, or a decline sent while the tracker held no token for it)."""
    sid = models.parse_sid(request.query.get("sid"))
    site = await _site(request, sid)
    _admit(request, site)
    query = models.parse_status_query(request.query)
    now = request.app[CLOCK_KEY].time()
    cookies = request.app[COOKIES_KEY]
    metrics = request.app[CMP_METRICS_KEY]
    value = request.cookies.get(COOKIE_NAME)

    exact = cookies.read(value, site.tid, query.bid, now) if value else None
    before_bid = (cookies.read(value, site.tid, None, now)
                  if value and exact is None and query.bid is not None else None)
    if value and exact is None and before_bid is None:
        metrics.cookies_rejected.inc()
    if exact is None and query.bid is not None:
        record = await request.app[STORE_KEY].current(query.bid, site.tid)
        if record is not None and (before_bid is None
                                   or record.consented_at.timestamp() >= before_bid.issued_at):
            metrics.status.labels("record").inc()
            return web.json_response({"tier": record.tier,
                                      "consented_at": _iso(record.consented_at),
                                      "banner_version": record.banner_version,
                                      "source": "record"})
    claim = exact or before_bid
    if claim is None:
        metrics.status.labels("none").inc()
        return web.json_response({"tier": None})
    metrics.status.labels("cookie").inc()
    return web.json_response({"tier": claim.tier, "consented_at": _epoch_iso(claim.issued_at),
                              "banner_version": claim.banner_version, "source": "cookie"})
