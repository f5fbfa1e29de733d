"""A real aiohttp server on a free port, run by an event loop in a background thread.

For tests whose client is synchronous (schemathesis calls the app over HTTP with `requests`).
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from typing import Any

import requests
from aiohttp import web


class LiveServer:
    """An aiohttp application served on a free port by an event loop in a background thread."""

    def __init__(self, app: web.Application) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner = web.AppRunner(app, access_log=None)
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.url = ""

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _start(self) -> str:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread.start()
        self.url = self._call(self._start())

    def stop(self) -> None:
        self._call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


def wait_until_ready(url: str, process: subprocess.Popen[bytes], name: str,
                     timeout_s: float = 20.0) -> None:
    """Poll ``url/readyz`` until it answers 200; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{name} did not become ready"
        time.sleep(0.1)
