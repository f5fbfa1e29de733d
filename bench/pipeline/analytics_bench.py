"""Analytics latency on 10M events / 30 days / 100 sites, embedded chDB (SPEC §10: p99 < 50 ms).

    .venv/bin/python bench/pipeline/analytics_bench.py            # seeds once (~minutes), then measures
    .venv/bin/python bench/pipeline/analytics_bench.py --reseed   # throw the seeded data away first

Seeding: ``INSERT INTO traffic SELECT … FROM numbers()`` in 1M-row chunks, so the materialized
views fill the normal way (from inserts into ``traffic``). Sites are skewed (site-000 ≈ 10 % of
events), ~500 paths per site, visitors, referrers/UTM, bots ≈ 3 %. The chDB directory stays in
``--workdir`` (default /tmp/viz-bench-analytics) with a marker, so re-runs skip seeding. A copy of
both views, merged with ``OPTIMIZE … FINAL``, lives in database ``viz_opt`` (its ``traffic`` is a
plain view over ``viz.traffic``); the views in ``viz`` are left as the inserts and chDB's
background merges made them, and their part counts are printed with the numbers. Data seeded
before a view existed is backfilled from ``traffic`` once (``upgrade``), then reused.

Measured twice per database, sequential requests, median/p99 per endpoint:
``store`` = the ``Reports`` method called directly (SQL through clickhouse-connect into chDB);
``http`` = the real aiohttp app (``create_app``) over loopback, token checked by a real viz-config
on an embedded PostgreSQL (cached after the first request, as in production). Requests rotate
over the 10 biggest sites. Each response's ``source`` says whether a view or ``traffic`` answered.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import shutil
import statistics
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

START = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
DAYS = 30
N_SITES = 100
MARKER = "seeded.json"
SEED_VERSION = 1
ADMIN = "bench-admin-token-0123456789abcdef"
SERVICE = "bench-service-token-0123456789abcde"

# Deterministic pseudo-random columns from the row number: u(k) is uniform in [0, 1).
_SEED_SELECT = """
INSERT INTO {db}.traffic
SELECT
    concat(site_id, ':', bid, ':e', toString(number)) AS event_id,
    site_id, tenant_id, ts, ts - toIntervalMillisecond(150) AS client_ts, event_type, path,
    if(event_type = 'pageview', concat('Item ', toString(path_n), ' – ', site_id), '') AS title,
    if(event_type = 'event', ['signup', 'download', 'play', 'share'][1 + number % 4], '')
        AS event_name,
    bid, if(event_type = 'hit', 0, 1) AS consent_tier,
    referrer, referrer_host, medium, source,
    if(medium IN ('paid', 'email'), source_l, '') AS utm_source,
    if(medium = 'paid', 'cpc', if(medium = 'email', 'email', '')) AS utm_medium,
    if(medium IN ('paid', 'email'), concat('campaign-', toString(number % 20)), '')
        AS utm_campaign,
    '' AS utm_term, '' AS utm_content,
    if(is_bot, 'Googlebot', ['Chrome', 'Chrome', 'Safari', 'Firefox', 'Edge',
        'Samsung Internet'][1 + intDiv(number, 7) % 6]) AS browser,
    toString(120 + number % 12) AS browser_version,
    ['Windows', 'Mac OS X', 'iOS', 'Android', 'Linux'][1 + intDiv(number, 11) % 5] AS os,
    if(is_bot, 'bot', ['desktop', 'desktop', 'mobile', 'mobile', 'tablet'][1 + number % 5])
        AS device,
    is_bot,
    if(event_type = 'active', toUInt32(1000 + u9 * 120000), 0) AS active_ms,
    if(event_type = 'exit', concat('https://out', toString(number % 300), '.example.net/'), '')
        AS exit_href,
    toUInt16(site_n % 12) AS kafka_partition, number AS kafka_offset
