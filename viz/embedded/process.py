"""A child server process: start it, wait until it answers, stop it the way it wants."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with(parent_pid: int) -> Callable[[], None]:
    """A ``preexec_fn``: the kernel SIGKILLs the child when its parent goes away.

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing. It runs in the child
    after ``subprocess`` switched to ``user=`` (a credential change clears the setting, so it
    must come after), right before exec, and makes two system calls, nothing that can block.
    The "parent" is the *thread* that forked: start servers from a thread that lives as long as
    the process (the main thread, or a supervisor thread that never exits before it).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return lambda: None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:
            # The parent died between fork and prctl: nobody will send the signal.
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


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


def _alive_as(pid: int, exe_name: str) -> bool:
    """Whether ``pid`` is a live (not zombie) process running a binary named ``exe_name``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and Path(os.fsdecode(cmdline)).name == exe_name


def wait_for_previous(pid_file: Path, exe: str, *, timeout_s: float) -> None:
    """Wait until the server a pid file names is gone (a killed one may still be exiting and
    holding its port and data directory). Only a live process running ``exe`` counts, so a
    stale file or a reused pid is ignored; one still there at the deadline is an error."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    name = Path(exe).name
    try:
        wait_until(lambda: not _alive_as(pid, name), timeout_s=timeout_s,
                   what=f"the previous {name} (pid {pid}, {pid_file})")
    except TimeoutError as exc:
        raise RuntimeError(f"{exc}: another server still runs on this data directory; "
                           f"stop it first") from None


class ServerProcess:
    """One child server. ``stop_signal`` is what makes it shut down cleanly (SIGKILL for Tansu).

    With ``die_with_parent`` (the default) the kernel SIGKILLs the child when the process that
    started it dies, however it dies: a SIGKILLed ``viz up`` leaves no orphaned engine holding
    its port and data directory, and the next start finds everything on disk.
    """

    def __init__(self, name: str, argv: Sequence[str], *, log_path: Path,
                 stop_signal: int = signal.SIGTERM, user: str | None = None,
                 env: dict[str, str] | None = None, cwd: Path | None = None,
                 die_with_parent: bool = True, pid_file: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_signal = stop_signal
        self.user = user
        self.env = env
        self.cwd = cwd
        self.die_with_parent = die_with_parent
        self.pid_file = pid_file
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.running():
            return
        if self.pid_file is not None:
            wait_for_previous(self.pid_file, self.argv[0], timeout_s=15.0)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logfile = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child from here on
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                user=self.user, env=self.env, cwd=self.cwd,
                preexec_fn=_die_with(os.getpid()) if self.die_with_parent else None,
                # Its own session: a Ctrl-C in the terminal reaches `viz up`, which then stops
                # the engines in order instead of all of them dying at once.
                start_new_session=True,
            )
        finally:
            logfile.close()
        if self.pid_file is not None:
            self.pid_file.write_text(f"{self.proc.pid}\n")
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
