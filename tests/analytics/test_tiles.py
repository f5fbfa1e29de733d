"""A range answered from tiles (daily view, hourly view, raw edges) equals a scan of `traffic`.

The oracle is the same `Reports` with ``use_views=False``; the data is a few hundred events
spread over three days, written by the consumer's own writer into real chDB.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from typing import Any

import pytest

from viz.analytics.models import Query
from viz.analytics.store import Reports, Tiles, tile
from viz.consumer.batch import Batch
from viz.consumer.runner import event_row
from viz.consumer.writer import ClickHouseWriter
from viz.migrations.clickhouse import migrate_clickhouse

UTC = dt.UTC
T0 = dt.datetime(2026, 11, 20, tzinfo=UTC)


def at(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(days=day, hours=hour, minutes=minute)


def test_tiles_take_whole_days_then_whole_hours_then_the_minutes_left() -> None:
    assert tile(at(0, 10, 30), at(2, 5, 15), hourly=True, daily=True) == Tiles(
        days=(at(1, 0), at(2, 0)),
        hours=[(at(0, 11), at(1, 0)), (at(2, 0), at(2, 5))],
        raw=[(at(0, 10, 30), at(0, 11)), (at(2, 5), at(2, 5, 15))])
    # Aligned on days: the daily view alone.
    assert tile(at(0, 0), at(3, 0), hourly=True, daily=True) == Tiles(days=(at(0, 0), at(3, 0)))
    # No whole day inside: hours and edges only.
    assert tile(at(0, 10, 30), at(0, 20), hourly=True, daily=True) == Tiles(
        hours=[(at(0, 11), at(0, 20))], raw=[(at(0, 10, 30), at(0, 11))])
    # No whole hour inside: the raw table alone.
    assert tile(at(0, 10, 30), at(0, 11, 20), hourly=True, daily=True) == Tiles(
        raw=[(at(0, 10, 30), at(0, 11, 20))])
    # A report with a daily view only (referrers): days and raw edges.
    assert tile(at(0, 10, 30), at(2, 5), hourly=False, daily=True) == Tiles(
        days=(at(1, 0), at(2, 0)), raw=[(at(0, 10, 30), at(1, 0)), (at(2, 0), at(2, 5))])


UAS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
       "Chrome/131.0.0.0 Safari/537.36",
       "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"]
REFERRERS = [None, "https://www.google.com/search?q=x", "https://t.co/abc", "/internal/page",
             "https://news.example.org/post"]


def events(n: int, seed: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        ts = int((T0 + dt.timedelta(minutes=rnd.randrange(3 * 24 * 60))).timestamp() * 1000)
        kind = rnd.choice(["pageview", "pageview", "pageview", "active", "exit", "hit"])
        bid = None if kind == "hit" else f"b{rnd.randrange(40)}"
        data: dict[str, Any] = {"eid": f"s:{bid or ''}:ev{i:05d}xx", "sid": "s", "tid": "t"}
        if bid:
            data["bid"] = bid
        data.update({"id": f"ev{i:05d}xx", "t": kind, "p": f"/p{rnd.randrange(6)}"})
        referrer = rnd.choice(REFERRERS)
        if referrer:
            data["r"] = referrer
        data["cts"] = ts
        if kind == "active":
            data["ms"] = rnd.randrange(1, 60_000)
        if kind == "exit":
            data["h"] = "https://elsewhere.example/"
        data.update({"ua": UAS[rnd.random() < 0.1], "tier": 0 if kind == "hit" else 1})
        out.append(json.dumps({"v": 1, "ts": ts, "data": data}).encode())
    return out


@pytest.fixture
def seeded(clickhouse_client: Any, ch_database: str) -> str:
    migrate_clickhouse(clickhouse_client, ch_database)
    writer = ClickHouseWriter(clickhouse_client, ch_database)
    writer.ensure_state_table()
    values = events(600)
    for part in range(3):  # three inserts: the views hold several parts, as in production
        batch = Batch("raw", 0, 0.0)
        for offset in range(part * 200, (part + 1) * 200):
            batch.add_offset(offset)
            batch.rows.append(event_row(values[offset], 0, offset)[1])
        writer.write(batch, recorded_ns=part)
    return ch_database


RANGES = [
    (at(0, 0), at(3, 0)),  # whole days
    (at(0, 10), at(2, 7)),  # whole hours around a whole day
    (at(0, 10, 17), at(2, 7, 45)),  # and minutes around those
    (at(0, 23, 59), at(1, 0, 1)),  # two minutes across midnight
    (at(1, 3, 5), at(1, 19, 50)),  # inside one day
    (at(-1, 22, 30), at(1, 2, 30)),  # starts before the data
    (at(1, 12), at(1, 13)),  # one whole hour
]


@pytest.mark.parametrize(("start", "end"), RANGES)
def test_every_report_from_tiles_equals_a_scan_of_the_raw_table(
        clickhouse_client: Any, seeded: str, start: dt.datetime, end: dt.datetime) -> None:
    tiled = Reports(clickhouse_client, seeded)
    scan = Reports(clickhouse_client, seeded, use_views=False)
    for tz in ("UTC", "Europe/Paris", "Asia/Kolkata"):
        for interval in ("hour", "day"):
            q = Query("s", start, end, tz, interval, 100)
            answer, oracle = tiled.timeseries(q), scan.timeseries(q)
            assert answer.rows == oracle.rows, (tz, interval)
            assert oracle.source == "traffic"
    q = Query("s", start, end, "UTC", "day", 100)
    for report in ("overview", "pages", "referrers"):
        answer, oracle = getattr(tiled, report)(q), getattr(scan, report)(q)
        assert answer.rows == oracle.rows, report
        assert oracle.source == "traffic"
    overview = tiled.overview(q).rows[0]
    assert overview[0] > 0 or end - start < dt.timedelta(hours=1)  # the ranges hold data


def test_the_answer_names_the_tables_that_gave_it(clickhouse_client: Any, seeded: str) -> None:
    reports = Reports(clickhouse_client, seeded)
    q = Query("s", at(0, 10, 17), at(2, 7, 45), "UTC", "day", 10)
    assert reports.pages(q).source == "pageviews_daily+pageviews_hourly+traffic"
    assert reports.overview(q).source == "site_daily+site_hourly+traffic"
    assert reports.referrers(q).source == "referrers_daily+traffic"
    whole_days = Query("s", at(0, 0), at(3, 0), "UTC", "day", 10)
    assert reports.pages(whole_days).source == "pageviews_daily"
    assert reports.referrers(whole_days).source == "referrers_daily"
    assert reports.timeseries(whole_days).source == "site_daily"
    paris_days = Query("s", at(0, 0), at(3, 0), "Europe/Paris", "day", 10)
    assert reports.timeseries(paris_days).source == "site_hourly"
    kolkata = Query("s", at(0, 0), at(3, 0), "Asia/Kolkata", "day", 10)
    assert reports.timeseries(kolkata).source == "traffic"


@pytest.mark.parametrize("limit", [1, 3, 100])
@pytest.mark.parametrize(("start", "end", "source"), [
    (at(0, 10, 17), at(2, 7, 45), "pageviews_daily+pageviews_hourly+traffic"),  # two queries
    (at(0, 0), at(3, 0), "pageviews_daily"),  # one table: one statement
])
def test_pages_ranked_first_equal_a_plain_top_n(
        clickhouse_client: Any, seeded: str, limit: int, start: dt.datetime, end: dt.datetime,
        source: str) -> None:
    # pages() ranks paths by their sums first and merges visitor states for the top ones only.
    expected = clickhouse_client.query(
        f"SELECT path, countIf(event_type = 'pageview') AS pv, "
        f"uniqExactIf(bid, bid != '' AND event_type = 'pageview'), "
        f"sumIf(active_ms, event_type = 'active'), countIf(event_type = 'exit') "
        f"FROM {seeded}.traffic WHERE is_bot = 0 AND ts >= {{a:DateTime64(3)}} "
        f"AND ts < {{b:DateTime64(3)}} GROUP BY path HAVING pv > 0 ORDER BY pv DESC, path "
        f"LIMIT {limit}",
        parameters={"a": start.replace(tzinfo=None), "b": end.replace(tzinfo=None)}
    ).result_rows
    q = Query("s", start, end, "UTC", "day", limit)
    answer = Reports(clickhouse_client, seeded).pages(q)
    assert (answer.rows, answer.source) == (expected, source)
    assert len(expected) == min(limit, 6)
