"""Where one consumer flush spends its time on chDB: the writer's two inserts, taken apart.

    taskset -c 1 .venv/bin/python bench/pipeline/insert_micro.py [--reps 9] [--path /tmp/viz-bench-insert]

Builds realistic rows with the real ``event_row`` and times, per batch size (median of reps;
wall ms per insert and CPU µs per row, process CPU including chDB's threads): the writer's
``write`` as is; its two inserts separately; the traffic insert as the writer does it now
(``native_block`` + ``raw_insert``, FORMAT Native) and as it did before 2026-11-28
(clickhouse-connect's ``insert`` of the transposed columns, types given, so no DESCRIBE); the
same two into a copy of ``traffic`` without the materialized views and into a ``Null``-engine
copy (serialisation + ClickHouse's parsing only); the serialisations alone (``native_block``;
``zip(*rows)`` transpose); a pyarrow table built from the columns + ``insert_arrow`` (candidate,
not adopted); and the rows as JSON lines (orjson) through ``raw_insert`` with ``FORMAT
JSONCompactEachRow`` (candidate, not adopted). Every insert carries its own deduplication token
(a repeated token would be dropped). At the end, checks that every candidate stores exactly
the rows clickhouse-connect's insert stores (count and a hash over all columns).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--path", default="/tmp/viz-bench-insert")
    args = parser.parse_args()

    import clickhouse_connect
    import orjson
    import pyarrow as pa
    from workload import Workload

    from viz._fast.native import native_block
    from viz.common.gctune import tune_gc
    from viz.consumer.batch import Batch
    from viz.consumer.runner import event_row
    from viz.consumer.writer import _INSERT_SETTINGS, COLUMNS, ClickHouseWriter
    from viz.embedded import chdb_dsn
    from viz.migrations.clickhouse import migrate_clickhouse

    shutil.rmtree(args.path, ignore_errors=True)
    client = clickhouse_connect.get_client(dsn=chdb_dsn(args.path))
    migrate_clickhouse(client, "viz")
    client.command("CREATE TABLE viz.traffic_nomv AS viz.traffic")
    client.command("CREATE TABLE viz.traffic_null AS viz.traffic ENGINE = Null")
    writer = ClickHouseWriter(client, "viz")
    writer.ensure_state_table()
    types = dict(client.query("SELECT name, type FROM system.columns WHERE database = 'viz' "
                              "AND table = 'traffic'").result_rows)
    type_names = [types[c] for c in COLUMNS]

    def arrow_type(t: str) -> Any:
        if "String" in t:
            return pa.string()
        if t.startswith("DateTime64(3"):
            return pa.timestamp("ms", tz="UTC")
        return {"UInt8": pa.uint8(), "UInt16": pa.uint16(), "UInt32": pa.uint32(),
                "UInt64": pa.uint64()}[t]

    arrow_schema = pa.schema([pa.field(c, arrow_type(t), nullable=False)
                              for c, t in zip(COLUMNS, type_names, strict=True)])

    def arrow_table(cols: list[tuple[Any, ...]]) -> Any:
        return pa.Table.from_arrays([pa.array(c, type=f.type) for c, f
                                     in zip(cols, arrow_schema, strict=True)], schema=arrow_schema)

    sizes = [int(s) for s in args.sizes.split(",")]
    load = Workload(seed=7, start_ms=int(time.time() * 1000) - 3_600_000, span_ms=3_600_000)
    values = [v for _, v in load.events(max(sizes) * 2)]
    all_rows = [event_row(v, 0, i)[1] for i, v in enumerate(values)]
    tune_gc()  # as the consumer runs
    token = [0]

    def next_token() -> str:
        token[0] += 1
        return f"bench:{token[0]}"

    def timed(fn: Any) -> tuple[float, float]:
        t, cpu = time.perf_counter(), time.process_time()
        fn()
        return time.perf_counter() - t, time.process_time() - cpu

    print(f"| case | {' | '.join(f'{s} rows: wall ms (CPU µs/row)' for s in sizes)} |")
    print("|---|" + "---:|" * len(sizes))
    results: dict[str, list[str]] = {}
    for size in sizes:
        for rep in range(args.reps):
            rows = all_rows[(rep % 2) * size:(rep % 2) * size + size]
            batch = Batch("bench", rep, 0.0, first_offset=token[0] * size,
                          last_offset=token[0] * size + size - 1, rows=rows)
            token[0] += 1
            cols = list(zip(*rows, strict=True))
            # The candidate: rows as JSON lines (orjson), ClickHouse parses them natively.
            # DateTime64 from JSON wants seconds (an integer is read as seconds, not ms).
            jrows = [r[:3] + [r[3] / 1000, r[4] / 1000] + r[5:] for r in rows]
            cases = {
                "writer.write as is (ranges + traffic + views)":
                    lambda b=batch: writer.write(b, recorded_ns=time.time_ns()),
                "  ranges insert alone (1 row)":
                    lambda b=batch: client.insert(
                        "viz.consumer_ranges", [[b.topic, b.partition, 0, 1, 1]],
                        column_names=["topic", "partition", "first_offset", "last_offset",
                                      "recorded_ns"], settings={"insert_deduplicate": 0}),
                "  native_block alone (the writer's serialisation now)":
                    lambda r=rows: native_block(COLUMNS, type_names, r),
                "  row→column transpose zip(*rows) (before)":
                    lambda r=rows: list(zip(*r, strict=True)),
                "traffic insert now: native_block + raw_insert":
                    lambda r=rows: client.raw_insert(
                        "viz.traffic", COLUMNS, native_block(COLUMNS, type_names, r),
                        fmt="Native", settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "traffic insert before: zip(*rows) + clickhouse-connect insert, types given":
                    lambda r=rows: client.insert(
                        "viz.traffic", list(zip(*r, strict=True)), column_names=COLUMNS,
                        column_type_names=type_names, column_oriented=True,
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "traffic insert, pyarrow table + insert_arrow (candidate)":
                    lambda c=cols: client.insert_arrow(
                        "viz.traffic", arrow_table(c),
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "traffic insert, JSONCompactEachRow via orjson + raw_insert (candidate)":
                    lambda j=jrows: client.raw_insert(
                        "viz.traffic", COLUMNS, b"\n".join(map(orjson.dumps, j)),
                        fmt="JSONCompactEachRow",
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "traffic_nomv (no views): native_block + raw_insert":
                    lambda r=rows: client.raw_insert(
                        "viz.traffic_nomv", COLUMNS, native_block(COLUMNS, type_names, r),
                        fmt="Native", settings={"insert_deduplication_token": next_token()}),
                "traffic_nomv (no views): clickhouse-connect insert":
                    lambda r=rows: client.insert(
                        "viz.traffic_nomv", list(zip(*r, strict=True)), column_names=COLUMNS,
                        column_type_names=type_names, column_oriented=True,
                        settings={"insert_deduplication_token": next_token()}),
                "traffic_null (Null engine): native_block + raw_insert":
                    lambda r=rows: client.raw_insert(
                        "viz.traffic_null", COLUMNS, native_block(COLUMNS, type_names, r),
                        fmt="Native"),
                "traffic_null (Null engine): clickhouse-connect insert":
                    lambda r=rows: client.insert(
                        "viz.traffic_null", list(zip(*r, strict=True)), column_names=COLUMNS,
                        column_type_names=type_names, column_oriented=True),
                "traffic_null (Null engine): pyarrow + insert_arrow":
                    lambda c=cols: client.insert_arrow("viz.traffic_null", arrow_table(c)),
            }
            for name, fn in cases.items():
                results.setdefault(f"{name}|{size}", []).append(timed(fn))
    names = dict.fromkeys(k.split("|")[0] for k in results)
    for name in names:
        cells = []
        for size in sizes:
            runs = results[f"{name}|{size}"]
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs)
            cells.append(f"{wall * 1e3:.1f} ({cpu / size * 1e6:.1f})")
        print(f"| {name} | {' | '.join(cells)} |")
    # Every way must store exactly what clickhouse-connect's insert stores.
    rows = all_rows[:5000]
    cols = list(zip(*rows, strict=True))
    ways = {
        "eq_cc": lambda t: client.insert(t, cols, column_names=COLUMNS, column_oriented=True),
        "eq_native": lambda t: client.raw_insert(t, COLUMNS, native_block(COLUMNS, type_names,
                                                                          rows), fmt="Native"),
        "eq_arrow": lambda t: client.insert_arrow(t, arrow_table(cols)),
        "eq_json": lambda t: client.raw_insert(t, COLUMNS, b"\n".join(
            orjson.dumps(r[:3] + [r[3] / 1000, r[4] / 1000] + r[5:]) for r in rows),
            fmt="JSONCompactEachRow"),
    }
    sums = {}
    for table, insert in ways.items():
        client.command(f"CREATE TABLE viz.{table} AS viz.traffic_nomv")
        insert(f"viz.{table}")
        sums[table] = client.query(f"SELECT count(), groupBitXor(cityHash64(*)) FROM viz.{table}"
                                   ).result_rows[0]
    print(f"same content every way: {len(set(sums.values())) == 1} {sums}")
    client.close()
    shutil.rmtree(args.path, ignore_errors=True)


if __name__ == "__main__":
    main()
