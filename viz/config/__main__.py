"""Runs viz-config as a process: settings from the environment, uvloop, graceful stop.

``viz serve config`` calls :func:`run`; ``python -m viz.config`` does the same.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import uvloop

from viz.common.logging import setup_logging
from viz.common.web import serve_app
from viz.config.app import create_app
from viz.config.settings import ConfigSettings


def run(environ: Mapping[str, str]) -> None:
    settings = ConfigSettings.from_env(environ)
    setup_logging(settings.log_level)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_app(create_app(settings), host=settings.http.host,
                             port=settings.http.port, name="viz-config"))


if __name__ == "__main__":
    run(os.environ)
