"""The reporting queries. Every parameter is bound; identifiers come from settings only.

The views hold UTC hours (``site_hourly`` per site, ``pageviews_hourly`` per site and path) and
UTC days (``site_daily``, ``pageviews_daily`` per path, ``referrers_daily``). A range is cut into
tiles: the whole UTC days inside it from a daily view, the whole hours around those from an
hourly view, and only the minutes before the first and after the last whole hour (or day, for
referrers) from a scan of ``traffic``. One ``GROUP BY`` over the union of the tiles answers:
counts add up and visitor states merge, so the answer is the one a scan of the whole range
would give, whatever the tiles. Timeseries in a time zone whose offset is not whole hours
(India, Nepal, …) has buckets that cut UTC hours, so it scans ``traffic`` whole.

Visitors are ``uniqCombined(12)`` everywhere, in the views' states and in the scans alike:
exact for small sets, a HyperLogLog of 4096 cells beyond (about 1 % off). Calls block: handlers
run them in a thread pool.
"""

from __future__ import annotations

import datetime as dt
import threading
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from viz.analytics.models import Query

_HOUR = dt.timedelta(hours=1)
_DAY = dt.timedelta(days=1)
_MERGE_VISITORS = "uniqCombinedMerge(12)(visitors)"
# The raw tile's columns, named and typed like the views' (so UNION ALL lines them up).
_PAGEVIEWS = "countIf(event_type = 'pageview') AS pageviews"
_HITS = "countIf(event_type = 'hit') AS hits"
_EXITS = "countIf(event_type = 'exit') AS exits"
_ACTIVE = "sumIf(toUInt64(active_ms), event_type = 'active') AS active_ms"
_VISITORS = "uniqCombinedStateIf(12)(bid, bid != '' AND event_type = 'pageview') AS visitors"
_RAW_HOUR = "toStartOfHour(toDateTime(ts, 'UTC')) AS hour"

Span = tuple[dt.datetime, dt.datetime]  # [start, end), UTC


@dataclass(frozen=True)
class Result:
    rows: list[tuple[Any, ...]]
    source: str  # the tables that answered, joined by "+", for clients and benchmarks


@dataclass
class Tiles:
    """A range cut into what each table answers; spans are [start, end) in UTC."""

    days: Span | None = None
    hours: list[Span] = field(default_factory=list)
    raw: list[Span] = field(default_factory=list)


def _floor(moment: dt.datetime, unit: dt.timedelta) -> dt.datetime:
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if unit == _DAY else moment


def _ceil(moment: dt.datetime, unit: dt.timedelta) -> dt.datetime:
    floor = _floor(moment, unit)
    return floor if floor == moment else floor + unit


def _split(start: dt.datetime, end: dt.datetime, unit: dt.timedelta
           ) -> tuple[Span | None, list[Span]]:
    """The whole ``unit``s inside [start, end), and the (at most two) pieces around them."""
    first, last = _ceil(start, unit), _floor(end, unit)
    if first >= last:
        return None, [(start, end)]
    return (first, last), [s for s in ((start, first), (last, end)) if s[0] < s[1]]


def tile(start: dt.datetime, end: dt.datetime, *, hourly: bool, daily: bool) -> Tiles:
    """Cut [start, end) into whole days (when a daily view exists), hours, and raw edges."""
    if hourly:
        inner, raw = _split(start, end, _HOUR)
        if inner is None:
            return Tiles(raw=raw)
        if daily:
            days, hours = _split(*inner, _DAY)
            return Tiles(days=days, hours=hours, raw=raw)
        return Tiles(hours=[inner], raw=raw)
    if daily:
        days, raw = _split(start, end, _DAY)
        return Tiles(days=days, raw=raw)
    return Tiles(raw=[(start, end)])


class _Sql:
    """Collects the bound parameters of one statement."""

    def __init__(self, q: Query) -> None:
        self.params: dict[str, Any] = {"site": q.site}

    def at(self, moment: dt.datetime, cast: str = "") -> str:
        name = f"t{len(self.params)}"
        self.params[name] = moment.replace(tzinfo=None)
        ref = f"{{{name}:DateTime64(3, 'UTC')}}"
        return f"{cast}({ref})" if cast else ref

    def within(self, column: str, spans: list[Span], cast: str = "") -> str:
        ors = [f"({column} >= {self.at(a, cast)} AND {column} < {self.at(b, cast)})"
               for a, b in spans]
        return "(" + " OR ".join(ors) + ")"


