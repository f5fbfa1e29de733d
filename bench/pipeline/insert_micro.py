"""Where one consumer flush spends its time on chDB: the writer's two inserts, taken apart.

    taskset -c 1 .venv/bin/python bench/pipeline/insert_micro.py [--reps 9] [--path /tmp/viz-bench-insert]

Builds realistic rows with the real ``event_row`` and times, per batch size (median of reps):
the writer's ``write`` as is; its two inserts separately; the traffic insert with the column
types given (clickhouse-connect otherwise runs ``DESCRIBE TABLE`` before every insert); the
same rows into a copy of ``traffic`` without the materialized views; and the row → column
transpose; and the candidate fix: the same rows as JSON lines (orjson) through ``raw_insert``
with ``FORMAT JSONCompactEachRow``, ClickHouse's own parser instead of clickhouse-connect's
pure-Python Native serialisation. Every insert carries its own deduplication token (a repeated token would be dropped).
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
    from workload import Workload

    from viz.consumer.batch import Batch
    from viz.consumer.runner import event_row
    from viz.consumer.writer import _INSERT_SETTINGS, COLUMNS, ClickHouseWriter
    from viz.embedded import chdb_dsn
    from viz.migrations.clickhouse import migrate_clickhouse

    shutil.rmtree(args.path, ignore_errors=True)
    client = clickhouse_connect.get_client(dsn=chdb_dsn(args.path))
    migrate_clickhouse(client, "viz")
    client.command("CREATE TABLE viz.traffic_nomv AS viz.traffic")
    writer = ClickHouseWriter(client, "viz")
    writer.ensure_state_table()
    types = dict(client.query("SELECT name, type FROM system.columns WHERE database = 'viz' "
                              "AND table = 'traffic'").result_rows)
    type_names = [types[c] for c in COLUMNS]

    sizes = [int(s) for s in args.sizes.split(",")]
    load = Workload(seed=7, start_ms=int(time.time() * 1000) - 3_600_000, span_ms=3_600_000)
    values = [v for _, v in load.events(max(sizes) * 2)]
    all_rows = [event_row(v, 0, i)[1] for i, v in enumerate(values)]
    token = [0]

    def next_token() -> str:
        token[0] += 1
        return f"bench:{token[0]}"

    def timed(fn: Any) -> float:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t

    print(f"| case | {' | '.join(f'{s} rows: ms (µs/row)' for s in sizes)} |")
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
                "writer.write as is (ranges + DESCRIBE + traffic + 2 views)":
                    lambda b=batch: writer.write(b, recorded_ns=time.time_ns()),
                "  ranges insert alone (1 row, incl. its DESCRIBE)":
                    lambda b=batch: client.insert(
                        "viz.consumer_ranges", [[b.topic, b.partition, 0, 1, 1]],
                        column_names=["topic", "partition", "first_offset", "last_offset",
                                      "recorded_ns"], settings={"insert_deduplicate": 0}),
                "  DESCRIBE TABLE traffic alone":
                    lambda: client.query("DESCRIBE TABLE viz.traffic"),
                "  row→column transpose zip(*rows)":
                    lambda r=rows: list(zip(*r, strict=True)),
                "traffic insert as the writer does it (DESCRIBE + insert)":
                    lambda c=cols: client.insert(
                        "viz.traffic", c, column_names=COLUMNS, column_oriented=True,
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "traffic insert, column types given (no DESCRIBE)":
                    lambda c=cols: client.insert(
                        "viz.traffic", c, column_names=COLUMNS, column_type_names=type_names,
                        column_oriented=True,
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "traffic insert, JSONCompactEachRow via orjson + raw_insert (encode incl.)":
                    lambda j=jrows: client.raw_insert(
                        "viz.traffic", COLUMNS, b"\n".join(map(orjson.dumps, j)),
                        fmt="JSONCompactEachRow",
                        settings={**_INSERT_SETTINGS, "insert_deduplication_token": next_token()}),
                "  orjson encode alone":
                    lambda j=jrows: b"\n".join(map(orjson.dumps, j)),
                "traffic_nomv insert, types given (no views)":
                    lambda c=cols: client.insert(
                        "viz.traffic_nomv", c, column_names=COLUMNS, column_type_names=type_names,
                        column_oriented=True,
                        settings={"insert_deduplication_token": next_token()}),
            }
            for name, fn in cases.items():
                results.setdefault(f"{name}|{size}", []).append(str(timed(fn)))
    names = dict.fromkeys(k.split("|")[0] for k in results)
    for name in names:
        cells = []
        for size in sizes:
            ts = [float(x) for x in results[f"{name}|{size}"]]
            med = statistics.median(ts)
            cells.append(f"{med * 1e3:.1f} ({med / size * 1e6:.1f})")
        print(f"| {name} | {' | '.join(cells)} |")
    # The candidate must store exactly what the writer's insert stores.
    rows = all_rows[:5000]
    for table in ("eq_native", "eq_json"):
        client.command(f"CREATE TABLE viz.{table} AS viz.traffic_nomv")
    client.insert("viz.eq_native", list(zip(*rows, strict=True)), column_names=COLUMNS,
                  column_oriented=True)
    client.raw_insert("viz.eq_json", COLUMNS, b"\n".join(
        orjson.dumps(r[:3] + [r[3] / 1000, r[4] / 1000] + r[5:]) for r in rows),
        fmt="JSONCompactEachRow")
    sums = [client.query(f"SELECT count(), groupBitXor(cityHash64(*)) FROM viz.{t}"
                         ).result_rows[0] for t in ("eq_native", "eq_json")]
    print(f"same content both ways: {sums[0] == sums[1]} {sums}")
    client.close()
    shutil.rmtree(args.path, ignore_errors=True)


if __name__ == "__main__":
    main()
