"""Per-event cost of the consumer's ``event_row`` and its parts, before and after caching attribution.

    taskset -c 1 .venv/bin/python bench/pipeline/event_row_micro.py [--events 200000] [--reps 5]

Times (µs/event, median of reps, warm lru caches as in a running consumer): decode_envelope,
agent(), attribute() uncached, the whole ``event_row`` as it is now (attribution memoised on
(query string, referrer)), and the previous ``event_row`` (attribute() recomputed from the full
path for every event), reconstructed here; it checks both give identical rows. The two
``event_row`` cases alternate, so load changes on a shared machine hit both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    from workload import Workload

    from viz._fast.envelope import COMPILED, decode_envelope
    from viz.consumer import runner
    from viz.consumer.enrich import agent, attribution

    load = Workload(seed=3, start_ms=int(time.time() * 1000) - 3_600_000, span_ms=3_600_000)
    values = [v for _, v in load.events(args.events)]
    envs = [decode_envelope(v) for v in values]
    paths = [e.p.partition("#")[0] for e in envs]

    uncached = attribution.__wrapped__  # what attribute() computed for every event before

    def event_row_previous(msg_value: bytes, partition: int, offset: int) -> tuple[str, list[Any]]:
        env = decode_envelope(msg_value)
        ua = agent(env.ua)
        path, _, _ = env.p.partition("#")
        attr = uncached(path.partition("?")[2], env.r or "")
        path = path.partition("?")[0]
        row = [
            env.eid, env.sid, env.tid, min(max(env.ts, 0), runner._MAX_TS_MS),
            min(max(env.cts, 0), runner._MAX_TS_MS), env.t, path, env.title or "", env.n or "",
            env.bid or "", env.tier, env.r or "", attr.referrer_host, attr.medium, attr.source,
            attr.utm_source, attr.utm_medium, attr.utm_campaign, attr.utm_term, attr.utm_content,
            ua.browser, ua.browser_version, ua.os, ua.device, int(ua.is_bot),
            min(max(env.ms or 0, 0), 2**32 - 1), env.h or "", partition, offset,
        ]
        return env.eid, row

    cases = {
        "decode_envelope": lambda: [decode_envelope(v) for v in values],
        "agent() (lru-cached)": lambda: [agent(e.ua) for e in envs],
        "attribute() (uncached: urlsplit + parse_qsl per event)":
            lambda: [uncached(p.partition("?")[2], e.r or "")
                     for p, e in zip(paths, envs, strict=True)],
        "event_row before (attribute() per event on the full path)":
            lambda: [event_row_previous(v, 0, i) for i, v in enumerate(values)],
        "event_row now (attribution cached on (query, referrer))":
            lambda: [runner.event_row(v, 0, i) for i, v in enumerate(values)],
    }
    attribution.cache_clear()
    a = [event_row_previous(v, 0, i)[1] for i, v in enumerate(values)]
    b = [runner.event_row(v, 0, i)[1] for i, v in enumerate(values)]
    print(f"compiled envelope: {COMPILED}; rows identical before/now: {a == b}; "
          f"attribution cache after one pass {attribution.cache_info()}")
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.reps):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t) / len(values) * 1e6)
    print("| step | µs/event (median) | min |")
    print("|---|---:|---:|")
    for name, ts in times.items():
        print(f"| {name} | {statistics.median(ts):.2f} | {min(ts):.2f} |")


if __name__ == "__main__":
    main()
