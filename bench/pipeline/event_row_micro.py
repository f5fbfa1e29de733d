"""Per-event cost of the consumer's ``event_row`` and its parts, and a cached-attribution candidate.

    taskset -c 1 .venv/bin/python bench/pipeline/event_row_micro.py [--events 200000] [--reps 5]

Times (µs/event, median of reps, warm lru caches as in a running consumer): decode_envelope,
agent(), attribute(), the whole ``event_row``, and ``event_row`` with ``attribute`` memoised on
(query string, referrer) — the candidate speed-up; it checks both give identical rows.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import lru_cache
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
    from viz.consumer.enrich import agent, attribute

    load = Workload(seed=3, start_ms=int(time.time() * 1000) - 3_600_000, span_ms=3_600_000)
    values = [v for _, v in load.events(args.events)]
    envs = [decode_envelope(v) for v in values]
    paths = [e.p.partition("#")[0] for e in envs]

    cached_attribute = lru_cache(maxsize=65_536)(
        lambda query, referrer: attribute(query, referrer))

    def event_row_candidate(msg_value: bytes, partition: int, offset: int) -> tuple[str, list[Any]]:
        env = decode_envelope(msg_value)
        ua = agent(env.ua)
        path, _, _ = env.p.partition("#")
        path, sep, query = path.partition("?")
        attr = cached_attribute(sep + query, env.r or "")
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
            lambda: [attribute(p, e.r or "") for p, e in zip(paths, envs, strict=True)],
        "event_row as is": lambda: [runner.event_row(v, 0, i) for i, v in enumerate(values)],
        "event_row, attribute memoised on (query, referrer)":
            lambda: [event_row_candidate(v, 0, i) for i, v in enumerate(values)],
    }
    a = [runner.event_row(v, 0, i)[1] for i, v in enumerate(values)]
    b = [event_row_candidate(v, 0, i)[1] for i, v in enumerate(values)]
    print(f"compiled envelope: {COMPILED}; candidate rows identical: {a == b}; "
          f"attribution cache {cached_attribute.cache_info()}")
    print("| step | µs/event (median) | min |")
    print("|---|---:|---:|")
    for name, fn in cases.items():
        times = []
        for _ in range(args.reps):
            t = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t) / len(values) * 1e6)
        print(f"| {name} | {statistics.median(times):.2f} | {min(times):.2f} |")


if __name__ == "__main__":
    main()
