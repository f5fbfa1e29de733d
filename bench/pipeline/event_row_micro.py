"""Per-event CPU cost of the consumer's Python side: decode, enrich, row, batching and dedup.

    taskset -c 1 .venv/bin/python bench/pipeline/event_row_micro.py [--events 100000] [--reps 5]
    taskset -c 1 .venv/bin/python bench/pipeline/event_row_micro.py --compare /tmp/viz-before

Times, in CPU µs per event (median and min of reps, warm caches and ``tune_gc()`` as in a
running consumer): ``orjson.loads`` of the message (reference: what a generic JSON decode
costs), ``decode_envelope``, ``event_row`` (message bytes → ``traffic`` row, enrichment
included), and ``ConsumerLoop._take`` per message (``event_row`` plus Message accessors, the
per-partition batch and the duplicate check; 12 partitions, no flush). Each repetition runs in
a fresh child process; with ``--compare PATH`` the children alternate between this tree and
the ``viz`` copy at PATH (PYTHONPATH), so load changes on a shared machine hit both alike, and
the rows both produce are compared (a digest of every row).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def child(events: int) -> dict[str, Any]:
    import gc
    import inspect

    import orjson
    from confluent_kafka import Message
    from prometheus_client import CollectorRegistry
    from workload import Workload

    import viz
    from viz._fast.envelope import COMPILED, decode_envelope
    from viz.common.clock import SystemClock
    from viz.common.settings import ClickHouseSettings, KafkaSettings
    from viz.consumer.runner import ConsumerLoop, event_row

    try:
        from viz.common.gctune import tune_gc
    except ImportError:  # a tree from before 2026-11-28 10:40 (--compare)
        from viz.consumer.runner import tune_gc  # type: ignore[attr-defined,no-redef]
    from viz.consumer.settings import ConsumerSettings

    load = Workload(seed=3, start_ms=1_795_000_000_000, span_ms=3_600_000)
    values = [v for _, v in load.events(events)]
    msgs = [Message(topic="raw", partition=i % 12, offset=i // 12, value=v)
            for i, v in enumerate(values)]
    settings = ConsumerSettings(
        kafka=KafkaSettings(bootstrap="-", topic_raw="raw", topic_dlq="dlq", partitions=12),
        clickhouse=ClickHouseSettings(dsn="-", database="viz"), group_id="bench",
        batch_max_events=1_000_000, flush_interval_s=3600, session_timeout_ms=6000,
        retry_initial_s=1, retry_max_s=1, seen_ids_per_partition=10_000, retention_days=400,
        log_level="INFO")
    digest = hashlib.sha256()
    for i, v in enumerate(values):
        digest.update(repr(event_row(v, i % 12, i // 12)[1]).encode())

    def take() -> None:
        loop = ConsumerLoop(settings, None, None, None, clock=SystemClock(),  # type: ignore[arg-type]
                            registry=CollectorRegistry())
        if "messages" in inspect.signature(loop._take).parameters:  # one call per poll
            for i in range(0, len(msgs), 1000):
                loop._take(msgs[i:i + 1000])
        else:  # one call per message (before 2026-11-28)
            for msg in msgs:
                loop._take(msg)  # type: ignore[arg-type]

    cases = {
        "orjson.loads (reference)": lambda: [orjson.loads(v) for v in values],
        "decode_envelope": lambda: [decode_envelope(v) for v in values],
        "event_row (decode + enrich + row)":
            lambda: [event_row(v, i % 12, i // 12) for i, v in enumerate(values)],
        "ConsumerLoop._take per message": take,
    }
    for fn in cases.values():  # warm the enrichment caches
        fn()
    tune_gc()
    out: dict[str, Any] = {"viz": str(Path(viz.__file__).parent), "compiled": COMPILED,
                           "rows_sha256": digest.hexdigest()[:16]}
    for name, fn in cases.items():
        cpu = time.process_time()
        fn()
        out[name] = (time.process_time() - cpu) / len(values) * 1e6
        gc.collect()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--compare", default="", help="PYTHONPATH of a viz copy to compare with")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.events)))
        return

    variants = [("this tree", "")] + ([("compare", args.compare)] if args.compare else [])
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for _ in range(args.reps):
        for name, pythonpath in variants:
            env = dict(os.environ)
            if pythonpath:
                env["PYTHONPATH"] = pythonpath
            out = subprocess.run([sys.executable, __file__, "--child", "--events",
                                  str(args.events)], env=env, capture_output=True, text=True,
                                 check=True, timeout=900)
            results[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    for name, runs in results.items():
        print(f"{name}: {runs[0]['viz']} (compiled envelope: {runs[0]['compiled']}; "
              f"rows digest {runs[0]['rows_sha256']})")
    if args.compare:
        same = {r["rows_sha256"] for runs in results.values() for r in runs}
        print(f"identical rows in both: {len(same) == 1}")
    cases = [k for k in results["this tree"][0] if k not in ("viz", "compiled", "rows_sha256")]
    print("| step (CPU µs/event, median [min]) | " + " | ".join(results) + " |")
    print("|---|" + "---:|" * len(results))
    for case in cases:
        cells = []
        for runs in results.values():
            ts = [r[case] for r in runs]
            cells.append(f"{statistics.median(ts):.2f} [{min(ts):.2f}]")
        print(f"| {case} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
