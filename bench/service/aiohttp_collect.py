"""The Python baseline: ``POST /collect`` as a Python developer would write it with aiohttp.

json.loads the body, check the HMAC token (current or previous 5-minute window), produce one
envelope per event with confluent-kafka and await every delivery report, then 204. The
producer is polled from a thread, as in confluent-kafka's own asyncio example. It knows one site
(sid, tid, secret key) from its command line instead of asking viz-config: that only makes the
baseline faster than a real one, never slower. Not a Viz service; benchmark use only.

    python bench/service/aiohttp_collect.py --port 3101 --bootstrap 127.0.0.1:19092 \
        --sid bench --tid bench --key-hex <64 hex chars>
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import signal
import threading
import time
import uuid
from typing import Any

from aiohttp import web
from confluent_kafka import KafkaException, Producer

WINDOW_S = 300
MAX_BODY_BYTES = 64 * 1024
MAX_EVENTS = 50
EVENT_TYPES = {"pageview", "active", "exit", "event"}


class AIOProducer:
    """confluent-kafka behind asyncio futures: a thread serves the delivery callbacks."""

    def __init__(self, config: dict[str, Any], loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._producer = Producer(config)
        self._stopping = False
        self._thread = threading.Thread(target=self._poll, name="kafka-poll", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stopping:
            self._producer.poll(0.1)

    def produce(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self._loop.create_future()

        def settle(err: Any, _msg: Any) -> None:
            if err is not None:
                self._loop.call_soon_threadsafe(_set_exception, future, KafkaException(err))
            else:
                self._loop.call_soon_threadsafe(_set_result, future)

        self._producer.produce(topic, value, key, on_delivery=settle)
        return future

    def close(self) -> None:
        self._producer.flush(10)
        self._stopping = True
        self._thread.join()


def _set_result(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _set_exception(future: asyncio.Future[None], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def token_ok(key: bytes, bid: str, tid: str, token: str, now_s: float) -> bool:
    window = int(now_s // WINDOW_S)
    for w in (window, window - 1):
        expected = hmac.new(key, f"{bid}:{tid}:{w}".encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, token):
            return True
    return False


def _valid_event(event: Any) -> bool:
    if not isinstance(event, dict) or event.get("t") not in EVENT_TYPES:
        return False
    path = event.get("p")
    return isinstance(path, str) and len(path) <= 2048 and isinstance(event.get("id"), str)


def create_app(args: argparse.Namespace) -> web.Application:
    key = bytes.fromhex(args.key_hex)
    producer_key = web.AppKey("producer", AIOProducer)
    app = web.Application(client_max_size=MAX_BODY_BYTES)

    async def producer_ctx(app: web.Application):  # type: ignore[no-untyped-def]
        config = {
            "bootstrap.servers": args.bootstrap,
            "enable.idempotence": False,  # as collect (at least once)
            "max.in.flight.requests.per.connection": 5,
            "acks": "all",
            "compression.type": args.compression,
            "linger.ms": args.linger_ms,
            "partitioner": "murmur2_random",
        }
        app[producer_key] = AIOProducer(config, asyncio.get_running_loop())
        yield
        app[producer_key].close()

    async def collect(request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            return web.json_response({"error": "malformed"}, status=400)
        if not isinstance(payload, dict):
            return web.json_response({"error": "malformed"}, status=400)
        sid, bid, token = payload.get("sid"), payload.get("bid"), payload.get("token")
        events = payload.get("events")
        if not (isinstance(sid, str) and isinstance(bid, str) and isinstance(token, str)
                and isinstance(events, list) and 0 < len(events) <= MAX_EVENTS
                and all(_valid_event(e) for e in events)):
            return web.json_response({"error": "invalid"}, status=400)
        if sid != args.sid:
            return web.json_response({"error": "unknown_site"}, status=404)
        now = time.time()
        if not token_ok(key, bid, args.tid, token, now):
            return web.json_response({"error": "token_invalid"}, status=403)
        producer = request.app[producer_key]
        ua = request.headers.get("User-Agent", "")
        futures = []
        for event in events:
            data = {**event, "sid": sid, "tid": args.tid, "bid": bid,
                    "eid": uuid.uuid4().hex, "ua": ua, "consent": 1}
            envelope = json.dumps({"v": 1, "ts": int(now * 1000), "data": data}).encode()
            futures.append(producer.produce(args.topic, envelope, sid.encode()))
        try:
            await asyncio.gather(*futures)
        except KafkaException:
            return web.json_response({"error": "unavailable"}, status=503,
                                     headers={"Retry-After": "1"})
        return web.Response(status=204)

    async def healthz(_request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app.cleanup_ctx.append(producer_ctx)
    app.router.add_post("/collect", collect)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", default="viz.traffic.raw")
    parser.add_argument("--sid", required=True)
    parser.add_argument("--tid", required=True)
    parser.add_argument("--key-hex", required=True)
    parser.add_argument("--linger-ms", type=float, default=2.0)
    parser.add_argument("--compression", default="lz4")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio")
    args = parser.parse_args()
    loop_factory = None
    if args.uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    # Access logging off, as for nginx: the comparison is about the request path.
    runner = asyncio.Runner(loop_factory=loop_factory)
    with runner:
        runner.run(_serve(create_app(args), args.host, args.port))


async def _serve(app: web.Application, host: str, port: int) -> None:
    web_runner = web.AppRunner(app, access_log=None)
    await web_runner.setup()
    site = web.TCPSite(web_runner, host, port, backlog=4096)
    await site.start()
    print(f"aiohttp baseline listening on http://{host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await web_runner.cleanup()


if __name__ == "__main__":
    main()
