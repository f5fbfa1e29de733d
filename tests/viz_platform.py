"""`viz up` as a child process on free ports, for tests that need the whole platform."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from viz.embedded import free_port


class Up:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.ports = {name: free_port() for name in (
            "VIZ_UP_PG_PORT", "VIZ_UP_REDIS_PORT", "VIZ_UP_KAFKA_PORT", "VIZ_CONFIG_PORT",
            "VIZ_COLLECT_PORT", "VIZ_ANALYTICS_PORT", "VIZ_CMP_PORT")}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'VIZ_{service.upper()}_PORT']}"

    def start(self, timeout_s: float = 180) -> None:
        env = {**os.environ, **{k: str(v) for k, v in self.ports.items()},
               "VIZ_CONSUMER_FLUSH_INTERVAL_S": "0.5"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "viz", "--data-dir", str(self.data_dir), "up"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout_s
        for line in self.proc.stdout:
            self.output.append(line)
            if "viz up: ready" in line:
                return
            assert time.monotonic() < deadline, "".join(self.output)
        raise AssertionError("viz up exited before it was ready:\n" + "".join(self.output))

    def stop(self, timeout_s: float = 180) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=timeout_s)
        self.output.append(out)
        return self.proc.returncode

    def _secret(self, name: str) -> str:
        for line in (self.data_dir / "secrets.env").read_text().splitlines():
            if line.startswith(name + "="):
                return line.partition("=")[2]
        raise AssertionError(f"no {name} in secrets.env")

    def admin_token(self) -> str:
        return self._secret("VIZ_ADMIN_TOKEN")

    def service_token(self) -> str:
        return self._secret("VIZ_SERVICE_TOKEN")
