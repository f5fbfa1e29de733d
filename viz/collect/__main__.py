"""``viz serve collect [--workers N]``: one process, or N sharing the port with SO_REUSEPORT."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

from viz.collect.server import run_workers, serve_process
from viz.collect.settings import CollectSettings


def run(environ: Mapping[str, str]) -> None:
    settings = CollectSettings.from_env(environ)  # fail fast, before any worker starts
    if settings.workers == 1:
        serve_process(environ)
        return
    from viz.common.logging import setup_logging

    setup_logging(settings.log_level)
    code = run_workers(settings, environ)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    run(os.environ)
