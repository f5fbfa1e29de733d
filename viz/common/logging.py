"""One logging setup for every process: plain lines to stderr, level from settings."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log is one INFO line per request: too much for a hot service.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
