"""The reporting queries. Every parameter is bound; identifiers come from settings only.

The views hold UTC hours (``site_hourly`` per site, ``pageviews_hourly`` per site and path) and
UTC days (``pageviews_daily`` per site and path, ``referrers_daily``). A query whose range is
aligned to those buckets reads the smallest view that answers it (site totals never merge
per-path rows; a pages range reads whole UTC days from ``pageviews_daily`` and only its edge
hours from ``pageviews_hourly``); any other range (a time zone with a half-hour offset, a range
starting mid-hour) scans ``traffic`` instead, so answers never depend on the path taken.
Visitors are ``uniqCombined(12)`` everywhere, in the views' states and in the raw scans alike:
exact for small sets, a HyperLogLog of 4096 cells beyond (about 1 % off). Calls block: handlers
run them in a thread pool.
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

from viz.analytics.models import Query

_RAW_FILTER = ("site_id = {site:String} AND ts >= {start:DateTime64(3, 'UTC')} "
               "AND ts < {end:DateTime64(3, 'UTC')} AND is_bot = 0")
_VISITORS = "uniqCombinedIf(12)(bid, bid != '' AND event_type = 'pageview')"
_MERGE_VISITORS = "uniqCombinedMerge(12)(visitors)"
_VIEW_FILTER = ("site_id = {site:String} AND hour >= {start:DateTime('UTC')} "
                "AND hour < {end:DateTime('UTC')}")


def _hour_aligned(moment: dt.datetime) -> bool:
    return moment.minute == 0 and moment.second == 0 and moment.microsecond == 0


def _day_aligned(moment: dt.datetime) -> bool:
    return _hour_aligned(moment) and moment.hour == 0


@dataclass(frozen=True)
class Result:
    rows: list[tuple[Any, ...]]
    source: str  # the table that answered, for clients and benchmarks


class Reports:
    def __init__(self, client: Any, database: str, *, lock: threading.Lock | None = None) -> None:
        self.client = client
        self.db = database
        self._lock = lock or nullcontext()

    def _query(self, sql: str, q: Query, **extra: Any) -> list[tuple[Any, ...]]:
        params = {"site": q.site, "start": q.start.replace(tzinfo=None),
                  "end": q.end.replace(tzinfo=None), **extra}
        with self._lock:
            return list(self.client.query(sql, parameters=params).result_rows)

    def ping(self) -> None:
        with self._lock:
            self.client.query("SELECT 1")

    def overview(self, q: Query) -> Result:
        if _hour_aligned(q.start) and _hour_aligned(q.end):
            sql = (f"SELECT sum(pageviews), {_MERGE_VISITORS}, sum(hits), sum(exits), "
                   f"sum(active_ms) FROM {self.db}.site_hourly WHERE {_VIEW_FILTER}")
            return Result(self._query(sql, q), "site_hourly")
        sql = (f"SELECT countIf(event_type = 'pageview'), "
               f"{_VISITORS}, countIf(event_type = 'hit'), "
               f"countIf(event_type = 'exit'), sumIf(active_ms, event_type = 'active') "
               f"FROM {self.db}.traffic WHERE {_RAW_FILTER}")
        return Result(self._query(sql, q), "traffic")

    def timeseries(self, q: Query) -> Result:
        """Rows of (local bucket start as 'YYYY-MM-DD hh:mm:ss', pageviews, visitors, active)."""
        bucket_fn = "toStartOfHour" if q.interval == "hour" else "toStartOfDay"
        if _hour_aligned(q.start) and _hour_aligned(q.end) and _whole_hour_offsets(q):
            sql = (f"SELECT toString({bucket_fn}(toTimeZone(hour, {{tz:String}}))) AS bucket, "
                   f"sum(pageviews), {_MERGE_VISITORS}, sum(active_ms) "
                   f"FROM {self.db}.site_hourly WHERE {_VIEW_FILTER} "
                   f"GROUP BY bucket ORDER BY bucket")
            return Result(self._query(sql, q, tz=q.tz), "site_hourly")
        sql = (f"SELECT toString({bucket_fn}(toTimeZone(ts, {{tz:String}}))) AS bucket, "
               f"countIf(event_type = 'pageview'), "
               f"{_VISITORS}, "
               f"sumIf(active_ms, event_type = 'active') FROM {self.db}.traffic "
               f"WHERE {_RAW_FILTER} GROUP BY bucket ORDER BY bucket")
        return Result(self._query(sql, q, tz=q.tz), "traffic")

    def pages(self, q: Query) -> Result:
        if _hour_aligned(q.start) and _hour_aligned(q.end):
            return self._pages_from_views(q)
        sql = (f"SELECT path, countIf(event_type = 'pageview') AS pv, "
               f"{_VISITORS}, "
               f"sumIf(active_ms, event_type = 'active'), countIf(event_type = 'exit') "
               f"FROM {self.db}.traffic WHERE {_RAW_FILTER} GROUP BY path HAVING pv > 0 "
               f"ORDER BY pv DESC, path LIMIT {{limit:UInt32}}")
        return Result(self._query(sql, q, limit=q.limit), "traffic")

    def _pages_from_views(self, q: Query) -> Result:
        """Whole UTC days from ``pageviews_daily``, the hours around them from the hourly view.

        Both hold the same sums and mergeable visitor states, so one GROUP BY over their union
        answers as if a single table held the whole range."""
        first_day, last_day = _whole_days(q.start, q.end)
        tail = "GROUP BY path HAVING pv > 0 ORDER BY pv DESC, path LIMIT {limit:UInt32}"
        cols = "path, pageviews, visitors, active_ms, exits"
        if first_day >= last_day:
            sql = (f"SELECT path, sum(pageviews) AS pv, {_MERGE_VISITORS}, sum(active_ms), "
                   f"sum(exits) FROM {self.db}.pageviews_hourly WHERE {_VIEW_FILTER} {tail}")
            return Result(self._query(sql, q, limit=q.limit), "pageviews_hourly")
        parts = [f"SELECT {cols} FROM {self.db}.pageviews_daily WHERE site_id = {{site:String}} "
                 f"AND day >= toDate({{first_day:DateTime('UTC')}}) "
                 f"AND day < toDate({{last_day:DateTime('UTC')}})"]
        sources = ["pageviews_daily"]
        if q.start < first_day or last_day < q.end:
            parts.append(
                f"SELECT {cols} FROM {self.db}.pageviews_hourly WHERE site_id = {{site:String}} "
                f"AND ((hour >= {{start:DateTime('UTC')}} AND hour < {{first_day:DateTime('UTC')}}) "
                f"OR (hour >= {{last_day:DateTime('UTC')}} AND hour < {{end:DateTime('UTC')}}))")
            sources.append("pageviews_hourly")
        sql = (f"SELECT path, sum(pageviews) AS pv, {_MERGE_VISITORS}, sum(active_ms), "
               f"sum(exits) FROM ({' UNION ALL '.join(parts)}) {tail}")
        rows = self._query(sql, q, limit=q.limit, first_day=first_day.replace(tzinfo=None),
                           last_day=last_day.replace(tzinfo=None))
        return Result(rows, "+".join(sources))

    def referrers(self, q: Query) -> Result:
        if _day_aligned(q.start) and _day_aligned(q.end):
            sql = (f"SELECT medium, source, sum(pageviews) AS pv, {_MERGE_VISITORS}, sum(hits) "
                   f"FROM {self.db}.referrers_daily WHERE site_id = {{site:String}} "
                   f"AND day >= toDate({{start:DateTime('UTC')}}) "
                   f"AND day < toDate({{end:DateTime('UTC')}}) AND medium != 'internal' "
                   f"GROUP BY medium, source ORDER BY pv DESC, medium, source "
                   f"LIMIT {{limit:UInt32}}")
            return Result(self._query(sql, q, limit=q.limit), "referrers_daily")
        sql = (f"SELECT medium, source, countIf(event_type = 'pageview') AS pv, "
               f"{_VISITORS}, countIf(event_type = 'hit') "
               f"FROM {self.db}.traffic WHERE {_RAW_FILTER} "
               f"AND event_type IN ('pageview', 'hit') AND medium != 'internal' "
               f"GROUP BY medium, source ORDER BY pv DESC, medium, source LIMIT {{limit:UInt32}}")
        return Result(self._query(sql, q, limit=q.limit), "traffic")


def _whole_days(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The first and last UTC midnight inside [start, end] (first > last when there are none)."""
    floor = start.replace(hour=0, minute=0, second=0, microsecond=0)
    first = floor if floor == start else floor + dt.timedelta(days=1)
    return first, end.replace(hour=0, minute=0, second=0, microsecond=0)


def _whole_hour_offsets(q: Query) -> bool:
    """Hourly UTC buckets regroup exactly into local hours/days only for whole-hour offsets."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(q.tz)
    for moment in (q.start, q.end):
        offset = moment.astimezone(tz).utcoffset() or dt.timedelta()
        if offset.total_seconds() % 3600:
            return False
    return True
