"""Listening, worker processes and the graceful stop of viz-collect.

Stop order on SIGTERM: stop accepting; let every connection answer what it already read (no
new requests are read); wait for those answers (bounded by ``shutdown_timeout_s``); then flush
the producer, so nothing acknowledged with 204 is still only in memory; then close the rest.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import signal
import socket
from collections.abc import Mapping
from email.utils import formatdate

import aiohttp

from viz.collect.app import CollectApp, CollectDeps
from viz.collect.metrics import CollectMetrics
from viz.collect.protocol import HttpProtocol, ServerState, connection_class
from viz.collect.settings import CollectSettings
from viz.collect.sinks import KafkaSink
from viz.common.clock import Clock, SystemClock
from viz.common.gctune import tune_gc
from viz.common.site_directory import SiteDirectory

log = logging.getLogger(__name__)


class CollectServer:
    """One listening socket (per process) serving :class:`CollectApp` over :func:`connection_class`.

    The collaborators in ``deps`` are owned by the caller, except that :meth:`stop` closes the
    sink last (flushing it) because only the server knows when the last request was answered.
    """

    def __init__(self, settings: CollectSettings, deps: CollectDeps) -> None:
        self.settings = settings
        self.deps = deps
        self.app = CollectApp(settings, deps)
        self._connection = connection_class()
        self.compiled_connection = self._connection is not HttpProtocol
        self.state = ServerState()
        self._server: asyncio.AbstractServer | None = None
        self._date_handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _protocol(self) -> HttpProtocol:
        return self._connection(self.app, self.state, self._loop,
                                keep_alive_timeout_s=self.settings.keep_alive_timeout_s,
                                max_pipelined=self.settings.max_pipelined_requests)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tick_date()
        await self.deps.sink.start()
        http = self.settings.http
        self._server = await self._loop.create_server(
            self._protocol, http.host, http.port, backlog=4096,
            reuse_port=self.settings.workers > 1, reuse_address=True)

    @property
    def port(self) -> int:
        assert self._server is not None
        sock: socket.socket = self._server.sockets[0]  # type: ignore[attr-defined]
        return int(sock.getsockname()[1])

    def _tick_date(self) -> None:
        self.state.date_header = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
        loop = self._loop
        assert loop is not None
        # Re-armed at the next whole second so the header changes when the second does.
        self._date_handle = loop.call_at(int(loop.time()) + 1.0, self._tick_date)

    async def stop(self) -> None:
        """Graceful stop; idempotent. Never raises."""
        self.app.shutting_down = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.state.connections):
            conn.shutdown()
        try:
            await asyncio.wait_for(self.state.wait_drained(), self.settings.shutdown_timeout_s)
        except TimeoutError:
            pass
        if self.state.connections:
            log.warning("cutting %d connection(s) still busy after %.0f s",
                        len(self.state.connections), self.settings.shutdown_timeout_s)
            for conn in list(self.state.connections):
                conn.abort()
        await self.app.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        try:
            await self.deps.sink.close()
        except Exception:
            log.exception("closing the sink failed")
        if self._date_handle is not None:
            self._date_handle.cancel()
            self._date_handle = None


async def serve(settings: CollectSettings, *, clock: Clock | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Run one collect process until SIGTERM/SIGINT (or ``stop`` is set)."""
    clock = clock or SystemClock()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    metrics = CollectMetrics()
    sink = KafkaSink(settings.kafka, settings.producer)
    async with aiohttp.ClientSession() as session:
        directory = SiteDirectory.from_settings(settings.config_client, session, clock)
        metrics.watch(directory, sink.queued)
        metrics.watch_producer(sink)
        server = CollectServer(settings, CollectDeps(directory, sink, clock, metrics))
        await server.start()
        log.info("viz-collect listening on %s:%d", settings.http.host, server.port)
        if server.app.lane is None or not server.compiled_connection:
            log.warning("viz-collect runs its pure-Python request path (VIZ_NO_EXTENSIONS=1 or "
                        "viz.collect._lane_c not built): expect about 1.4x the CPU per request")
        try:
            await stop.wait()
        finally:
            log.info("viz-collect stopping: answering in-flight requests, flushing the producer")
            await server.stop()
            await directory.close()
    log.info("viz-collect stopped")


def serve_process(environ: Mapping[str, str]) -> None:
    """Entry point of one process (the only one, or a worker): settings, logging, uvloop."""
    import uvloop

    from viz.common.logging import setup_logging

    settings = CollectSettings.from_env(environ)
    setup_logging(settings.log_level)
    tune_gc()
    uvloop.run(serve(settings))


def run_workers(settings: CollectSettings, environ: Mapping[str, str]) -> int:
    """Start ``settings.workers`` processes sharing the port (SO_REUSEPORT); forward stops."""
    ctx = multiprocessing.get_context("spawn")
    env = dict(environ)
    workers = [ctx.Process(target=serve_process, args=(env,), name=f"viz-collect-{i}")
               for i in range(settings.workers)]
    stopping = False

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers:
            if proc.pid is not None and proc.is_alive():
                proc.terminate()  # SIGTERM: each worker stops gracefully

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in workers:
        proc.start()
    code = 0
    sentinels: dict[int, multiprocessing.process.BaseProcess] = {
        proc.sentinel: proc for proc in workers}
    while sentinels:
        ready = multiprocessing.connection.wait(list(sentinels), timeout=1.0)
        for sentinel in ready:
            done = sentinels.pop(sentinel)  # type: ignore[arg-type]
            done.join()
            if done.exitcode not in (0, -signal.SIGTERM) and not stopping:
                log.error("%s exited with %s; stopping the other workers", done.name,
                          done.exitcode)
                code = 1
                forward(signal.SIGTERM, None)
    return code
