"""Consumer throughput, Kafka → ClickHouse, end to end, counted in ClickHouse (SPEC §10: ≥ 100k ev/s).

    .venv/bin/python bench/pipeline/consumer_bench.py                      # 1M events, batches 1000/5000/20000
    .venv/bin/python bench/pipeline/consumer_bench.py --events 2000000 --reps 3 --profile

Starts the embedded broker, creates a 12-partition topic, pre-produces N realistic envelopes
(workload.py; lz4 and murmur2 keyed by site, like collect; not measured), then for each batch
size runs ONE consumer process (the real ``build_loop``; pinned with ``taskset -c CPU``, its own
fresh chDB path and consumer group) until ``count()`` on ``traffic`` equals N. The child also
times the loop's calls (consume, ClickHouse inserts, commits) so the report can say where the
time went; ``--profile`` adds a py-spy run (py-spy from PATH or ``--py-spy``) and a text summary.
Results: a table on stdout and JSON in ``--workdir``. Bounded everywhere: every wait has a deadline.

What is the consumer's own, and what is the engine's: ``--sinks chdb,null`` also runs every
(batch, rep) with the inserts swallowed (the Native block is still built and handed to
``raw_insert``, offsets are still committed, but nothing reaches chDB), interleaved with the real
runs. The null runs are counted by the consumer's own ``viz_consumer_events_total`` instead of
``count()`` in ClickHouse: they measure Kafka → decode → enrich → dedup → Native block → commit,
which is what stays in the consumer's process when ClickHouse is a server.

Before/after in one run: ``--variant NAME=PYTHONPATH:GC`` (repeatable) runs every (batch, rep)
once per variant, interleaved, against the same pre-produced topic. PYTHONPATH points the child
at another copy of ``viz/`` (empty: this tree; e.g. a copy taken before a change); GC is
``tuned`` (``viz.common.gctune.tune_gc()`` after startup, as ``viz serve consumer`` does) or
``default``. Without ``--variant`` one variant runs: this tree, ``tuned``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))
TOPIC = "bench.raw"
DLQ = "bench.dlq"
PARTITIONS = 12


# ---------------------------------------------------------------- parent: broker + producer


def produce(bootstrap: str, n: int, seed: int) -> dict[str, float]:
    from confluent_kafka import Producer
    from workload import Workload

    span_ms = 2 * 3600 * 1000  # events of the last two hours, in time order, as live ingest sees
    load = Workload(seed=seed, start_ms=int(time.time() * 1000) - span_ms, span_ms=span_ms)
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "compression.type": "lz4", "linger.ms": 50, "acks": "all",
                         "enable.idempotence": True, "batch.num.messages": 10000,
                         "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
                         "queue.buffering.max.kbytes": 1_000_000})
    failed: list[str] = []
    acked = [0]

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))
        else:
            acked[0] += 1

    t0 = time.monotonic()
    for sid, value in load.events(n):
        for _attempt in range(1000):
            try:
                producer.produce(TOPIC, key=sid.encode(), value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        else:
            raise RuntimeError("producer queue stayed full")
        producer.poll(0)
    left = producer.flush(120)
    if left or failed or acked[0] != n:
        raise RuntimeError(f"produce incomplete: {acked[0]} acked, {left} queued, {failed[:3]}")
    return {"produce_s": time.monotonic() - t0, "acked": acked[0]}


def topic_size(bootstrap: str) -> tuple[int, list[int]]:
    """Sum of high watermarks. Informational only: Tansu 0.6 reports the base offset of the last
    record batch as the high watermark, so this undercounts by up to one batch per partition."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-probe"})
    try:
        highs = [c.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)[1]
                 for p in range(PARTITIONS)]
    finally:
        c.close()
    return sum(highs), highs


def parse_variant(text: str) -> tuple[str, str, str]:
    name, _, rest = text.partition("=")
    pythonpath, _, gc_mode = rest.rpartition(":")
    if not name or gc_mode not in ("tuned", "default"):
        raise SystemExit(f"--variant {text!r}: expected NAME=PYTHONPATH:tuned|default")
    return name, pythonpath, gc_mode


