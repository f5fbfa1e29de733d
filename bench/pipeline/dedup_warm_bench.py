"""What warming the consumer's duplicate filter from ClickHouse costs on assignment.

    .venv/bin/python bench/pipeline/dedup_warm_bench.py --rows 3000000 --hours 48

Fills a fresh chDB ``traffic`` table with ``--rows`` realistic events (workload.py, spread over
the last ``--hours``, 12 Kafka partitions by site like collect's keying, inserted through the
consumer's own writer), then times ``ClickHouseWriter.recent_ids`` as the loop calls it on
assignment: all 12 partitions at once and one partition alone, with a 24 h horizon and the
default 200,000 ids per partition, ``--reps`` times each. Also reports the Python memory the
warmed filters hold (tracemalloc). Not a correctness test: tests/consumer/test_reliability.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import tracemalloc
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
PARTITIONS = 12


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--hours", type=float, default=48.0)
    parser.add_argument("--horizon-h", type=float, default=24.0)
    parser.add_argument("--capacity", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()

    import clickhouse_connect
    from workload import Workload

    from viz.consumer.batch import Batch, SeenIds
    from viz.consumer.runner import event_row
    from viz.consumer.writer import ClickHouseWriter
    from viz.embedded import chdb_dsn
    from viz.migrations.clickhouse import migrate_clickhouse

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="viz-dedup-warm-"))
    client = clickhouse_connect.get_client(dsn=chdb_dsn(str(workdir / "chdb")))
    client.command("CREATE DATABASE IF NOT EXISTS viz")
    migrate_clickhouse(client, "viz")
    writer = ClickHouseWriter(client, "viz")
    now_ms = int(time.time() * 1000)
    span_ms = int(args.hours * 3600 * 1000)
    load = Workload(seed=7, start_ms=now_ms - span_ms, span_ms=span_ms)
    offsets = [0] * PARTITIONS
    batches = {p: Batch("bench", p, 0.0) for p in range(PARTITIONS)}
    t0 = time.monotonic()
    for sid, value in load.events(args.rows):
        p = zlib.crc32(sid.encode()) % PARTITIONS
        batch = batches[p]
        batch.add_offset(offsets[p])
        batch.rows.append(event_row(value, p, offsets[p])[1])
        offsets[p] += 1
        if len(batch.rows) >= 50_000:
            writer.write(batch, recorded_ns=time.time_ns())
            batches[p] = Batch("bench", p, 0.0)
    for batch in batches.values():
        if batch.rows:
            writer.write(batch, recorded_ns=time.time_ns())
    client.command("OPTIMIZE TABLE viz.traffic FINAL")
    fill_s = time.monotonic() - t0
    stored = int(client.query("SELECT count() FROM viz.traffic").result_rows[0][0])
    since_ms = now_ms - int(args.horizon_h * 3600 * 1000)
    in_horizon = int(client.query(
        "SELECT count() FROM viz.traffic WHERE ts >= fromUnixTimestamp64Milli({s:Int64})",
        parameters={"s": since_ms}).result_rows[0][0])

    def timed(partitions: list[int]) -> tuple[float, int]:
        started = time.perf_counter()
        found = writer.recent_ids(partitions, since_ms, args.capacity, {})
        return time.perf_counter() - started, sum(len(v) for v in found.values())

    all_parts = list(range(PARTITIONS))
    results: dict[str, object] = {"rows": stored, "rows_in_horizon": in_horizon,
                                  "fill_s": round(fill_s, 1), "capacity": args.capacity,
                                  "horizon_h": args.horizon_h,
                                  "per_partition_rows": offsets}
    for name, parts in (("all_12", all_parts), ("one", [max(all_parts, key=lambda p: offsets[p])])):
        runs = [timed(parts) for _ in range(args.reps)]
        results[name] = {"median_s": round(statistics.median(r[0] for r in runs), 3),
                         "runs_s": [round(r[0], 3) for r in runs], "ids": runs[0][1]}
    tracemalloc.start()
    found = writer.recent_ids(all_parts, since_ms, args.capacity, {})
    filters = []
    for p in all_parts:
        seen = SeenIds(args.capacity)
        seen.warm(found[p])
        filters.append(seen)
    del found
    results["filters_mib"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
    tracemalloc.stop()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
