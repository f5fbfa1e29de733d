"""What one chDB query costs before it reads anything, against what it costs to read a little.

Runs on the data ``analytics_bench.py`` seeded (10M events; run that first). Each query runs
``--runs`` times, interleaved with the others: once through clickhouse-connect (what the
analytics service does) and once through chDB's own connection underneath it, so the client's
share shows too. Pin it to a core for steadier figures:

    taskset -c 1 .venv/bin/python bench/pipeline/query_floor.py --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workdir", type=Path, default=Path("/tmp/viz-bench-analytics"))
    p.add_argument("--database", default="viz")
    p.add_argument("--site", default="site-000")
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()

    import clickhouse_connect

    from viz.embedded import chdb_dsn

    if not (args.workdir / "chdb").is_dir():
        raise SystemExit(f"no seeded data in {args.workdir}: run bench/pipeline/analytics_bench.py")
    client = clickhouse_connect.get_client(dsn=chdb_dsn(str(args.workdir / "chdb")))
    raw = client._backend._handle.conn  # chDB's connection under clickhouse-connect
    db, days = args.database, (f"site_id = '{args.site}' AND day >= '2026-10-01' "
                               f"AND day < '2026-10-31'")
    queries = {
        "SELECT 1": "SELECT 1",
        "count(), unknown site (reads nothing)":
            f"SELECT count() FROM {db}.pageviews_daily WHERE site_id = 'no-such-site'",
        "count(), site_daily, 30 days (30 rows)":
            f"SELECT count() FROM {db}.site_daily WHERE {days}",
        "count(), pageviews_daily, 30 days (every path)":
            f"SELECT count() FROM {db}.pageviews_daily WHERE {days}",
    }
    timings: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for name, sql in queries.items():
            for via, run in (("clickhouse-connect", lambda q: client.query(q)),
                             ("chDB", lambda q: raw.query(q, "Native"))):
                t = time.perf_counter()
                run(sql)
                timings.setdefault((name, via), []).append((time.perf_counter() - t) * 1000)
    print("| query | clickhouse-connect p50 / min ms | chDB p50 / min ms |")
    print("|---|---:|---:|")
    for name in queries:
        cells = []
        for via in ("clickhouse-connect", "chDB"):
            ms = timings[(name, via)]
            cells.append(f"{statistics.median(ms):.2f} / {min(ms):.2f}")
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