FROM (
    SELECT *,
        concat('site-', leftPad(toString(site_n), 3, '0')) AS site_id,
        concat('tenant-', toString(intDiv(site_n, 4))) AS tenant_id,
        fromUnixTimestamp64Milli(toInt64({start_ms} + floor(u2 * {span_ms})), 'UTC') AS ts,
        multiIf(u3 < 0.45, 'pageview', u3 < 0.70, 'active', u3 < 0.82, 'exit', u3 < 0.88, 'event',
                'hit') AS event_type,
        toUInt32(floor(500 * pow(u4, 2))) AS path_n,
        concat(if(path_n % 3 = 0, '/shop/item-', '/news/item-'), toString(path_n)) AS path,
        if(event_type = 'hit', '',
           concat('v', toString(site_n), '-',
                  toString(toUInt32(floor(pow(u5, 1.5) * 300000 / (site_n + 1)))))) AS bid,
        multiIf(u6 < 0.45, 'direct', u6 < 0.65, 'search', u6 < 0.75, 'social',
                u6 < 0.90, 'referral', u6 < 0.95, 'email', 'paid') AS medium,
        multiIf(medium = 'search', ['Google', 'Google', 'Google', 'Bing', 'DuckDuckGo'][1 + number % 5],
                medium = 'social', ['Twitter', 'Facebook', 'Reddit', 'Hacker News'][1 + number % 4],
                medium = 'referral', concat('blog', toString(toUInt32(u8 * 200)), '.example.org'),
                medium = 'email', 'newsletter', medium = 'paid', 'Google', '') AS source,
        if(medium IN ('email', 'paid'), lower(source), '') AS source_l,
        multiIf(medium = 'direct', '', medium = 'search', 'https://www.google.com/',
                medium = 'social', 'https://t.co/abc', medium = 'referral',
                concat('https://', source, '/post'), '') AS referrer,
        multiIf(medium = 'search', 'google.com', medium = 'social', 't.co',
                medium = 'referral', source, '') AS referrer_host,
        toUInt8(u7 < 0.03) AS is_bot
    FROM (
        SELECT number,
            toUInt32(floor({n_sites} * pow(cityHash64(number, 1) % 1000003 / 1000003, 2))) AS site_n,
            cityHash64(number, 2) % 1000003 / 1000003 AS u2,
            cityHash64(number, 3) % 1000003 / 1000003 AS u3,
            cityHash64(number, 4) % 1000003 / 1000003 AS u4,
            cityHash64(number, 5) % 1000003 / 1000003 AS u5,
            cityHash64(number, 6) % 1000003 / 1000003 AS u6,
            cityHash64(number, 7) % 1000003 / 1000003 AS u7,
            cityHash64(number, 8) % 1000003 / 1000003 AS u8,
            cityHash64(number, 9) % 1000003 / 1000003 AS u9
        FROM numbers({first}, {count})
    )
)
SETTINGS insert_deduplicate = 0
"""


ROLLUPS = ("pageviews_hourly", "pageviews_daily", "referrers_daily", "site_hourly")


def seed(client: Any, workdir: Path, events: int, chunk: int) -> dict[str, Any]:
    from viz.migrations.clickhouse import migrate_clickhouse

    migrate_clickhouse(client, "viz")
    t0 = time.monotonic()
    for first in range(0, events, chunk):
        count = min(chunk, events - first)
        client.command(_SEED_SELECT.format(
            db="viz", start_ms=int(START.timestamp() * 1000), span_ms=DAYS * 86_400_000,
            n_sites=N_SITES, first=first, count=count))
        print(f"  seeded {first + count:,} rows ({time.monotonic() - t0:.0f} s)", flush=True)
    seeded_s = time.monotonic() - t0
    # The merged copy of the views, for the "optimised" numbers; viz itself stays as inserted.
    client.command("CREATE DATABASE IF NOT EXISTS viz_opt")
    for table in ROLLUPS:
        copy_merged(client, table)
    client.command("CREATE VIEW viz_opt.traffic AS SELECT * FROM viz.traffic")
    info = {"version": SEED_VERSION, "events": events, "seed_s": round(seeded_s, 1),
            "seeded_at": dt.datetime.now(dt.UTC).isoformat(), "rollups": "filled by their views"}
    (workdir / MARKER).write_text(json.dumps(info))
    return info


def copy_merged(client: Any, table: str) -> None:
    client.command(f"CREATE TABLE viz_opt.{table} AS viz.{table}")
    client.command(f"INSERT INTO viz_opt.{table} SELECT * FROM viz.{table}")
    client.command(f"OPTIMIZE TABLE viz_opt.{table} FINAL")


def upgrade(client: Any, workdir: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Bring data seeded under an older schema up to date: the migrations that rebuild views
    backfill them from ``traffic`` themselves; the merged copies in ``viz_opt`` are redone."""
    from viz.migrations.clickhouse import migrate_clickhouse

    t0 = time.monotonic()
    applied = migrate_clickhouse(client, "viz")
    if applied:
        for table in ROLLUPS:
            client.command(f"DROP TABLE IF EXISTS viz_opt.{table}")
            copy_merged(client, table)
        info = {**info, "rollups": f"{', '.join(applied)} applied and viz_opt copied again in "
                                   f"{time.monotonic() - t0:.1f} s"}
        (workdir / MARKER).write_text(json.dumps(info))
        print(f"rollups: {info['rollups']}", flush=True)
    return info