@dataclass(frozen=True)
class _Report:
    """One report's tables and columns; the views' columns are named like the raw tile's."""

    hourly: str | None
    daily: str | None
    view_cols: str  # read from a view as is
    raw_cols: str  # computed from traffic, same names and types
    group: str  # the raw tile's GROUP BY (empty: one row)
    raw_filter: str = ""  # extra raw condition, also the views' own WHERE
    view_filter: str = ""  # extra condition on the views
    daily_cols: str = ""  # when the daily view's columns differ from the hourly one's

    def ranking(self, view_cols: str, raw_cols: str) -> _Report:
        """The same tiles reading fewer columns (no visitor states): to rank rows first."""
        return _Report(self.hourly, self.daily, view_cols, raw_cols, self.group,
                       self.raw_filter, self.view_filter)

    def only(self, condition: str) -> _Report:
        """The same tiles with one more condition on every part."""
        return _Report(self.hourly, self.daily, self.view_cols, self.raw_cols, self.group,
                       f"{self.raw_filter} AND {condition}", f"{self.view_filter} AND {condition}",
                       self.daily_cols)


_OVERVIEW = _Report("site_hourly", "site_daily", "pageviews, visitors, hits, exits, active_ms",
                    f"{_PAGEVIEWS}, {_VISITORS}, {_HITS}, {_EXITS}, {_ACTIVE}", "")
_TIMESERIES = _Report("site_hourly", None, "hour, pageviews, visitors, active_ms",
                      f"{_RAW_HOUR}, {_PAGEVIEWS}, {_VISITORS}, {_ACTIVE}", "hour")
# Days in UTC are whole UTC days: the daily rollup serves them too.
_TIMESERIES_UTC_DAYS = _Report("site_hourly", "site_daily", _TIMESERIES.view_cols,
                               _TIMESERIES.raw_cols, "hour",
                               daily_cols="toDateTime(day, 'UTC') AS hour, pageviews, visitors, "
                                          "active_ms")
_PAGES = _Report("pageviews_hourly", "pageviews_daily",
                 "path, pageviews, visitors, active_ms, exits",
                 f"path, {_PAGEVIEWS}, {_VISITORS}, {_ACTIVE}, {_EXITS}", "path")
_REFERRERS = _Report(None, "referrers_daily", "medium, source, pageviews, visitors, hits",
                     f"medium, source, {_PAGEVIEWS}, {_VISITORS}, {_HITS}", "medium, source",
                     raw_filter="AND event_type IN ('pageview', 'hit') AND medium != 'internal'",
                     view_filter="AND medium != 'internal'")


