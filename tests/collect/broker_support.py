"""Collect against a broker of the test's own, which the test may stop (SIGSTOP) and resume."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from viz.collect.app import CollectDeps
from viz.collect.metrics import CollectMetrics
from viz.collect.server import CollectServer
from viz.collect.sinks import KafkaSink
from viz.common.clock import SystemClock
from viz.common.settings import KafkaSettings
from viz.common.site_directory import SiteDirectory
from viz.embedded import EmbeddedKafka, free_port

from .support import FakeFetcher, make_settings, make_site


def broker_pid(server: EmbeddedKafka) -> int:
    pid = getattr(server, "broker_pid", None)
    if callable(pid):
        pid = pid()
    if pid is None and server._server is not None:  # before EmbeddedKafka.broker_pid existed
        pid = server._server.pid()
    assert pid is not None, "the broker is not running"
    return pid


@contextmanager
def own_broker(data_dir: Path) -> Iterator[EmbeddedKafka]:
    """A broker for one test: the session's must never be stopped under other tests."""
    server = EmbeddedKafka(data_dir)
    server.start()
    try:
        yield server
    finally:
        try:
            os.kill(broker_pid(server), signal.SIGCONT)  # a failed test must not leave it stopped
        except (AssertionError, ProcessLookupError):
            pass
        server.stop()


async def start_collect(kafka: KafkaSettings, *, delivery_timeout_s: float,
                        ready_interval_s: float = 0.2, compiled: bool = True) -> CollectServer:
    """A collect server on its own port producing to ``kafka``, rate limit off, its metrics
    including the producer's; ``compiled=False`` keeps the sink's Python send path."""
    settings = make_settings(
        VIZ_COLLECT_HOST="127.0.0.1", VIZ_COLLECT_PORT=str(free_port()),
        VIZ_KAFKA_BOOTSTRAP=kafka.bootstrap, VIZ_KAFKA_TOPIC_RAW=kafka.topic_raw,
        VIZ_KAFKA_TOPIC_DLQ=kafka.topic_dlq,
        VIZ_COLLECT_DELIVERY_TIMEOUT_S=str(delivery_timeout_s),
        VIZ_COLLECT_READY_CHECK_INTERVAL_S=str(ready_interval_s),
        VIZ_COLLECT_RATE_LIMIT_PER_S="0", VIZ_COLLECT_SHUTDOWN_TIMEOUT_S="10",
        VIZ_COLLECT_FLUSH_TIMEOUT_S="5")
    clock = SystemClock()
    directory = SiteDirectory(FakeFetcher(make_site()), clock=clock)
    sink = KafkaSink(settings.kafka, settings.producer, compiled=compiled)
    metrics = CollectMetrics()
    metrics.watch_producer(sink)
    server = CollectServer(settings, CollectDeps(directory, sink, clock, metrics))
    await server.start()
    return server
