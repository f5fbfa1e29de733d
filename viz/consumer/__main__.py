"""``viz serve consumer``: run the Kafka → ClickHouse loop until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Mapping

from viz.common.clock import SystemClock
from viz.common.gctune import tune_gc
from viz.common.logging import setup_logging
from viz.common.web import METRICS_KEY
from viz.consumer.ops import OpsThread, attach_health, create_ops_app
from viz.consumer.runner import build_loop
from viz.consumer.settings import ConsumerSettings
from viz.migrations.clickhouse import migrate_clickhouse

log = logging.getLogger(__name__)


def run(environ: Mapping[str, str]) -> None:
    import clickhouse_connect

    settings = ConsumerSettings.from_env(environ)
    setup_logging(settings.log_level)
    client = clickhouse_connect.get_client(dsn=settings.clickhouse.dsn)
    # Idempotent; with the embedded engine only this process can open the database, so the
    # schema must be created here rather than by a separate `viz migrate`.
    migrate_clickhouse(client, settings.clickhouse.database,
                       retention_days=settings.retention_days)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    ops = create_ops_app()
    loop = build_loop(settings, client, clock=SystemClock(), registry=ops[METRICS_KEY])
    attach_health(ops, loop.health)
    ops_thread = OpsThread(ops, settings.http.host, settings.http.port)
    ops_thread.start()
    tune_gc()
    log.info("viz-consumer: group %s on %s", settings.group_id, settings.kafka.topic_raw)
    try:
        loop.run(stop)
    finally:
        ops_thread.stop()
    log.info("viz-consumer: stopped")