def run_child(args: argparse.Namespace, bootstrap: str, batch: int, rep: int,
              profile: str | None, variant: tuple[str, str, str] = ("now", "", "tuned"),
              sink: str = "chdb") -> dict[str, Any]:
    name, pythonpath, gc_mode = variant
    chdb_path = Path(args.workdir) / f"chdb-{name}-{batch}-{rep}-{os.getpid()}"
    shutil.rmtree(chdb_path, ignore_errors=True)
    cmd = ["taskset", "-c", str(args.cpu), sys.executable, str(Path(__file__).resolve()),
           "--child", "--bootstrap", bootstrap, "--events", str(args.events),
           "--batch-size", str(batch), "--flush-interval-s", str(args.flush_interval_s),
           "--chdb", str(chdb_path), "--group", f"bench-{name}-{batch}-{rep}-{time.time_ns()}",
           "--timeout-s", str(args.timeout_s), "--gc", gc_mode, "--sink", sink]
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    if profile:
        # py-spy samples from the other core so it does not steal the consumer's.
        cmd = ["taskset", "-c", str(1 - args.cpu if args.cpu in (0, 1) else 0), args.py_spy,
               "record", "--native", "-r", "200", "-f", "raw", "-o", profile, "--"] + cmd
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s + 120,
                         check=False, env=env)
    shutil.rmtree(chdb_path, ignore_errors=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"consumer child failed ({out.returncode}): {out.stderr[-3000:]}")
    return {**json.loads(lines[-1]), "variant": name if sink == "chdb" else f"{name}+{sink}"}


# ---------------------------------------------------------------- child: one consumer process


