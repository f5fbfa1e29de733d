"""In-process A/B of collect's request path: no sockets, no generator, CPU time per request.

Drives a connection's ``data_received`` on 64 null transports with realistic single-event
``POST /collect`` requests (each connection sends its next request when its answer is written)
through a real :class:`~viz.collect.app.CollectApp`, alternating repetitions of three
contestants in one process so that machine noise hits them alike:

* ``python``: the Python connection (``HttpProtocol``) and request path, no compiled lane;
* ``lane``: the Python connection, with the compiled ``POST /collect`` lane;
* ``compiled``: the compiled connection (``HttpConnection``) with the lane, as served.

With ``--kafka`` the ``lane`` and ``compiled`` sinks send through the compiled ``Sender``, the
``python`` one through ``KafkaSink.send_to``.
 The sink is
either a null one (the report is scheduled at once: the request path alone) or a real
:class:`~viz.collect.sinks.KafkaSink` to an embedded broker (``--kafka``, started here; the
producer's threads then count too).

    .venv/bin/python bench/service/inproc.py                  # null sink, 7 pairs
    .venv/bin/python bench/service/inproc.py --kafka --reps 5

Prints the median CPU µs per request of each contestant and its per-repetition ratio to
``python``, and the process's resident memory before and after the measured requests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from viz import _fast  # noqa: E402
from viz.collect.app import CollectApp, CollectDeps  # noqa: E402
from viz.collect.metrics import CollectMetrics  # noqa: E402
from viz.collect.protocol import HttpProtocol, ServerState, connection_class  # noqa: E402
from viz.collect.settings import CollectSettings  # noqa: E402
from viz.collect.sinks import KafkaSink, Report  # noqa: E402
from viz.common.clock import SystemClock  # noqa: E402
from viz.common.site_directory import SiteDirectory  # noqa: E402
from viz.common.sites import SiteRecord  # noqa: E402

SID, TID, BID = "site-bench", "tenant-bench", "AAAAAAAAAAAAAAAAAAAAAA"
KEY = bytes(range(32))
ORIGIN = b"https://www.bench.example"
UA = (b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      b"Chrome/126.0 Safari/537.36")
CONNECTIONS = 64


class NullSink:
    """Acknowledges every send on the next loop turn (the request path alone)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None

    def send_to(self, key: bytes, values: Sequence[bytes], report: Report) -> None:
        self._loop.call_soon(report, None)  # type: ignore[union-attr]

    def ready(self) -> bool:
        return True

    def queued(self) -> int:
        return 0

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        return None


class _Fetcher:
    def __init__(self, site: SiteRecord) -> None:
        self.site = site

    async def fetch(self, sid: str) -> SiteRecord | None:
        return self.site if sid == self.site.sid else None


