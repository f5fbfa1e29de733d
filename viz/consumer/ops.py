"""The consumer's ops endpoints: /healthz, /readyz (503 while not consuming) and /metrics.

The same aiohttp base app as every other service (viz.common.web), served next to the loop:
on a thread of its own in ``viz serve consumer``, on the warehouse's event loop in
``viz serve warehouse``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from viz.common.web import READY_CHECKS_KEY, create_base_app

log = logging.getLogger(__name__)

HealthSource = Callable[[], dict[str, Any]]
"""``ConsumerLoop.health``: a snapshot with ``ready``, ``consuming`` and ``reason``."""


class NotConsuming(RuntimeError):
    """The loop has not been consuming for longer than the readiness threshold."""


def create_ops_app() -> web.Application:
    """The ops app; its ``METRICS_KEY`` registry is the one to build the loop with, then
    :func:`attach_health` wires the loop's health in."""
    return create_base_app()


def attach_health(app: web.Application, health: HealthSource) -> None:
    async def consuming() -> None:
        state = health()
        if not state["ready"]:
            raise NotConsuming(state["reason"] or "not consuming yet")

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(health())

    app[READY_CHECKS_KEY]["consumer"] = consuming
    app.router.add_get("/status", status)


async def start_ops_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on the running event loop; ``await runner.cleanup()`` stops it."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("viz-consumer ops on http://%s:%d (/healthz /readyz /metrics /status)", host, port)
    return runner


class OpsThread:
    """The ops app on a thread with its own event loop (the consumer loop owns the main one)."""

    def __init__(self, app: web.Application, host: str, port: int) -> None:
        self._app, self._host, self._port = app, host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="viz-consumer-ops", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        self._thread.start()
        self._started.wait(timeout_s)
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            runner = await start_ops_site(self._app, self._host, self._port)
        except BaseException as exc:  # reported to start(), which raises it
            self._error = exc
            self._started.set()
            return
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)