class TimedConsumer:
    """Delegates to the Kafka consumer and adds up the time spent in consume() and commit()."""

    def __init__(self, inner: Any, totals: dict[str, float], marks: dict[str, float]) -> None:
        self._inner = inner
        self._totals = totals
        self._marks = marks

    def consume(self, *a: Any, **kw: Any) -> Any:
        t, cpu = time.perf_counter(), time.thread_time()
        msgs = self._inner.consume(*a, **kw)
        self._totals["consume_s"] += time.perf_counter() - t
        self._totals["consume_cpu_s"] += time.thread_time() - cpu
        self._totals["consume_calls"] += 1
        if msgs and "first_message" not in self._marks:
            self._marks["first_message"] = time.monotonic()
        return msgs

    def commit(self, *a: Any, **kw: Any) -> Any:
        t, cpu = time.perf_counter(), time.thread_time()
        try:
            return self._inner.commit(*a, **kw)
        finally:
            self._totals["commit_s"] += time.perf_counter() - t
            self._totals["commit_cpu_s"] += time.thread_time() - cpu

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedClient:
    """Delegates to clickhouse-connect and adds up the time of inserts (``insert`` and
    ``raw_insert``; the timing includes the serialisation done inside them) into each table."""

    def __init__(self, inner: Any, totals: dict[str, float], *, null: bool = False) -> None:
        self._inner = inner
        self._totals = totals
        self._null = null  # swallow inserts: measure the consumer without the engine

    def _timed(self, method: str, table: str, *a: Any, **kw: Any) -> Any:
        key = "insert_traffic_s" if table.endswith(".traffic") else "insert_ranges_s"
        t, cpu = time.perf_counter(), time.thread_time()
        try:
            return None if self._null else getattr(self._inner, method)(table, *a, **kw)
        finally:
            self._totals[key] += time.perf_counter() - t
            self._totals["insert_cpu_s"] += time.thread_time() - cpu

    def insert(self, table: str, *a: Any, **kw: Any) -> Any:
        return self._timed("insert", table, *a, **kw)

    def raw_insert(self, table: str, *a: Any, **kw: Any) -> Any:
        return self._timed("raw_insert", table, *a, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def child(args: argparse.Namespace) -> None:
    import clickhouse_connect
    from prometheus_client import CollectorRegistry

    from viz.common.clock import SystemClock
    from viz.consumer.runner import build_loop
    from viz.consumer.settings import ConsumerSettings
    from viz.embedded import chdb_dsn
    from viz.migrations.clickhouse import migrate_clickhouse

    dsn = chdb_dsn(args.chdb)
    settings = ConsumerSettings.from_env({
        "VIZ_KAFKA_BOOTSTRAP": args.bootstrap, "VIZ_KAFKA_TOPIC_RAW": TOPIC,
        "VIZ_KAFKA_TOPIC_DLQ": DLQ, "VIZ_KAFKA_PARTITIONS": str(PARTITIONS),
        "VIZ_CLICKHOUSE_DSN": dsn, "VIZ_CLICKHOUSE_DATABASE": "viz",
        "VIZ_CONSUMER_GROUP": args.group,
        "VIZ_CONSUMER_BATCH_MAX_EVENTS": str(args.batch_size),
        "VIZ_CONSUMER_FLUSH_INTERVAL_S": str(args.flush_interval_s),
    })
    client = clickhouse_connect.get_client(dsn=dsn)
    migrate_clickhouse(client, "viz")
    totals = {k: 0.0 for k in ("consume_s", "consume_calls", "commit_s", "insert_traffic_s",
                               "insert_ranges_s", "consume_cpu_s", "commit_cpu_s",
                               "insert_cpu_s")}
    marks: dict[str, float] = {}
    registry = CollectorRegistry()
    null = args.sink == "null"
    loop = build_loop(settings, TimedClient(client, totals, null=null), clock=SystemClock(),
                      registry=registry)
    loop.consumer = TimedConsumer(loop.consumer, totals, marks)
    if args.gc == "tuned":
        try:
            from viz.common.gctune import tune_gc
        except ImportError:  # a --variant tree from before 2026-11-28 10:40
            from viz.consumer.runner import tune_gc  # type: ignore[attr-defined,no-redef]

        tune_gc()
    import viz

    gc_counts0 = [g["collections"] for g in gc.get_stats()]

    def inserted() -> float:
        return registry.get_sample_value("viz_consumer_events_total") or 0.0

    def counted() -> int:
        if null:  # nothing reaches ClickHouse: the consumer's own count of inserted events
            return int(inserted())
        return int(client.query("SELECT count() FROM viz.traffic").result_rows[0][0])

    progress: list[tuple[float, float]] = []
    cpu0, thread_cpu0 = time.process_time(), time.thread_time()
    t_subscribe = time.monotonic()
    loop.subscribe()
    deadline = t_subscribe + args.timeout_s
    last_count_check = t_subscribe
    n = args.events
    while True:
        loop.step()
        now = time.monotonic()
        done = inserted()
        if not progress or progress[-1][1] != done:
            progress.append((now, done))
        if done >= n or now - last_count_check > 5.0:
            last_count_check = now
            if counted() >= n:
                break
        if now > deadline:
            raise SystemExit(f"timeout: {counted()} of {n} events in ClickHouse")
    t_end = time.monotonic()
    cpu = time.process_time() - cpu0
    thread_cpu = time.thread_time() - thread_cpu0
    final = counted()
    loop.shutdown()

    def rate_between(lo: float, hi: float) -> float:
        a = next(p for p in progress if p[1] >= lo * n)
        b = next(p for p in progress if p[1] >= hi * n)
        return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")

    first = marks.get("first_message", t_subscribe)
    flush_hist = [s for m in registry.collect() if m.name == "viz_consumer_flush_seconds"
                  for s in m.samples if s.name.endswith("_count")]
    print(json.dumps({
        "batch_size": args.batch_size, "events": n, "counted": final,
        "join_s": first - t_subscribe,
        "wall_s": t_end - first,
        "wall_incl_join_s": t_end - t_subscribe,
        "ev_per_s": n / (t_end - first),
        "ev_per_s_incl_join": n / (t_end - t_subscribe),
        "ev_per_s_steady_10_90": rate_between(0.1, 0.9),
        "cpu_s": cpu, "ev_per_cpu_s": n / cpu,
        # The loop's own thread: Python, and chDB's insert work (done in the calling thread);
        # not librdkafka's threads nor chDB's background merges. "rest" = outside the timed
        # consume/insert/commit calls: decode, enrichment, batching, serialisation done before
        # the insert call (native_block now; the zip(*rows) transpose before), count() checks.
        "thread_cpu_s": thread_cpu,
        "rest_cpu_s": thread_cpu - totals["consume_cpu_s"] - totals["insert_cpu_s"]
        - totals["commit_cpu_s"],
        "flushes": int(flush_hist[0].value) if flush_hist else 0,
        "sink": args.sink, "gc": args.gc, "gc_collections": [g["collections"] - c0 for g, c0
                                           in zip(gc.get_stats(), gc_counts0, strict=True)],
        "viz": str(Path(viz.__file__).parent),
        **totals,
    }))


# ---------------------------------------------------------------- profile summary


def summarise_profile(raw_path: Path, top: int = 25) -> str:
    """Self and inclusive sample shares from py-spy's collapsed stacks, grouped by step."""
    self_counts: dict[str, int] = {}
    incl: dict[str, int] = {}
    steps = {
        "librdkafka consume (Consumer.consume)": ("consume (",),
        "decode_envelope": ("decode_envelope",),
        "enrich: agent() (ua, cached)": ("agent (viz/consumer/enrich.py",),
        "enrich: attribute() (referrer/UTM)": ("attribute (viz/consumer/enrich.py",),
        "event_row total (decode+enrich+row)": ("event_row (",),
        "SeenIds.seen (dedup)": ("seen (viz/consumer/batch.py",),
        "writer.write (ranges + traffic inserts)": ("write (viz/consumer/writer.py",),
        "  clickhouse-connect insert (incl. chDB)": ("insert (clickhouse_connect",),
        "Kafka commit": ("commit (",),
        "ClickHouse count() checks (bench)": ("counted (",),
    }
    step_counts = dict.fromkeys(steps, 0)
    total = 0
    for line in raw_path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_s)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        self_counts[leaf] = self_counts.get(leaf, 0) + count
        for name in set(frames):
            incl[name] = incl.get(name, 0) + count
        for step, needles in steps.items():
            if any(needle in stack for needle in needles):
                step_counts[step] += count
    out = [f"samples: {total}", "", "share of samples by step (inclusive):"]
    for step, c in step_counts.items():
        out.append(f"  {100 * c / max(total, 1):5.1f}%  {step}")
    out += ["", f"top {top} functions by self samples:"]
    for name, c in sorted(self_counts.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {100 * c / max(total, 1):5.1f}%  {name[:150]}")
    return "\n".join(out)


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", default="1000,5000,20000")
    parser.add_argument("--reps", type=int, default=2, help="runs per batch size (median quoted)")
    parser.add_argument("--cpu", type=int, default=1, help="core the consumer is pinned to")
    parser.add_argument("--flush-interval-s", type=float, default=1.0,
                        help="VIZ_CONSUMER_FLUSH_INTERVAL_S (default 5 s only lengthens the tail)")
    parser.add_argument("--profile", action="store_true",
                        help="one extra py-spy run (the first batch size, the last sink)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "/tmp/pyspy-venv/bin/py-spy")
    parser.add_argument("--workdir", default="/tmp/viz-bench-consumer")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout-s", type=float, default=900.0)
    # child mode
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--chdb", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    parser.add_argument("--gc", default="tuned", choices=("tuned", "default"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--sinks", default="chdb",
                        help="chdb, null or chdb,null (interleaved): null swallows the inserts")
    parser.add_argument("--sink", default="chdb", choices=("chdb", "null"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=PYTHONPATH:tuned|default, repeatable (see the docstring)")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from viz.common.settings import KafkaSettings
    from viz.embedded import EmbeddedKafka
    from viz.migrations.kafka import ensure_topics

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    broker = EmbeddedKafka(workdir / "kafka")
    broker.start()
    results: list[dict[str, Any]] = []
    try:
        ensure_topics(KafkaSettings(bootstrap=broker.bootstrap, topic_raw=TOPIC, topic_dlq=DLQ,
                                    partitions=PARTITIONS))
        produced = produce(broker.bootstrap, args.events, args.seed)
        size, highs = topic_size(broker.bootstrap)
        print(f"produced {produced['acked']} events (all acknowledged) in "
              f"{produced['produce_s']:.1f} s (not measured); high watermarks {highs} "
              f"(sum {size}; Tansu undercounts by the last batch)", flush=True)
        variants = [parse_variant(v) for v in args.variant] or [("now", "", "tuned")]
        for batch in [int(b) for b in args.batch_sizes.split(",")]:
            for rep in range(args.reps):
                for variant, sink in [(v, k) for v in variants for k in args.sinks.split(",")]:
                    res = run_child(args, broker.bootstrap, batch, rep, None, variant, sink)
                    results.append(res)
                    print(f"{res['variant']} batch {batch} rep {rep}: "
                          f"{1e6 / res['ev_per_cpu_s']:.1f} CPU-µs/ev (loop thread "
                          f"{1e6 * res['thread_cpu_s'] / res['events']:.1f}, rest "
                          f"{1e6 * res['rest_cpu_s'] / res['events']:.1f}), "
                          f"gc {res['gc_collections']}, "
                          f"{res['ev_per_s']:,.0f} ev/s "
                          f"(steady {res['ev_per_s_steady_10_90']:,.0f}, incl. join "
                          f"{res['ev_per_s_incl_join']:,.0f}; {res['ev_per_cpu_s']:,.0f} "
                          f"ev/CPU-s) consume {res['consume_s']:.1f}s insert "
                          f"{res['insert_traffic_s']:.1f}s ranges {res['insert_ranges_s']:.1f}s "
                          f"commit {res['commit_s']:.1f}s of {res['wall_s']:.1f}s", flush=True)
        if args.profile:
            batch, sink = int(args.batch_sizes.split(",")[0]), args.sinks.split(",")[-1]
            raw = workdir / f"profile-batch{batch}-{sink}.txt"
            res = run_child(args, broker.bootstrap, batch, 99, str(raw), variants[0], sink)
            res["profiled"] = True
            results.append(res)
            summary = summarise_profile(raw)
            (workdir / "profile-summary.txt").write_text(summary + "\n")
            print(f"profiled run (py-spy, batch {batch}, {sink}): {res['ev_per_s']:,.0f} ev/s\n"
                  f"{summary}",
                  flush=True)
    finally:
        broker.stop()
        (workdir / "results.json").write_text(json.dumps(results, indent=1))

    print("\n| variant | batch | runs | CPU-µs/ev median [min–max] | ev/CPU-s | "
          "loop thread CPU-µs/ev | of it in inserts | in consume | rest (Python) | "
          "ev/s (first msg → count = N) median [min–max] | steady 10–90 % | "
          "join s | consume % | insert traffic % | ranges+commit % |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = list(dict.fromkeys(r["variant"] for r in results if not r.get("profiled")))
    for batch, name in [(int(b), v) for b in args.batch_sizes.split(",") for v in names]:
        rs = [r for r in results if r["batch_size"] == batch and r["variant"] == name
              and not r.get("profiled")]
        if not rs:
            continue
        med = statistics.median

        def pct(key: str, rows: list[dict[str, Any]] = rs) -> float:
            return statistics.median(100 * r[key] / r["wall_s"] for r in rows)

        us = [1e6 / r["ev_per_cpu_s"] for r in rs]

        def per_event(key: str, rows: list[dict[str, Any]] = rs) -> str:
            values = [1e6 * r[key] / r["events"] for r in rows if key in r]
            return f"{statistics.median(values):.1f}" if values else "–"

        print(f"| {name} | {batch} | {len(rs)} | {med(us):.1f} [{min(us):.1f}–{max(us):.1f}] | "
              f"{med(r['ev_per_cpu_s'] for r in rs):,.0f} | {per_event('thread_cpu_s')} | "
              f"{per_event('insert_cpu_s')} | {per_event('consume_cpu_s')} | "
              f"{per_event('rest_cpu_s')} | "
              f"{med(r['ev_per_s'] for r in rs):,.0f} "
              f"[{min(r['ev_per_s'] for r in rs):,.0f}–{max(r['ev_per_s'] for r in rs):,.0f}] | "
              f"{med(r['ev_per_s_steady_10_90'] for r in rs):,.0f} | "
              f"{med(r['join_s'] for r in rs):.1f} | "
              f"{pct('consume_s'):.0f} | {pct('insert_traffic_s'):.0f} | "
              f"{med(100 * (r['insert_ranges_s'] + r['commit_s']) / r['wall_s'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
