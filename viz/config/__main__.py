"""Runs viz-config as a process: settings from the environment, uvloop, graceful stop.

``viz serve config`` calls :func:`run`; ``python -m viz.config`` does the same.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Mapping

import uvloop
from aiohttp import web

from viz.common.logging import setup_logging
from viz.config.app import create_app
from viz.config.settings import ConfigSettings

log = logging.getLogger(__name__)

_SHUTDOWN_TIMEOUT_S = 10.0


async def serve(settings: ConfigSettings, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set), then finish in-flight requests."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    runner = web.AppRunner(create_app(settings), shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
                           access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http.host, settings.http.port)
        await site.start()
        log.info("viz-config listening on http://%s:%d", settings.http.host, settings.http.port)
        await stop.wait()
        log.info("viz-config stopping")
    finally:
        await runner.cleanup()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def run(environ: Mapping[str, str]) -> None:
    settings = ConfigSettings.from_env(environ)
    setup_logging(settings.log_level)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(settings))


if __name__ == "__main__":
    run(os.environ)
