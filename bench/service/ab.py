"""A/B of collect builds on one stack: alternating fixed-rate runs, server CPU per request.

``run.py`` compares servers minutes apart; this compares two or more builds of collect (or
collect and the floor) seconds apart on one shared stack, so a change's effect is not lost in
the machine's noise. Start a stack first, then name what to compare:

    .venv/bin/python bench/service/run.py --serve-for 3600 > /tmp/serve.json &
    .venv/bin/python bench/service/ab.py /tmp/serve.json --rate 9000 --reps 4 \\
        --extra floor --extra before:/tmp/collect-before

The stack's own collect is always the first contestant ("collect"). ``--extra floor`` adds
``floor_collect.py``; ``--extra NAME:DIR`` adds a collect run from another checkout (``DIR``,
e.g. ``git worktree add /tmp/collect-before HEAD~1`` with its extensions built), with the stack's
environment. Every contestant is pinned to CPU 1 and the generator to CPU 0. Its CPU time is
read from ``/proc`` (``run.tree_cpu_s``) over the measured seconds. ``--perf NAME`` records that
contestant with ``perf record -g`` instead of sleeping (``perf report -i /tmp/ab-perf-NAME.data``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run as R  # noqa: E402


def listening_pid(port: int) -> int:
    out = subprocess.check_output(["ss", "-ltnpH", f"sport = :{port}"], text=True)
    return int(out.split("pid=")[1].split(",")[0])


def start(extra: str, env: dict[str, str], sid: str, logs: Path) -> tuple[str, int, subprocess.Popen[bytes]]:
    from viz.embedded import free_port

    port = free_port()
    if extra == "floor":
        name, cwd = "floor", str(R.REPO)
        argv = [sys.executable, str(HERE / "floor_collect.py"), "--port", str(port),
                "--bootstrap", env["VIZ_KAFKA_BOOTSTRAP"], "--key", sid]
    else:
        name, _, cwd = extra.partition(":")
        if not cwd:
            raise SystemExit(f"--extra {extra!r}: floor or NAME:DIR")
        argv = [sys.executable, "-m", "viz", "serve", "collect"]
    with (logs / f"ab-{name}.log").open("wb") as log:
        proc = subprocess.Popen(["taskset", "-c", "1", *argv], cwd=cwd, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                env={**env, "VIZ_COLLECT_PORT": str(port)})
    return name, port, proc


def measure(name: str, port: int, pid: int, sid: str, args: argparse.Namespace,
            rep: int) -> dict[str, Any]:
    if name == "floor":  # it checks nothing: any well-formed body will do
        bid, token = "x" * 22, "0" * 64
    else:
        bid, token = R.init_token(port, sid)
    bodies = Path(f"/tmp/ab-bodies-{port}.txt")
    site = type("Site", (), {"sid": sid})()
    R.write_bodies(bodies, site, bid, token, count=4096, events=args.events,  # type: ignore[arg-type]
                   tag=f"{name}-{rep}-{time.time_ns()}")
    argv = R.loadgen_argv(port, bodies, rate=args.rate, connections=200 if args.rate else 64,
                          duration=args.duration, warmup=2, cpu="0", label=name)
    gen = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    time.sleep(2.0)  # the warm-up
    c0, t0 = R.tree_cpu_s(pid), time.monotonic()
    if args.perf == name:
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", str(pid),
                        "-o", f"/tmp/ab-perf-{name}.data", "--", "sleep",
                        str(args.duration - 1)], capture_output=True, check=False)
    else:
        time.sleep(args.duration - 0.3)
    c1, t1 = R.tree_cpu_s(pid), time.monotonic()
    result: dict[str, Any] = json.loads(gen.communicate()[0])
    result["server_cores"] = (c1 - c0) / (t1 - t0)
    result["cpu_us_per_req"] = 1e6 * (c1 - c0) / (result["achieved_rps"] * (t1 - t0))
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("serve_json", type=Path, help="the first line run.py --serve-for printed")
    p.add_argument("--rate", type=float, default=9000, help="req/s, 0 for saturation")
    p.add_argument("--reps", type=int, default=4)
    p.add_argument("--duration", type=float, default=8)
    p.add_argument("--events", type=int, default=1, help="events per request")
    p.add_argument("--extra", action="append", default=[], help="floor, or NAME:DIR")
    p.add_argument("--perf", metavar="NAME", help="perf record this contestant")
    args = p.parse_args()
    info = json.loads(args.serve_json.read_text().splitlines()[0])
    stack_port = int(info["host"].rsplit(":", 1)[1])
    stack_pid = listening_pid(stack_port)
    env = dict(line.split("=", 1) for line in
               Path(f"/proc/{stack_pid}/environ").read_text().split("\0") if "=" in line)
    contestants: list[tuple[str, int, int]] = [("collect", stack_port, stack_pid)]
    started: list[subprocess.Popen[bytes]] = []
    results: dict[str, list[dict[str, Any]]] = {"collect": []}
    try:
        for extra in args.extra:
            name, port, proc = start(extra, env, info["sid"], Path(info["logs"]))
            started.append(proc)
            R.wait_http(f"http://127.0.0.1:{port}/healthz", None)
            contestants.append((name, port, proc.pid))
            results[name] = []
        for rep in range(args.reps):
            for name, port, pid in contestants:
                r = measure(name, port, pid, info["sid"], args, rep)
                results[name].append(r)
                lat = r["latency_ms"]
                print(f"{name:12s} rep {rep}: {r['achieved_rps']:8.0f} req/s  "
                      f"{r['server_cores']:.2f} cores  {r['cpu_us_per_req']:6.1f} µs/req  "
                      f"p50 {lat['p50']:.2f} p99 {lat['p99']:.2f} ms  non-2xx {r['non_2xx']}  "
                      f"unfinished {r['unfinished']}", flush=True)
    finally:
        for proc in started:
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in started:
            proc.wait(30)
    for name, runs in results.items():
        us = [r["cpu_us_per_req"] for r in runs]
        if us:
            print(f"{name:12s} µs/req median {statistics.median(us):.1f} (min {min(us):.1f}); "
                  f"each {' '.join(f'{x:.1f}' for x in us)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