class _Transport(asyncio.Transport):
    """Counts answers; each answer makes its connection send the next request."""

    def __init__(self, run: _Run) -> None:
        super().__init__()
        self.run = run
        self.protocol: HttpProtocol | None = None

    def write(self, data: Any) -> None:
        self.run.answered(self)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 50_000) if name == "peername" else default

    def close(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


class _Run:
    def __init__(self, loop: asyncio.AbstractEventLoop, requests: list[bytes]) -> None:
        self.loop = loop
        self.requests = requests
        self.sent = self.done = self.total = 0
        self.finished: asyncio.Future[None] | None = None

    def send(self, transport: _Transport) -> None:
        self.sent += 1
        transport.protocol.data_received(  # type: ignore[union-attr]
            self.requests[self.sent % len(self.requests)])

    def answered(self, transport: _Transport) -> None:
        self.done += 1
        if self.sent < self.total:
            self.loop.call_soon(self.send, transport)
        elif self.done >= self.total and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    async def go(self, transports: list[_Transport], total: int) -> None:
        self.sent = self.done = 0
        self.total = total
        self.finished = self.loop.create_future()
        for transport in transports:
            self.send(transport)
        await self.finished


def requests(now_ms: int) -> list[bytes]:
    token = _fast.TokenSigner([KEY]).issue(BID, TID, now_ms / 1000)
    out = []
    for i in range(4096):
        body = json.dumps({"sid": SID, "bid": BID, "token": token, "events": [
            {"id": f"t{now_ms}-{i}", "t": "pageview", "p": f"/article/{i * 7 % 500}",
             "r": "https://news.example/", "ts": now_ms, "title": "A benchmark article"}]},
            separators=(",", ":")).encode()
        out.append(b"POST /collect HTTP/1.1\r\nHost: 127.0.0.1:3001\r\n"
                   b"Content-Type: text/plain;charset=UTF-8\r\nUser-Agent: " + UA
                   + b"\r\nOrigin: " + ORIGIN + b"\r\nReferer: https://www.bench.example/a\r\n"
                   b"Content-Length: %d\r\n\r\n" % len(body) + body)
    return out


CONTESTANTS = ("python", "lane", "compiled")


async def contestant(name: str, settings: CollectSettings, sink: Any,
                     reqs: list[bytes]) -> tuple[_Run, list[_Transport], CollectApp]:
    clock = SystemClock()
    site = SiteRecord(sid=SID, tid=TID, name=SID, domains=("bench.example",),
                      features={"collect": True}, cmp_config={}, recs_config={}, version=1,
                      secret_key=KEY)
    directory = SiteDirectory(_Fetcher(site), clock=clock, ttl_s=3600, max_stale_s=3600,
                              negative_ttl_s=30)
    await directory.get(SID)
    app = CollectApp(settings, CollectDeps(directory, sink, clock, CollectMetrics()),
                     lane=name != "python")
    connection = connection_class() if name == "compiled" else HttpProtocol
    if name != "python" and (app.lane is None or connection_class() is HttpProtocol):
        raise SystemExit("the lane is not built: python setup.py build_ext --inplace")
    loop = asyncio.get_running_loop()
    state = ServerState(date_header=b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n")
    run = _Run(loop, reqs)
    transports = []
    for _ in range(CONNECTIONS):
        transport = _Transport(run)
        transport.protocol = connection(app, state, loop)
        transport.protocol.connection_made(transport)
        transports.append(transport)
    return run, transports, app


def _rss_kb() -> int:
    """This process's resident set (kB), to see that a long run does not grow it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _ready(sink: KafkaSink) -> None:
    """Wait (at most 30 s) for the sink's first metadata answer."""
    deadline = time.monotonic() + 30
    while not sink.ready():
        if time.monotonic() > deadline:
            raise SystemExit("the embedded broker did not answer in 30 s")
        await asyncio.sleep(0.05)  # noqa: ASYNC110 - the sink offers no event to wait on


async def main(args: argparse.Namespace) -> None:
    environ = {"VIZ_KAFKA_BOOTSTRAP": args.bootstrap or "127.0.0.1:1",
               "VIZ_SERVICE_TOKEN": "s" * 32, "VIZ_COLLECT_RATE_LIMIT_PER_S": "0"}
    settings = CollectSettings.from_env(environ)
    reqs = requests(int(time.time() * 1000))
    contestants = {}
    for name in CONTESTANTS:
        sink: Any = (KafkaSink(settings.kafka, settings.producer, compiled=name != "python")
                     if args.bootstrap else NullSink())
        await sink.start()
        if args.bootstrap:
            await _ready(sink)
        contestants[name] = (*await contestant(name, settings, sink, reqs), sink)
    per_req: dict[str, list[float]] = {name: [] for name in contestants}
    total = args.requests
    for run, transports, _, _ in contestants.values():
        await run.go(transports, 2_000)  # warm-up: caches, allocator, the producer's batches
    rss_before = _rss_kb()
    for _ in range(args.reps):
        for name, (run, transports, _, _) in contestants.items():
            c0 = time.process_time()
            await run.go(transports, total)
            per_req[name].append((time.process_time() - c0) / total * 1e6)
    for name, (_, _, app, sink) in contestants.items():
        answered = app.metrics.requests.get(("collect", 204), 0)
        if answered < total * args.reps:
            raise SystemExit(f"{name}: only {answered} requests answered 204")
        await sink.close()
    print(f"process RSS after warm-up {rss_before / 1024:.1f} MiB, after "
          f"{args.reps * total * len(contestants):,} requests {_rss_kb() / 1024:.1f} MiB")
    for name, values in per_req.items():
        ratios = [v / py for v, py in zip(values, per_req["python"], strict=True)]
        print(f"{name:>8}: {statistics.median(values):6.1f} µs/req, "
              f"ratio to python {statistics.median(ratios):.2f}  "
              f"(each: {' '.join(f'{v:.1f}' for v in values)})")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--requests", type=int, default=20_000, help="per repetition")
    parser.add_argument("--kafka", action="store_true",
                        help="a real KafkaSink to an embedded broker started here")
    parser.add_argument("--cpu", type=int, default=1, help="pin this process to a CPU")
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    args.bootstrap = None
    if not args.kafka:
        uvloop.run(main(args))
        return
    from viz.common.settings import KafkaSettings
    from viz.embedded import EmbeddedKafka
    from viz.migrations.kafka import ensure_topics

    with tempfile.TemporaryDirectory(prefix="viz-inproc-") as tmp:
        # The broker runs on the other CPU (it inherits this process's affinity when started).
        os.sched_setaffinity(0, {1 - args.cpu})
        kafka = EmbeddedKafka(Path(tmp) / "kafka")
        kafka.start()
        os.sched_setaffinity(0, {args.cpu})
        try:
            ensure_topics(KafkaSettings(bootstrap=kafka.bootstrap, topic_raw="viz.traffic.raw",
                                        topic_dlq="viz.traffic.dlq", partitions=12))
            args.bootstrap = kafka.bootstrap
            uvloop.run(main(args))
        finally:
            kafka.stop()

if __name__ == "__main__":
    cli()
