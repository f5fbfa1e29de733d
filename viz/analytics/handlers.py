"""The four reporting endpoints: authenticate, parse the query, run one report, shape JSON."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from viz.analytics.models import Query, parse_query
from viz.analytics.store import Reports, Result
from viz.analytics.tokens import TokenIntrospector
from viz.common.clock import Clock
from viz.common.errors import UnavailableError
from viz.common.web import HttpError, ServiceUnavailable, Unauthorized

log = logging.getLogger(__name__)

REPORTS_KEY = web.AppKey("reports", Reports)
TOKENS_KEY = web.AppKey("tokens", TokenIntrospector)
CLOCK_KEY = web.AppKey("clock", Clock)  # type: ignore[type-abstract]
MAX_RANGE_KEY = web.AppKey("max_range_days", int)
EXECUTOR_KEY = web.AppKey("query_executor", ThreadPoolExecutor)


class Forbidden(HttpError):
    status = 403
    code = "forbidden"


async def _authorise(request: web.Request) -> Query:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an API token is required: Authorization: Bearer <token>")
    now = dt.datetime.fromtimestamp(request.app[CLOCK_KEY].time(), dt.UTC)
    query = parse_query(request.query, now=now, max_range_days=request.app[MAX_RANGE_KEY])
    try:
        grant = await request.app[TOKENS_KEY].grant(token.strip())
    except UnavailableError:
        raise ServiceUnavailable("token check unavailable, retry shortly") from None
    if grant is None:
        raise Unauthorized("unknown or revoked API token", code="invalid_token")
    if query.site not in grant.sites:
        # Same answer whether the site exists or not: a token learns nothing about other sites.
        raise Forbidden("this token has no access to that site")
    return query


async def _run(request: web.Request, report: Callable[[Query], Result], q: Query) -> Result:
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(request.app[EXECUTOR_KEY], report, q)
    except Exception as exc:
        # The client gets the class only; the log gets ClickHouse's message (no secrets in it).
        log.warning("%s for site %s failed: %s", report.__name__, q.site, exc)
        raise ServiceUnavailable(f"analytics store unavailable ({type(exc).__name__})") from exc


def _meta(q: Query, result: Result) -> dict[str, Any]:
    return {"site": q.site, "from": q.start.isoformat(), "to": q.end.isoformat(), "tz": q.tz,
            "source": result.source}


async def overview(request: web.Request) -> web.Response:
    q = await _authorise(request)
    result = await _run(request, request.app[REPORTS_KEY].overview, q)
    pageviews, visitors, hits, exits, active_ms = (int(v or 0) for v in result.rows[0])
    return web.json_response({
        **_meta(q, result), "pageviews": pageviews, "visitors": visitors, "hits": hits,
        "exits": exits, "active_ms": active_ms,
        "avg_active_s_per_visitor": round(active_ms / visitors / 1000, 1) if visitors else 0.0,
    })


def _buckets(q: Query) -> list[dt.datetime]:
    """Every bucket start of the range in the query's time zone, so gaps show as zeros."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(q.tz)
    local = q.start.astimezone(tz)
    if q.interval == "hour":
        cur = local.replace(minute=0, second=0, microsecond=0)
        step = dt.timedelta(hours=1)
    else:
        cur = local.replace(hour=0, minute=0, second=0, microsecond=0)
        step = dt.timedelta(days=1)
    out: list[dt.datetime] = []
    while cur.astimezone(dt.UTC) < q.end and len(out) < 24 * 32:
        out.append(cur.replace(tzinfo=None))
        # Step in wall-clock terms, then re-attach the zone (handles DST days).
        cur = (cur.replace(tzinfo=None) + step).replace(tzinfo=tz)
    return out


async def timeseries(request: web.Request) -> web.Response:
    q = await _authorise(request)
    result = await _run(request, request.app[REPORTS_KEY].timeseries, q)
    by_bucket = {dt.datetime.fromisoformat(row[0]): row for row in result.rows}
    points = []
    for bucket in _buckets(q):
        row = by_bucket.get(bucket)
        points.append({"t": bucket.isoformat(), "pageviews": int(row[1]) if row else 0,
                       "visitors": int(row[2]) if row else 0,
                       "active_ms": int(row[3]) if row else 0})
    return web.json_response({**_meta(q, result), "interval": q.interval, "points": points})


async def pages(request: web.Request) -> web.Response:
    q = await _authorise(request)
    result = await _run(request, request.app[REPORTS_KEY].pages, q)
    rows = [{"path": r[0], "pageviews": int(r[1]), "visitors": int(r[2]),
             "active_ms": int(r[3]), "exits": int(r[4])} for r in result.rows]
    return web.json_response({**_meta(q, result), "pages": rows})


async def referrers(request: web.Request) -> web.Response:
    q = await _authorise(request)
    result = await _run(request, request.app[REPORTS_KEY].referrers, q)
    rows = [{"medium": r[0], "source": r[1], "pageviews": int(r[2]), "visitors": int(r[3]),
             "hits": int(r[4])} for r in result.rows]
    return web.json_response({**_meta(q, result), "referrers": rows})
