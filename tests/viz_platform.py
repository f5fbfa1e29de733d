"""`viz up` as a child process on free ports, for tests that need the whole platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from viz.embedded import free_port


class Up:
    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        names = ("VIZ_UP_PG_PORT", "VIZ_UP_REDIS_PORT", "VIZ_UP_KAFKA_PORT", "VIZ_CONFIG_PORT",
                 "VIZ_COLLECT_PORT", "VIZ_ANALYTICS_PORT", "VIZ_CMP_PORT", "VIZ_CONSUMER_PORT")
        # The OS may hand out a just-closed port again: each name gets a port of its own.
        chosen: set[int] = set()
        while len(chosen) < len(names):
            chosen.add(free_port())
        self.ports = dict(zip(names, sorted(chosen), strict=True))
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None
        self._lock = threading.Lock()

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[f'VIZ_{service.upper()}_PORT']}"

    def start(self, timeout_s: float = 180) -> None:
        env = {**os.environ, **{k: str(v) for k, v in self.ports.items()},
               "VIZ_CONSUMER_FLUSH_INTERVAL_S": "0.5", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "viz", "--data-dir", str(self.data_dir), "up"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        mark = len(self.output)
        self.wait_for_output("viz up: ready", timeout_s=timeout_s, since=mark)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for line in proc.stdout:
                with self._lock:
                    self.output.append(line)

    def text(self, since: int = 0) -> str:
        with self._lock:
            return "".join(self.output[since:])

    def wait_for_output(self, text: str, *, timeout_s: float, since: int = 0) -> None:
        """Until ``viz up`` printed ``text`` (after line ``since``); fails if it exits first."""
        deadline = time.monotonic() + timeout_s
        while text not in self.text(since):
            assert self.proc is not None
            if self.proc.poll() is not None and self._reader is not None:
                self._reader.join(5)
                if text in self.text(since):
                    return
                raise AssertionError(f"viz up exited before printing {text!r}:\n{self.text()}")
            assert time.monotonic() < deadline, f"no {text!r} from viz up:\n{self.text()}"
            time.sleep(0.05)

    def stop(self, timeout_s: float = 180) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout_s)
        if self._reader is not None:
            self._reader.join(10)
        return code

    def pids(self) -> dict[str, int]:
        """The pid of every engine and service `viz up` runs now (``run/pids.json``)."""
        return {k: int(v) for k, v in
                json.loads((self.data_dir / "run" / "pids.json").read_text()).items()}

    def kill_tree(self) -> None:
        """SIGKILL `viz up` and every process it started, all at once (a power cut, for them)."""
        assert self.proc is not None
        victims = [self.proc.pid, *self.pids().values()]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(30)
        if self._reader is not None:
            self._reader.join(10)

    def _secret(self, name: str) -> str:
        for line in (self.data_dir / "secrets.env").read_text().splitlines():
            if line.startswith(name + "="):
                return line.partition("=")[2]
        raise AssertionError(f"no {name} in secrets.env")

    def admin_token(self) -> str:
        return self._secret("VIZ_ADMIN_TOKEN")

    def service_token(self) -> str:
        return self._secret("VIZ_SERVICE_TOKEN")
