"""Runs viz-cmp as a process: settings from the environment, uvloop, graceful stop.

``viz serve cmp`` calls :func:`run`; ``python -m viz.cmp`` does the same.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

import uvloop

from viz.cmp.app import create_app
from viz.cmp.settings import CmpSettings
from viz.common.logging import setup_logging
from viz.common.web import serve_app


def run(environ: Mapping[str, str]) -> None:
    settings = CmpSettings.from_env(environ)
    setup_logging(settings.log_level)
    app = create_app(settings)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve_app(app, host=settings.http.host, port=settings.http.port,
                             name="viz-cmp"))


if __name__ == "__main__":
    run(os.environ)