def settle(client: Any, timeout_s: float = 900.0, quiet_s: float = 20.0) -> None:
    """Wait until chDB's background merges are done: they run in this process (on the pinned
    core), so measuring while a view's parts still merge measures the merge. The scheduler
    starts merges a few seconds after the engine opens, so "done" means none for ``quiet_s``."""
    t0 = time.monotonic()
    quiet_since = t0
    while time.monotonic() - t0 < timeout_s:
        if client.query("SELECT count() FROM system.merges").result_rows[0][0]:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= quiet_s:
            break
        time.sleep(1)
    print(f"background merges settled after {time.monotonic() - t0:.0f} s", flush=True)


def table_stats(client: Any) -> list[tuple[Any, ...]]:
    return list(client.query(
        "SELECT database, table, count() AS parts, sum(rows), "
        "formatReadableSize(sum(bytes_on_disk)) FROM system.parts WHERE active "
        "AND database IN ('viz', 'viz_opt') GROUP BY database, table ORDER BY database, table"
    ).result_rows)


def cases(sites: list[str]) -> list[tuple[str, str, dict[str, str], int]]:
    """(label, endpoint, params, requests). Dates are whole days, ``to`` included."""
    month = {"from": "2026-10-01", "to": "2026-10-30"}
    unaligned = {"from": "2026-10-01T00:30:00+00:00", "to": "2026-10-30T23:30:00+00:00"}
    return [
        ("overview 30 d", "overview", month, 200),
        ("timeseries day 30 d", "timeseries", {**month, "interval": "day"}, 200),
        ("timeseries hour 2 d", "timeseries", {"from": "2026-10-15", "to": "2026-10-16",
                                                "interval": "hour"}, 200),
        ("pages 30 d (limit 10)", "pages", month, 200),
        ("pages 30 local days, Europe/Berlin", "pages", {**month, "tz": "Europe/Berlin"}, 200),
        ("referrers 30 d (limit 10)", "referrers", month, 200),
        ("overview 30 d, unaligned (:30)", "overview", unaligned, 50),
        ("pages 30 d, unaligned (:30)", "pages", unaligned, 50),
        ("timeseries day 30 d, tz Asia/Kolkata", "timeseries",
         {**month, "interval": "day", "tz": "Asia/Kolkata"}, 50),
        ("referrers 30 d, unaligned (:30)", "referrers", unaligned, 50),
    ]


def summary(samples_ms: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_ms)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * len(ordered) + 0.5)) - 1)]
    return statistics.median(ordered), p99, ordered[-1]


