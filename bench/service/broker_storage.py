"""The embedded broker's storages side by side: produce latency, throughput, memory.

For each repetition and each storage in turn (interleaved, so machine noise hits all alike):
starts ``EmbeddedKafka`` on a fresh data directory, creates a topic, then measures

* single-message produce latency with ``acks=all``: one message, wait for its delivery report,
  next (``linger.ms=0``), ``--single`` times after 100 warm-up messages;
* batched throughput: ``--batch`` messages of ``--size`` bytes produced as fast as the client
  queues them (``linger.ms=5``, lz4, ``acks=all``), timed until the last delivery report;
* resident memory (RSS) of Tansu and of SeaweedFS: idle after start, and after the load;

and stops it. Storages: ``memory`` (Tansu's memory://), ``s3`` (Tansu on the embedded
SeaweedFS) and ``s3-fsync`` (the same with SeaweedFS fsyncing every write and a SQLite filer
store, see ``viz/embedded/seaweedfs.py``).

    .venv/bin/python bench/service/broker_storage.py --reps 3
    .venv/bin/python bench/service/broker_storage.py --storages memory,s3 --json out.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def rss_mb(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def broker_for(storage: str, data_dir: Path) -> Any:
    from viz.embedded import EmbeddedKafka

    if storage == "memory":
        return EmbeddedKafka(data_dir, storage="memory")
    if storage == "s3":
        return EmbeddedKafka(data_dir, storage="s3")
    if storage == "s3-fsync":
        return EmbeddedKafka(data_dir, storage="s3", fsync=True)
    raise SystemExit(f"unknown storage {storage!r} (memory, s3, s3-fsync)")


def measure(storage: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    data_dir = Path(tempfile.mkdtemp(prefix=f"{storage}-", dir=root))
    broker = broker_for(storage, data_dir)
    t0 = time.monotonic()
    broker.start()
    out: dict[str, Any] = {"storage": storage, "start_s": round(time.monotonic() - t0, 2)}
    weed_pid = broker.seaweedfs.pid if broker.seaweedfs is not None else None
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for topic, parts in (("single", 1), ("batched", 12)):
            admin.create_topics([NewTopic(topic, parts, 1)])[topic].result(15)
        time.sleep(1.0)
        out["rss_idle_mb"] = {"tansu": rss_mb(broker.broker_pid), "weed": rss_mb(weed_pid)}

        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                             "linger.ms": 0, "enable.idempotence": False})
        payload = b"x" * args.size
        lat: list[float] = []
        done: list[object] = []
        for i in range(100 + args.single):
            done.clear()
            t = time.perf_counter()
            producer.produce("single", value=payload, on_delivery=lambda e, m: done.append(e))
            while not done:
                producer.poll(0.05)
            if done[0] is not None:
                raise RuntimeError(f"delivery failed: {done[0]}")
            if i >= 100:
                lat.append((time.perf_counter() - t) * 1e3)
        out["single_p50_ms"] = round(statistics.median(lat), 3)
        out["single_p99_ms"] = round(pct(lat, 0.99), 3)

        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all",
                             "linger.ms": 5, "compression.type": "lz4",
                             "queue.buffering.max.messages": 1_000_000})
        failed = 0

        def report(err: object, _msg: object) -> None:
            nonlocal failed
            if err is not None:
                failed += 1

        t = time.perf_counter()
        for i in range(args.batch):
            while True:
                try:
                    producer.produce("batched", key=str(i % 64), value=payload,
                                     on_delivery=report)
                    break
                except BufferError:
                    producer.poll(0.01)
        left = producer.flush(60)
        elapsed = time.perf_counter() - t
        if left or failed:
            raise RuntimeError(f"batched: {left} unflushed, {failed} failed")
        out["batched_msgs_per_s"] = round(args.batch / elapsed)
        out["rss_after_mb"] = {"tansu": rss_mb(broker.broker_pid), "weed": rss_mb(weed_pid)}
        out["disk_mb"] = round(sum(f.stat().st_size for f in data_dir.rglob("*")
                                   if f.is_file()) / 2**20, 1)
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--storages", default="memory,s3,s3-fsync")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--single", type=int, default=1000, help="single-message produces per rep")
    p.add_argument("--batch", type=int, default=200_000, help="messages in the batched run")
    p.add_argument("--size", type=int, default=300, help="message bytes")
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    storages = [s.strip() for s in args.storages.split(",") if s.strip()]
    root = Path(tempfile.mkdtemp(prefix="viz-broker-storage-"))
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in storages}
    try:
        for rep in range(1, args.reps + 1):
            for storage in storages:
                r = measure(storage, root, args)
                runs[storage].append(r)
                print(f"rep {rep} {json.dumps(r)}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def med(storage: str, key: str, sub: str | None = None) -> float | None:
        vals = [r[key][sub] if sub else r[key] for r in runs[storage]]
        known = [v for v in vals if v is not None]
        return round(statistics.median(known), 2) if known else None

    lines = ["| storage | single produce p50 / p99 ms (acks=all) | batched msg/s | "
             "RSS idle MB: Tansu / weed | RSS after load MB: Tansu / weed | start s |",
             "|---|---|---|---|---|---|"]
    for s in storages:
        lines.append(
            f"| {s} | {med(s, 'single_p50_ms')} / {med(s, 'single_p99_ms')} "
            f"({', '.join(str(r['single_p50_ms']) for r in runs[s])}) "
            f"| {med(s, 'batched_msgs_per_s'):.0f} "
            f"({', '.join(str(r['batched_msgs_per_s']) for r in runs[s])}) "
            f"| {med(s, 'rss_idle_mb', 'tansu')} / {med(s, 'rss_idle_mb', 'weed')} "
            f"| {med(s, 'rss_after_mb', 'tansu')} / {med(s, 'rss_after_mb', 'weed')} "
            f"| {med(s, 'start_s')} |")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
