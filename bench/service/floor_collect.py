"""The floor of the collect contract: HTTP in, one Kafka message out, 204 after its report.

What every design that keeps SPEC §5's promise ("204 only after the broker acknowledged the
event") has to do on one core, and nothing else: httptools on uvloop (the same stack as
viz-collect), the body produced as it arrived (no JSON, no token, no validation, no envelope,
no CORS, no metrics), the same producer settings, ``poll(0)`` every millisecond on the loop
while a request waits, and the 204 written from the delivery callback. With ``--no-wait`` it
answers right after ``produce`` instead: no durability at all, the shape of the "raw httptools
server with a produce" the collect issue quotes as a reference (≈ 11k req/s here).

If this floor cannot reach a rate on a core, no collect built on that stack can: the gap
between this server and viz-collect is what collect's own work costs.

With ``--lean`` (target ``floor-lean``) it also does the essential work of ``/collect``, written
as plainly as Python allows: the Origin and User-Agent headers, ``viz._fast``'s payload parse,
token verification and envelopes (the same compiled code collect calls), a CORS grant for one
known origin, and one message per event. No site directory, bot or consent checks, metrics,
error bodies or keep-alive bookkeeping. It shows what the essential work costs over the floor,
so that the rest of the gap to viz-collect is collect's generality. ``--lean --compiled``
(target ``floor-lean-c``) runs the same work as the typed extension type of ``lean_c.pyx``. Not a Viz service;
benchmark use only.

    python bench/service/floor_collect.py --port 3102 --bootstrap 127.0.0.1:19092 --key bench
    python bench/service/floor_collect.py ... --lean --tid bench --key-hex <64 hex> \
        --origin https://bench.example
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import httptools
import uvloop
from confluent_kafka import Producer

_NO_CONTENT = b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"
_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
_UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\n\r\n"
_POLL_INTERVAL_S = 0.001


class Kafka:
    """The producer, polled from a loop timer while any report is awaited (as KafkaSink)."""

    def __init__(self, config: dict[str, Any], topic: str, key: bytes) -> None:
        self._producer = Producer(config)
        self._topic = topic
        self._key = key
        self._waiting = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def produce(self, value: bytes, on_delivery: Any) -> None:
        self._producer.produce(self._topic, value, self._key, on_delivery=on_delivery)
        if on_delivery is None:
            self._producer.poll(0)
            return
        self._waiting += 1
        if self._tick_handle is None:
            self._tick_handle = self._loop.call_later(_POLL_INTERVAL_S, self._tick)

    def delivered(self) -> None:
        self._waiting -= 1

    def _tick(self) -> None:
        self._producer.poll(0)
        self._tick_handle = (self._loop.call_later(_POLL_INTERVAL_S, self._tick)
                             if self._waiting else None)

    def close(self) -> None:
        self._producer.flush(10)


class Lean:
    """What ``/collect`` must do for one site, and nothing more."""

    def __init__(self, args: argparse.Namespace) -> None:
        from viz import _fast

        self.fast = _fast
        self.tid = args.tid
        self.signer = _fast.TokenSigner([bytes.fromhex(args.key_hex)])
        self.origin = args.origin.encode()
        self.no_content = (b"HTTP/1.1 204 No Content\r\nAccess-Control-Allow-Origin: " + self.origin
                           + b"\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
                             b"Content-Length: 0\r\n\r\n")

    def values(self, body: bytes, origin: bytes | None, ua: bytes) -> list[bytes] | None:
        if origin != self.origin or not ua:
            return None
        now = time.time()
        now_ms = int(now * 1000)
        fast = self.fast
        try:
            payload = fast.parse_payload(body, now_ms)
            self.signer.verify(payload.bid, self.tid, payload.token, now)
        except (fast.PayloadError, fast.TokenExpired, fast.TokenInvalid, fast.BadIdentifier):
            return None
        return fast.encode_envelopes(payload, tid=self.tid, ua=ua.decode("utf-8", "replace"),
                                     tier=1, server_ms=now_ms)


_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"


class FloorProtocol(asyncio.Protocol):
    """One connection: httptools parses, ``/collect`` produces the body, 204 when reported."""

    def __init__(self, kafka: Kafka, wait: bool, lean: Lean | None = None) -> None:
        self._kafka = kafka
        self._wait = wait
        self._lean = lean
        self._origin: bytes | None = None
        self._ua = b""
        self._waiting = 0  # --lean: this request's events still without a delivery report
        self._failed = False
        if lean is not None:
            self.on_header = self._on_header
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._url = b""
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError:
            if self._transport is not None:
                self._transport.close()

    def on_url(self, url: bytes) -> None:
        self._url = url

    def _on_header(self, name: bytes, value: bytes) -> None:
        if name == b"Origin" or name == b"origin":
            self._origin = value
        elif name == b"User-Agent" or name == b"user-agent":
            self._ua = value

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        body, self._body = b"".join(self._body), []
        if self._url != b"/collect":
            self._write(_OK)
            return
        if not self._wait:
            self._kafka.produce(body, None)
            self._write(_NO_CONTENT)
            return
        if self._lean is not None:
            values = self._lean.values(body, self._origin, self._ua)
            if not values:
                self._write(_BAD_REQUEST)
                return
            self._waiting, self._failed = len(values), False
            for value in values:
                self._kafka.produce(value, self._delivered_lean)
            return
        self._kafka.produce(body, self._delivered)

    def _delivered_lean(self, err: Any, _msg: Any) -> None:
        self._kafka.delivered()
        self._waiting -= 1
        self._failed = self._failed or err is not None
        if not self._waiting:
            self._write(_UNAVAILABLE if self._failed else self._lean.no_content)  # type: ignore[union-attr]

    def _delivered(self, err: Any, _msg: Any) -> None:
        self._kafka.delivered()
        self._write(_UNAVAILABLE if err is not None else _NO_CONTENT)

    def _write(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)


async def serve(args: argparse.Namespace) -> None:
    kafka = Kafka({"bootstrap.servers": args.bootstrap,
                   "enable.idempotence": False,  # as collect (at least once)
                   "max.in.flight.requests.per.connection": 5, "acks": "all", "compression.type": args.compression,
                   "linger.ms": args.linger_ms, "partitioner": "murmur2_random"},
                  args.topic, args.key.encode())
    loop = asyncio.get_running_loop()
    lean = Lean(args) if args.lean else None
    factory: Any = FloorProtocol
    if args.compiled:  # lean_c.pyx, built by run.py (target floor-lean-c)
        from lean_c import LeanProtocol  # type: ignore[import-not-found]

        factory = LeanProtocol
    server = await loop.create_server(lambda: factory(kafka, not args.no_wait, lean),
                                      args.host, args.port, backlog=4096)
    print(f"floor collect listening on http://{args.host}:{args.port}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        server.close()
        kafka.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="viz.traffic.raw")
    parser.add_argument("--key", required=True, help="the Kafka message key (a site id)")
    parser.add_argument("--linger-ms", type=float, default=2.0)
    parser.add_argument("--compression", default="lz4")
    parser.add_argument("--no-wait", action="store_true",
                        help="answer 204 right after produce (no delivery report: not durable)")
    parser.add_argument("--lean", action="store_true",
                        help="also do /collect's essential work (needs --tid, --key-hex, --origin)")
    parser.add_argument("--compiled", action="store_true",
                        help="with --lean: the typed Cython protocol of lean_c.pyx")
    parser.add_argument("--tid", default="")
    parser.add_argument("--key-hex", default="")
    parser.add_argument("--origin", default="")
    args = parser.parse_args()
    if args.lean and not (args.tid and args.key_hex and args.origin):
        parser.error("--lean needs --tid, --key-hex and --origin")
    if args.compiled and (not args.lean or args.no_wait):
        parser.error("--compiled goes with --lean and delivery reports")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