def measure_store(client: Any, db: str, sites: list[str], scale: float,
                  warmup: int) -> list[dict[str, Any]]:
    from viz.analytics.models import parse_query
    from viz.analytics.store import Reports

    reports = Reports(client, db, lock=threading.Lock())
    now = START + dt.timedelta(days=DAYS + 1)
    out = []
    # The floor: any query through clickhouse-connect into chDB costs at least this.
    samples = []
    for i in range(max(10, int(200 * scale)) + warmup):
        t = time.perf_counter()
        reports.ping()
        if i >= warmup:
            samples.append((time.perf_counter() - t) * 1e3)
    p50, p99, worst = summary(samples)
    out.append({"layer": "store", "db": db, "case": "SELECT 1 (Reports.ping, the floor)",
                "n": len(samples), "source": "-", "p50_ms": p50, "p99_ms": p99, "max_ms": worst})
    print(f"  store {db:7} {'SELECT 1':38} {'-':17} p50 {p50:7.1f} p99 {p99:7.1f} ms", flush=True)
    for label, endpoint, params, n in cases(sites):
        n = max(10, int(n * scale))
        fn = getattr(reports, endpoint)
        queries = [parse_query({**params, "site": sites[i % len(sites)]}, now=now,
                               max_range_days=400) for i in range(n + warmup)]
        source = ""
        samples = []
        for i, q in enumerate(queries):
            t = time.perf_counter()
            result = fn(q)
            if i >= warmup:
                samples.append((time.perf_counter() - t) * 1e3)
            source = result.source
        p50, p99, worst = summary(samples)
        out.append({"layer": "store", "db": db, "case": label, "n": n, "source": source,
                    "p50_ms": p50, "p99_ms": p99, "max_ms": worst})
        print(f"  store {db:7} {label:38} {source:17} p50 {p50:7.1f} p99 {p99:7.1f} ms (n={n})",
              flush=True)
    return out


