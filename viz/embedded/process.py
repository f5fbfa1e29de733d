"""A child server process: start it, wait until it answers, stop it the way it wants."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(host: str, port: int, timeout_s: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str,
               interval_s: float = 0.05, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``condition`` until it holds; raise ``TimeoutError`` naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return
        if not alive():
            raise RuntimeError(f"{what}: the process exited before it became ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout_s:.0f} s")
        time.sleep(interval_s)


class ServerProcess:
    """One child server. ``stop_signal`` is what makes it shut down cleanly (SIGKILL for Tansu)."""

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path,
                 stop_signal: int = signal.SIGTERM, user: str | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.user = user
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                user=self.user, env=self.env,
                # Its own session: a Ctrl-C in the terminal reaches `viz up`, which then stops
                # the engines in order instead of all of them dying at once.
                start_new_session=True,
            )
        finally:
            logfile.close()
        log.debug("started %s (pid %s)", self.name, self.proc.pid)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def stop(self, timeout_s: float = 30.0) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.kill(proc.pid, self.stop_signal)
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass

    def kill(self) -> None:
        """Stop without any chance to clean up (crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
