"""``viz serve analytics``: the reporting API on its own (ClickHouse server deployments)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import uvloop

from viz.analytics.app import create_app
from viz.analytics.settings import AnalyticsSettings
from viz.common.logging import setup_logging
from viz.common.web import serve_app


def run(environ: Mapping[str, str]) -> None:
    import clickhouse_connect

    settings = AnalyticsSettings.from_env(environ)
    setup_logging(settings.log_level)
    client = clickhouse_connect.get_client(dsn=settings.clickhouse.dsn)
    app = create_app(settings, client)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_app(app, host=settings.http.host, port=settings.http.port,
                             name="viz-analytics"))