async def measure_http(client: Any, db: str, sites: list[str], workdir: Path, scale: float,
                       warmup: int, pg_dsn: str) -> list[dict[str, Any]]:
    import aiohttp
    from aiohttp import web

    from viz.analytics.app import create_app
    from viz.analytics.settings import AnalyticsSettings
    from viz.common.clock import ManualClock
    from viz.config.app import create_app as create_config_app
    from viz.config.settings import ConfigSettings
    from viz.embedded import free_port

    runners = []

    async def serve(app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return f"http://127.0.0.1:{port}"

    config_url = await serve(create_config_app(ConfigSettings.from_env({
        "VIZ_PG_DSN": pg_dsn, "VIZ_ADMIN_TOKEN": ADMIN, "VIZ_SERVICE_TOKEN": SERVICE,
        "VIZ_LOG_LEVEL": "WARNING"})))
    settings = AnalyticsSettings.from_env({
        "VIZ_CLICKHOUSE_DSN": "chdb://" + str(workdir / "chdb"), "VIZ_CLICKHOUSE_DATABASE": db,
        "VIZ_CONFIG_URL": config_url, "VIZ_SERVICE_TOKEN": SERVICE})
    clock = ManualClock(start=(START + dt.timedelta(days=DAYS + 1)).timestamp())
    api_url = await serve(create_app(settings, client, clock=clock, lock=threading.Lock()))
    out = []
    try:
        async with aiohttp.ClientSession() as session:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            for sid in sites:
                async with session.post(config_url + "/admin/sites", headers=admin, json={
                        "sid": sid, "tid": "bench", "domains": [f"{sid}.example"]}) as resp:
                    if resp.status not in (200, 201, 409):
                        raise RuntimeError(f"create site: {resp.status} {await resp.text()}")
            async with session.post(config_url + "/admin/tokens", headers=admin,
                                    json={"name": f"bench-{db}", "site_ids": sites}) as resp:
                if resp.status >= 300:
                    raise RuntimeError(f"create token: {resp.status} {await resp.text()}")
                token = (await resp.json())["token"]
            headers = {"Authorization": f"Bearer {token}"}
            for label, endpoint, params, n in cases(sites):
                n = max(10, int(n * scale))
                samples = []
                source = ""
                for i in range(n + warmup):
                    query = {**params, "site": sites[i % len(sites)]}
                    t = time.perf_counter()
                    async with session.get(f"{api_url}/analytics/{endpoint}", params=query,
                                           headers=headers) as resp:
                        body = await resp.read()
                        if resp.status != 200:
                            raise RuntimeError(f"{label}: {resp.status} {body[:300]!r}")
                    if i >= warmup:
                        samples.append((time.perf_counter() - t) * 1e3)
                    source = json.loads(body)["source"]
                p50, p99, worst = summary(samples)
                out.append({"layer": "http", "db": db, "case": label, "n": n, "source": source,
                            "p50_ms": p50, "p99_ms": p99, "max_ms": worst})
                print(f"  http  {db:7} {label:38} {source:17} p50 {p50:7.1f} p99 {p99:7.1f} ms "
                      f"(n={n})", flush=True)
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default="/tmp/viz-bench-analytics")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies request counts")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--databases", default="viz,viz_opt")
    parser.add_argument("--skip-http", action="store_true")
    args = parser.parse_args()

    import clickhouse_connect
    import uvloop

    from viz.embedded import EmbeddedPostgres, chdb_dsn
    from viz.migrations.postgres import migrate_postgres

    workdir = Path(args.workdir)
    marker = workdir / MARKER
    if args.reseed or not marker.exists() or \
            json.loads(marker.read_text()).get("events") != args.events or \
            json.loads(marker.read_text()).get("version") != SEED_VERSION:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        client = clickhouse_connect.get_client(dsn=chdb_dsn(str(workdir / "chdb")))
        print(f"seeding {args.events:,} events into {workdir / 'chdb'} …", flush=True)
        info = seed(client, workdir, args.events, args.chunk)
    else:
        client = clickhouse_connect.get_client(dsn=chdb_dsn(str(workdir / "chdb")))
        info = json.loads(marker.read_text())
        print(f"reusing seeded data from {info['seeded_at']} ({info['events']:,} events)")
        info = upgrade(client, workdir, info)
    settle(client)
    sites = [r[0] for r in client.query(
        "SELECT site_id FROM viz.traffic GROUP BY site_id ORDER BY count() DESC LIMIT 10"
    ).result_rows]
    shares = client.query(
        "SELECT site_id, count(), uniqExact(path), min(ts), max(ts) FROM viz.traffic "
        "WHERE site_id IN {s:Array(String)} GROUP BY site_id ORDER BY count() DESC",
        parameters={"s": sites}).result_rows
    stats = table_stats(client)
    print("tables (active parts, rows, size):")
    for row in stats:
        print("  ", row)
    print("measured sites:", [(s, n, p) for s, n, p, _, _ in shares])
    results: list[dict[str, Any]] = []
    for db in args.databases.split(","):
        results += measure_store(client, db, sites, args.scale, args.warmup)
    if not args.skip_http:
        pg = EmbeddedPostgres(workdir / "pg", durable=False)
        pg.start()
        try:
            asyncio.run(migrate_postgres(pg.dsn))
            for db in args.databases.split(","):
                results += uvloop.run(measure_http(client, db, sites, workdir, args.scale,
                                                   args.warmup, pg.dsn))
        finally:
            pg.stop()
            shutil.rmtree(workdir / "pg", ignore_errors=True)
    (workdir / "results.json").write_text(json.dumps(
        {"seed": info, "tables": [list(map(str, r)) for r in stats],
         "sites": [[str(x) for x in r] for r in shares], "results": results}, indent=1))
    print("\n| case | source | db | store p50 / p99 ms | http p50 / p99 ms | n |")
    print("|---|---|---|---:|---:|---:|")
    for r in results:
        if r["layer"] != "store":
            continue
        h = next((x for x in results if x["layer"] == "http" and x["db"] == r["db"]
                  and x["case"] == r["case"]), None)
        http = f"{h['p50_ms']:.1f} / {h['p99_ms']:.1f}" if h else "–"
        print(f"| {r['case']} | {r['source']} | {r['db']} | {r['p50_ms']:.1f} / "
              f"{r['p99_ms']:.1f} | {http} | {r['n']} |")


if __name__ == "__main__":
    main()