class Reports:
    """``use_views=False`` answers every range by scanning ``traffic`` (the tests' oracle)."""

    def __init__(self, client: Any, database: str, *, lock: threading.Lock | None = None,
                 use_views: bool = True) -> None:
        self.client = client
        self.db = database
        self.use_views = use_views
        self._lock = lock or nullcontext()

    def _run(self, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self.client.query(sql, parameters=params).result_rows)

    def ping(self) -> None:
        with self._lock:
            self.client.query("SELECT 1")

    def _union(self, report: _Report, q: Query, sql: _Sql, *, views: bool = True
               ) -> tuple[str, str]:
        """The tiles of ``q`` as one UNION ALL subquery, and the tables it reads."""
        tiles = (tile(q.start, q.end, hourly=report.hourly is not None,
                      daily=report.daily is not None)
                 if views and self.use_views else Tiles(raw=[(q.start, q.end)]))
        site = "site_id = {site:String}"
        parts, tables = [], []
        if tiles.days is not None and report.daily:
            parts.append(f"SELECT {report.daily_cols or report.view_cols} "
                         f"FROM {self.db}.{report.daily} WHERE {site} "
                         f"AND {sql.within('day', [tiles.days], 'toDate')} {report.view_filter}")
            tables.append(report.daily)
        if tiles.hours and report.hourly:
            parts.append(f"SELECT {report.view_cols} FROM {self.db}.{report.hourly} "
                         f"WHERE {site} AND {sql.within('hour', tiles.hours)} "
                         f"{report.view_filter}")
            tables.append(report.hourly)
        if tiles.raw:
            group = f" GROUP BY {report.group}" if report.group else ""
            parts.append(f"SELECT {report.raw_cols} FROM {self.db}.traffic WHERE {site} "
                         f"AND {sql.within('ts', tiles.raw)} AND is_bot = 0 "
                         f"{report.raw_filter}{group}")
            tables.append("traffic")
        return " UNION ALL ".join(parts), "+".join(tables)

    def overview(self, q: Query) -> Result:
        sql = _Sql(q)
        union, source = self._union(_OVERVIEW, q, sql)
        rows = self._run(f"SELECT sum(pageviews), {_MERGE_VISITORS}, sum(hits), sum(exits), "
                         f"sum(active_ms) FROM ({union})", sql.params)
        return Result(rows, source)

    def timeseries(self, q: Query) -> Result:
        """Rows of (local bucket start as 'YYYY-MM-DD hh:mm:ss', pageviews, visitors, active)."""
        bucket_fn = "toStartOfHour" if q.interval == "hour" else "toStartOfDay"
        sql = _Sql(q)
        sql.params["tz"] = q.tz
        if _whole_hour_offsets(q):
            utc_days = q.interval == "day" and q.tz in ("UTC", "Etc/UTC")
            union, source = self._union(_TIMESERIES_UTC_DAYS if utc_days else _TIMESERIES, q, sql)
            bucket = f"toString({bucket_fn}(toTimeZone(hour, {{tz:String}})))"
            rows = self._run(f"SELECT {bucket} AS bucket, sum(pageviews), {_MERGE_VISITORS}, "
                             f"sum(active_ms) FROM ({union}) GROUP BY bucket ORDER BY bucket",
                             sql.params)
            return Result(rows, source)
        # Local buckets cut UTC hours: bucket each event's own timestamp.
        bucket = f"toString({bucket_fn}(toTimeZone(ts, {{tz:String}})))"
        raw = _Report(None, None, "", f"{bucket} AS bucket, {_PAGEVIEWS}, {_VISITORS}, {_ACTIVE}",
                      "bucket")
        union, source = self._union(raw, q, sql, views=False)
        rows = self._run(f"SELECT bucket, pageviews, finalizeAggregation(visitors), active_ms "
                         f"FROM ({union}) ORDER BY bucket", sql.params)
        return Result(rows, source)

    def pages(self, q: Query) -> Result:
        """Paths ranked by their pageview sums first (no visitor states read), then the states
        of the top ``limit`` merged (``pageviews_daily`` is keyed by path, so the other paths'
        states are not even read). A range read from one table does both in one statement;
        a range whose tiles span several tables takes two queries, because ClickHouse would
        run the ranking subquery once per part of the union."""
        sql = _Sql(q)
        ranking, parts = self._union(_PAGES.ranking("path, pageviews", f"path, {_PAGEVIEWS}"),
                                     q, sql)
        sql.params["limit"] = q.limit
        top = (f"SELECT path FROM ({ranking}) GROUP BY path HAVING sum(pageviews) > 0 "
               f"ORDER BY sum(pageviews) DESC, path LIMIT {{limit:UInt32}}")
        merged = (f"SELECT path, sum(pageviews) AS pv, {_MERGE_VISITORS}, sum(active_ms), "
                  f"sum(exits) FROM ({{union}}) GROUP BY path ORDER BY pv DESC, path")
        if "+" not in parts:  # one table: ClickHouse evaluates the subquery once
            union, source = self._union(_PAGES.only(f"path IN ({top})"), q, sql)
            return Result(self._run(merged.format(union=union), sql.params), source)
        paths = [row[0] for row in self._run(top, sql.params)]
        sql = _Sql(q)
        union, source = self._union(_PAGES.only("path IN {top:Array(String)}"), q, sql)
        sql.params["top"] = paths
        rows = self._run(merged.format(union=union), sql.params) if paths else []
        return Result(rows, source)

    def referrers(self, q: Query) -> Result:
        sql = _Sql(q)
        union, source = self._union(_REFERRERS, q, sql)
        sql.params["limit"] = q.limit
        rows = self._run(f"SELECT medium, source, sum(pageviews) AS pv, {_MERGE_VISITORS}, "
                         f"sum(hits) FROM ({union}) GROUP BY medium, source "
                         f"ORDER BY pv DESC, medium, source LIMIT {{limit:UInt32}}", sql.params)
        return Result(rows, source)


def _whole_hour_offsets(q: Query) -> bool:
    """Hourly UTC buckets regroup exactly into local hours/days only for whole-hour offsets."""
    tz = ZoneInfo(q.tz)
    for moment in (q.start, q.end):
        offset = moment.astimezone(tz).utcoffset() or dt.timedelta()
        if offset.total_seconds() % 3600:
            return False
    return True
