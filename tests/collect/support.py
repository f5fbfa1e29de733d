"""Test doubles for collect: a fake transport, a fake site source, an HTTP response reader."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

from viz import _fast
from viz.collect.app import CollectApp, CollectDeps
from viz.collect.metrics import CollectMetrics
from viz.collect.protocol import HttpProtocol, ServerState, connection_class
from viz.collect.settings import CollectSettings
from viz.collect.sinks import MemorySink
from viz.common.clock import ManualClock
from viz.common.errors import UnavailableError
from viz.common.site_directory import SiteDirectory
from viz.common.sites import SiteRecord

SID = "site-one"
TID = "tenant-1"
KEY = bytes(range(32))
BID = "AAAAAAAAAAAAAAAAAAAAAA"
UA = (b"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
      b"Chrome/126.0 Safari/537.36")
ORIGIN = b"https://www.example.com"


def make_site(sid: str = SID, *, domains: tuple[str, ...] = ("example.com",),
              collect: bool = True, key: bytes = KEY, tid: str = TID) -> SiteRecord:
    return SiteRecord(sid=sid, tid=tid, name=sid, domains=domains,
                      features={"collect": collect, "cmp": True, "recs": False},
                      cmp_config={}, recs_config={}, version=1, secret_key=key)


def make_settings(**environ: str) -> CollectSettings:
    base = {"VIZ_KAFKA_BOOTSTRAP": "127.0.0.1:1", "VIZ_SERVICE_TOKEN": "s" * 32}
    return CollectSettings.from_env({**base, **environ})


class FakeFetcher:
    def __init__(self, *sites: SiteRecord) -> None:
        self.sites = {s.sid: s for s in sites}
        self.fail = False
        self.calls = 0

    async def fetch(self, sid: str) -> SiteRecord | None:
        self.calls += 1
        if self.fail:
            raise UnavailableError("config is down")
        return self.sites.get(sid)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.buffer = bytearray()
        self.closed = False
        self.aborted = False
        self.reading_paused = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        assert not self.closed, "write after close"
        self.buffer += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    peer: str | None = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.peer, 50_000) if name == "peername" and self.peer else default


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _ResponseReader:
    done: list[Response] = field(default_factory=list)
    _headers: list[tuple[str, str]] = field(default_factory=list)
    _body: bytearray = field(default_factory=bytearray)
    parser: Any = None

    def on_message_begin(self) -> None:
        self._headers = []
        self._body = bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode().lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body += body

    def on_message_complete(self) -> None:
        self.done.append(Response(self.parser.get_status_code(), self._headers,
                                  bytes(self._body)))


def parse_responses(data: bytes) -> list[Response]:
    """Every complete response in ``data`` (which must be whole responses, in order)."""
    reader = _ResponseReader()
    parser = httptools.HttpResponseParser(reader)
    reader.parser = parser
    parser.feed_data(data)
    return reader.done


class Harness:
    """One app (memory sink, manual clock, real SiteDirectory over a fake fetcher); with
    ``lane=False`` the Python request path answers alone (no compiled /collect lane)."""

    def __init__(self, *sites: SiteRecord, sink: MemorySink | None = None,
                 settings: CollectSettings | None = None, lane: bool = True) -> None:
        self.clock = ManualClock()
        self.fetcher = FakeFetcher(*(sites or (make_site(),)))
        self.directory = SiteDirectory(self.fetcher, clock=self.clock, ttl_s=300,
                                       max_stale_s=3600, negative_ttl_s=30)
        self.sink = sink or MemorySink()
        self.metrics = CollectMetrics()
        self.settings = settings or make_settings()
        self.app = CollectApp(self.settings, CollectDeps(self.directory, self.sink, self.clock,
                                                         self.metrics), lane=lane)
        self.state = ServerState(date_header=b"Date: Tue, 14 Nov 2023 22:13:20 GMT\r\n")

    async def warm(self, sid: str = SID) -> None:
        """Put the site in the directory, so requests take the synchronous path."""
        await self.directory.get(sid)

    def connect(self, **kwargs: Any) -> Connection:
        return Connection(self, **kwargs)

    def token(self, bid: str = BID, *, key: bytes = KEY, tid: str = TID,
              at: float | None = None) -> str:
        now = self.clock.time() if at is None else at
        return _fast.TokenSigner([key]).issue(bid, tid, now)

    def body(self, events: int = 1, *, bid: str = BID, token: str | None = None,
             sid: str = SID, **extra: Any) -> bytes:
        now_ms = int(self.clock.time() * 1000)
        doc = {"sid": sid, "bid": bid, "token": token or self.token(bid),
               "events": [{"id": f"event-{i:04d}", "t": "pageview", "p": f"/page/{i}",
                           "ts": now_ms - 10} for i in range(events)]}
        doc.update(extra)
        return json.dumps(doc).encode()

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value


TWINS: dict[str, Callable[..., HttpProtocol]] = {"python": HttpProtocol}
"""The connection classes a test can run on: the Python one and, when built, its compiled twin
(``viz.collect._lane_c.HttpConnection``); ``conftest.connection_twin`` picks one per test."""
if connection_class() is not HttpProtocol:
    TWINS["compiled"] = connection_class()
CONNECTION: list[Callable[..., HttpProtocol]] = [connection_class()]
"""The one :class:`Connection` makes (the production choice unless a test picked a twin)."""


class Connection:
    def __init__(self, harness: Harness, *, peer: str | None = None, **kwargs: Any) -> None:
        self.transport = FakeTransport()
        self.transport.peer = peer
        loop = asyncio.get_running_loop()
        self.protocol = CONNECTION[0](harness.app, harness.state, loop, **kwargs)
        self.protocol.connection_made(self.transport)
        self._seen = 0

    def send(self, data: bytes) -> None:
        self.protocol.data_received(data)

    def responses(self) -> list[Response]:
        return parse_responses(bytes(self.transport.buffer))

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 2.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not predicate():
            if loop.time() > deadline:
                raise AssertionError("condition not met before the deadline")
            await asyncio.sleep(0)

    async def wait_responses(self, n: int, timeout_s: float = 2.0) -> list[Response]:
        await self.wait_for(lambda: len(self.responses()) >= n, timeout_s)
        return self.responses()

    async def request(self, raw: bytes) -> Response:
        before = len(self.responses())
        self.send(raw)
        return (await self.wait_responses(before + 1))[before]


def get(target: str, *, origin: bytes | None = ORIGIN, ua: bytes | None = UA,
        headers: bytes = b"") -> bytes:
    lines = [f"GET {target} HTTP/1.1\r\nHost: collect.example.com\r\n".encode()]
    if origin is not None:
        lines.append(b"Origin: " + origin + b"\r\n")
    if ua is not None:
        lines.append(b"User-Agent: " + ua + b"\r\n")
    lines.append(headers)
    lines.append(b"\r\n")
    return b"".join(lines)


def post(target: str, body: bytes, *, origin: bytes | None = ORIGIN, ua: bytes | None = UA,
         headers: bytes = b"") -> bytes:
    lines = [f"POST {target} HTTP/1.1\r\nHost: collect.example.com\r\n".encode(),
             b"Content-Type: text/plain;charset=UTF-8\r\n",
             b"Content-Length: %d\r\n" % len(body)]
    if origin is not None:
        lines.append(b"Origin: " + origin + b"\r\n")
    if ua is not None:
        lines.append(b"User-Agent: " + ua + b"\r\n")
    lines.append(headers)
    lines.append(b"\r\n")
    lines.append(body)
    return b"".join(lines)
