"""The embedded ClickHouse users in one process: consumer thread + analytics app.

chDB allows one process to open a database path, so in the single-machine mode (`viz up`,
``VIZ_CLICKHOUSE_DSN=chdb://…``) everything that reads or writes ClickHouse shares one engine
here, serialised by one lock. Against a ClickHouse server each runs as its own service instead.
The consumer's ops endpoints are served on their own port (``VIZ_CONSUMER_HOST``/``_PORT``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping

import uvloop

from viz.analytics.app import create_app
from viz.analytics.settings import AnalyticsSettings
from viz.common.clock import SystemClock
from viz.common.gctune import tune_gc
from viz.common.logging import setup_logging
from viz.common.web import METRICS_KEY, serve_app
from viz.consumer.ops import attach_health, create_ops_app, start_ops_site
from viz.consumer.runner import build_loop
from viz.consumer.settings import ConsumerSettings
from viz.migrations.clickhouse import migrate_clickhouse

log = logging.getLogger(__name__)

DRAIN_TIMEOUT_S = 120.0


def run(environ: Mapping[str, str]) -> None:
    import clickhouse_connect

    consumer_settings = ConsumerSettings.from_env(environ)
    analytics_settings = AnalyticsSettings.from_env(environ)
    setup_logging(consumer_settings.log_level)
    client = clickhouse_connect.get_client(dsn=consumer_settings.clickhouse.dsn)
    migrate_clickhouse(client, consumer_settings.clickhouse.database,
                       retention_days=consumer_settings.retention_days)
    lock = threading.Lock()
    ops = create_ops_app()
    loop = build_loop(consumer_settings, client, clock=SystemClock(),
                      registry=ops[METRICS_KEY], lock=lock)
    attach_health(ops, loop.health)
    stop_consumer = threading.Event()
    app = create_app(analytics_settings, client, lock=lock)
    tune_gc()  # the consumer thread's allocations dominate this process too

    async def serve() -> None:
        stop_serving = asyncio.Event()
        event_loop = asyncio.get_running_loop()

        def consume() -> None:
            try:
                loop.run(stop_consumer, drain_timeout_s=DRAIN_TIMEOUT_S)
            except BaseException:
                log.exception("the consumer loop died; stopping the process")
                raise
            finally:
                # Whatever ended the consumer ends the process: a half-alive warehouse would
                # answer health checks while nothing reaches ClickHouse.
                event_loop.call_soon_threadsafe(stop_serving.set)

        ops_runner = await start_ops_site(ops, consumer_settings.http.host,
                                          consumer_settings.http.port)
        consumer_thread = threading.Thread(target=consume, name="viz-consumer")
        consumer_thread.start()
        try:
            await serve_app(app, host=analytics_settings.http.host,
                            port=analytics_settings.http.port, name="viz-analytics",
                            stop=stop_serving)
        finally:
            # The API is down; the consumer drains what the broker still holds, then commits.
            stop_consumer.set()
            await asyncio.to_thread(consumer_thread.join)
            await ops_runner.cleanup()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve())
    log.info("warehouse stopped")
