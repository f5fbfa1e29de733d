"""The reporting API answers with the numbers the events add up to, only to the right tokens.

Real PostgreSQL behind a real viz-config (token introspection over HTTP), real chDB holding
rows written by the consumer's own writer.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from viz.analytics.app import create_app
from viz.analytics.settings import AnalyticsSettings
from viz.common.clock import ManualClock
from viz.config.app import create_app as create_config_app
from viz.config.settings import ConfigSettings
from viz.consumer.batch import Batch
from viz.consumer.runner import event_row
from viz.consumer.writer import ClickHouseWriter
from viz.migrations.clickhouse import migrate_clickhouse
from viz.migrations.postgres import migrate_postgres

ADMIN = "analytics-admin-token-0123456789"
SERVICE = "analytics-service-token-012345678"
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/131.0.0.0 Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
DAY = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)


def at(day: int, hour: int, minute: int = 0) -> int:
    return int((DAY + dt.timedelta(days=day, hours=hour, minutes=minute)).timestamp() * 1000)


def envelope(n: int, sid: str, t: str, p: str, ts: int, bid: str | None = "b1", *,
             r: str | None = None, ms: int | None = None, ua: str = CHROME) -> bytes:
    data: dict[str, Any] = {"eid": f"{sid}:{bid or ''}:ev{n:05d}xx", "sid": sid, "tid": "acme"}
    if bid:
        data["bid"] = bid
    data.update({"id": f"ev{n:05d}xx", "t": t, "p": p})
    if r:
        data["r"] = r
    data["cts"] = ts
    if ms is not None:
        data["ms"] = ms
    if t == "exit":
        data["h"] = "https://elsewhere.example/"
    data.update({"ua": ua, "tier": 0 if t == "hit" else 1})
    return json.dumps({"v": 1, "ts": ts, "data": data}).encode()


EVENTS = [
    envelope(1, "news-a", "pageview", "/a?utm_campaign=x", at(0, 10, 5),
             r="https://www.google.com/search?q=viz"),
    envelope(2, "news-a", "pageview", "/a", at(0, 10, 40), bid="b2"),
    envelope(3, "news-a", "active", "/a", at(0, 10, 6), ms=5000),
    envelope(4, "news-a", "pageview", "/b", at(0, 11, 10), r="https://t.co/abc"),
    envelope(5, "news-a", "exit", "/b", at(0, 11, 12)),
    envelope(6, "news-a", "hit", "/a", at(0, 12, 0), bid=None),
    envelope(7, "news-a", "pageview", "/a", at(0, 10, 7), bid="bot1", ua=GOOGLEBOT),
    envelope(8, "news-a", "pageview", "/c", at(1, 9, 30), bid="b3"),
    envelope(9, "shop", "pageview", "/x", at(0, 10, 0), bid="b9"),
]


@pytest.fixture
def ch_seeded(clickhouse_client: Any, ch_database: str) -> str:
    migrate_clickhouse(clickhouse_client, ch_database)
    batch = Batch("raw", 0, 0.0)
    for offset, value in enumerate(EVENTS):
        batch.add_offset(offset)
        batch.rows.append(event_row(value, 0, offset)[1])
    writer = ClickHouseWriter(clickhouse_client, ch_database)
    writer.ensure_state_table()
    writer.write(batch, recorded_ns=1)
    return ch_database


@pytest.fixture
async def config_url(pg_database: str, aiohttp_server: Callable[..., Awaitable[TestServer]]
                     ) -> str:
    await migrate_postgres(pg_database)
    settings = ConfigSettings.from_env({"VIZ_PG_DSN": pg_database, "VIZ_ADMIN_TOKEN": ADMIN,
                                        "VIZ_SERVICE_TOKEN": SERVICE})
    server = await aiohttp_server(create_config_app(settings))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=(DAY + dt.timedelta(days=3)).timestamp())


@pytest.fixture
async def api(aiohttp_client: Callable[[web.Application], Awaitable[TestClient]],
              clickhouse_client: Any, clickhouse_dsn: str, ch_seeded: str, config_url: str,
              clock: ManualClock) -> TestClient:
    settings = AnalyticsSettings.from_env({
        "VIZ_CLICKHOUSE_DSN": clickhouse_dsn, "VIZ_CLICKHOUSE_DATABASE": ch_seeded,
        "VIZ_CONFIG_URL": config_url, "VIZ_SERVICE_TOKEN": SERVICE,
        "VIZ_ANALYTICS_TOKEN_CACHE_TTL_S": "30"})
    return await aiohttp_client(create_app(settings, clickhouse_client, clock=clock))


async def admin(api: TestClient, config_url: str, method: str, path: str,
                body: Any = None) -> Any:
    async with api.session.request(method, config_url + path, json=body,
                                   headers={"Authorization": f"Bearer {ADMIN}"}) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json() if resp.status != 204 else None


@pytest.fixture
async def token(api: TestClient, config_url: str) -> str:
    for sid in ("news-a", "shop"):
        await admin(api, config_url, "POST", "/admin/sites",
                    {"sid": sid, "tid": "acme", "domains": [f"{sid}.example"]})
    created = await admin(api, config_url, "POST", "/admin/tokens",
                          {"name": "dash", "site_ids": ["news-a"]})
    return str(created["token"])


async def get(api: TestClient, path: str, token: str | None, **params: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = await api.get(path, params=params, headers=headers)
    return resp.status, await resp.json()


# Dates are whole local days, `to` included: this is 20 and 21 November.
RANGE = {"site": "news-a", "from": "2026-11-20", "to": "2026-11-21"}


async def test_overview_counts_pageviews_visitors_hits_exits_and_active_time(
        api: TestClient, token: str) -> None:
    status, body = await get(api, "/analytics/overview", token, **RANGE)
    assert status == 200, body
    # The Googlebot pageview is not a visitor's; the shop site's pageview is another site's.
    assert (body["pageviews"], body["visitors"], body["hits"], body["exits"],
            body["active_ms"]) == (4, 3, 1, 1, 5000)
    assert body["source"] == "site_daily"  # 20 and 21 November are whole UTC days


async def test_a_range_shorter_than_its_whole_hours_scans_traffic(
        api: TestClient, token: str) -> None:
    status, body = await get(api, "/analytics/overview", token, site="news-a",
                             **{"from": "2026-11-20T10:30:00+00:00",
                                "to": "2026-11-20T11:30:00+00:00"})
    assert status == 200 and body["source"] == "traffic"
    assert (body["pageviews"], body["visitors"]) == (2, 2)  # b2 at 10:40, b1 at 11:10


async def test_timeseries_fills_empty_buckets_in_the_requested_time_zone(
        api: TestClient, token: str) -> None:
    status, body = await get(api, "/analytics/timeseries", token, site="news-a",
                             interval="hour", tz="Europe/Paris",
                             **{"from": "2026-11-20", "to": "2026-11-20"})
    assert status == 200, body
    assert body["source"] == "site_hourly"  # Paris is a whole-hour offset from UTC
    points = {p["t"]: p["pageviews"] for p in body["points"]}
    assert len(points) == 24  # a whole local day, zeros included
    # 10:05 and 10:40 UTC are 11:xx in Paris; 11:10 UTC is 12:10.
    assert points["2026-11-20T11:00:00"] == 2 and points["2026-11-20T12:00:00"] == 1
    assert sum(points.values()) == 3

    status, body = await get(api, "/analytics/timeseries", token, site="news-a",
                             interval="day", **{"from": "2026-11-19", "to": "2026-11-21"})
    assert [(p["t"][:10], p["pageviews"], p["visitors"]) for p in body["points"]] == [
        ("2026-11-19", 0, 0), ("2026-11-20", 3, 2), ("2026-11-21", 1, 1)]


async def test_pages_are_ranked_by_pageviews_with_the_query_string_stripped(
        api: TestClient, token: str) -> None:
    status, body = await get(api, "/analytics/pages", token, **RANGE, limit="2")
    assert status == 200
    assert body["source"] == "pageviews_daily"
    assert [(p["path"], p["pageviews"], p["visitors"], p["active_ms"], p["exits"])
            for p in body["pages"]] == [("/a", 2, 2, 5000, 0), ("/b", 1, 1, 0, 1)]


async def test_pages_over_local_days_join_daily_and_hourly_rollups_exactly(
        api: TestClient, token: str) -> None:
    # Paris days 20-21 Nov are 19 Nov 23:00 to 21 Nov 23:00 UTC: the whole UTC day of the 20th
    # comes from the daily rollup, the hours around it (the 21st's 09:30 pageview of /c) from
    # the hourly one; the answer must equal a raw scan of the same range.
    paris = {"site": "news-a", "tz": "Europe/Paris", "from": "2026-11-20", "to": "2026-11-21"}
    status, body = await get(api, "/analytics/pages", token, **paris)
    assert status == 200, body
    assert body["source"] == "pageviews_daily+pageviews_hourly"
    tiled = [(p["path"], p["pageviews"], p["visitors"], p["active_ms"], p["exits"])
             for p in body["pages"]]
    assert tiled == [("/a", 2, 2, 5000, 0), ("/b", 1, 1, 0, 1), ("/c", 1, 1, 0, 0)]
    # One minute later at each end: the minutes outside whole hours come from `traffic`.
    status, edged = await get(api, "/analytics/pages", token, site="news-a",
                              **{"from": "2026-11-19T23:01:00+00:00",
                                 "to": "2026-11-21T23:01:00+00:00"})
    assert edged["source"] == "pageviews_daily+pageviews_hourly+traffic"
    assert [(p["path"], p["pageviews"], p["visitors"], p["active_ms"], p["exits"])
            for p in edged["pages"]] == tiled

    # Within one UTC day there is no whole day: the hourly rollup alone.
    status, body = await get(api, "/analytics/pages", token, site="news-a",
                             **{"from": "2026-11-20T10:00:00+00:00",
                                "to": "2026-11-20T11:00:00+00:00"})
    assert body["source"] == "pageviews_hourly"
    assert [(p["path"], p["pageviews"]) for p in body["pages"]] == [("/a", 2)]


async def test_referrers_group_by_medium_and_source(api: TestClient, token: str) -> None:
    status, body = await get(api, "/analytics/referrers", token, **RANGE)
    assert status == 200
    assert body["source"] == "referrers_daily"
    assert {(r["medium"], r["source"]): (r["pageviews"], r["hits"]) for r in body["referrers"]
            } == {("search", "Google"): (1, 0), ("direct", ""): (2, 1),
                  ("social", "Twitter"): (1, 0)}


@pytest.mark.parametrize(("headers_token", "status", "code"), [
    (None, 401, "unauthorized"),
    ("vzt_not-a-real-token-at-all-000000000000000000", 401, "invalid_token"),
])
async def test_requests_without_a_valid_token_are_refused(
        api: TestClient, token: str, headers_token: str | None, status: int, code: str) -> None:
    got, body = await get(api, "/analytics/overview", headers_token, **RANGE)
    assert (got, body["error"]["code"]) == (status, code)


async def test_a_token_for_one_site_never_sees_another(api: TestClient, token: str) -> None:
    for site in ("shop", "no-such-site"):
        status, body = await get(api, "/analytics/pages", token, site=site)
        assert (status, body["error"]["code"]) == (403, "forbidden")


async def test_revocation_takes_effect_within_the_cache_ttl(
        api: TestClient, token: str, config_url: str, clock: ManualClock) -> None:
    assert (await get(api, "/analytics/overview", token, **RANGE))[0] == 200
    tokens = (await admin(api, config_url, "GET", "/admin/tokens"))["tokens"]
    await admin(api, config_url, "DELETE", f"/admin/tokens/{tokens[0]['id']}")
    clock.advance(31)
    status, body = await get(api, "/analytics/overview", token, **RANGE)
    assert (status, body["error"]["code"]) == (401, "invalid_token")


@pytest.mark.parametrize(("params", "field"), [
    ({}, "site"),
    ({"site": "a/b"}, "site"),
    ({"site": "news-a", "from": "2026-11-21", "to": "2026-11-20"}, "from"),
    ({"site": "news-a", "from": "yesterday"}, "from"),
    ({"site": "news-a", "tz": "Mars/Olympus"}, "tz"),
    ({"site": "news-a", "interval": "week"}, "interval"),
    ({"site": "news-a", "limit": "0"}, "limit"),
    ({"site": "news-a", "from": "2020-01-01", "to": "2026-01-01"}, "to"),
])
async def test_invalid_parameters_get_a_400_naming_the_field(
        api: TestClient, token: str, params: dict[str, str], field: str) -> None:
    status, body = await get(api, "/analytics/overview", token, **params)
    assert status == 400
    assert body["error"]["code"] == "invalid_query" and body["error"]["field"] == field
