"""Query parameters of the reporting endpoints, validated into one ``Query`` value."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from viz.common.sites import is_valid_sid
from viz.common.web import HttpError

INTERVALS = ("hour", "day")


class InvalidQuery(HttpError):
    status = 400
    code = "invalid_query"


@dataclass(frozen=True)
class Query:
    site: str
    start: dt.datetime  # inclusive, UTC
    end: dt.datetime  # exclusive, UTC
    tz: str
    interval: str
    limit: int


def _parse_instant(value: str, field: str, tz: ZoneInfo, *, end: bool) -> dt.datetime:
    """A date (``2026-11-01``: the whole local day) or an ISO datetime; returns UTC."""
    try:
        if len(value) == 10:
            day = dt.date.fromisoformat(value)
            local = dt.datetime.combine(day, dt.time(), tz)
            if end:
                local = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)
            return local.astimezone(dt.UTC)
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidQuery(f"{field} must be a date (YYYY-MM-DD) or an ISO 8601 datetime",
                           details={"field": field}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment.astimezone(dt.UTC)


def parse_query(params: Mapping[str, str], *, now: dt.datetime, max_range_days: int) -> Query:
    site = params.get("site", "")
    if not site:
        raise InvalidQuery("site is required", details={"field": "site"})
    if not is_valid_sid(site):
        raise InvalidQuery("site is not a valid site id", details={"field": "site"})
    tz_name = params.get("tz", "UTC")
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidQuery(f"unknown time zone {tz_name!r}", details={"field": "tz"}) from None
    # Without `to`, the range ends at the next whole hour: it includes now and stays aligned to
    # the hourly views, so default dashboards never scan raw events.
    next_hour = now.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    end = (_parse_instant(params["to"], "to", tz, end=True) if params.get("to")
           else next_hour)
    start = (_parse_instant(params["from"], "from", tz, end=False) if params.get("from")
             else end - dt.timedelta(days=7))
    if start >= end:
        raise InvalidQuery("from must be before to", details={"field": "from"})
    if end - start > dt.timedelta(days=max_range_days):
        raise InvalidQuery(f"the range may span at most {max_range_days} days",
                           details={"field": "to"})
    interval = params.get("interval", "day")
    if interval not in INTERVALS:
        raise InvalidQuery("interval must be hour or day", details={"field": "interval"})
    if interval == "hour" and end - start > dt.timedelta(days=31):
        raise InvalidQuery("interval=hour spans at most 31 days", details={"field": "interval"})
    try:
        limit = int(params.get("limit", "10"))
    except ValueError:
        raise InvalidQuery("limit must be an integer", details={"field": "limit"}) from None
    if not 1 <= limit <= 1000:
        raise InvalidQuery("limit must be between 1 and 1000", details={"field": "limit"})
    return Query(site, start, end, tz.key, interval, limit)
