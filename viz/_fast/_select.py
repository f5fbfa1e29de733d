"""Picks compiled or pure twins: compiled unless VIZ_NO_EXTENSIONS=1 or the build is missing.

The switch is read once, when `viz._fast` is first imported (the aiohttp convention), because
swapping implementations under a running process would mix result classes.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

NO_EXTENSIONS = os.environ.get("VIZ_NO_EXTENSIONS", "") == "1"


def load(name: str) -> tuple[ModuleType, bool]:
    """Return (module, compiled) for concern `name` ("token", "payload", "envelope")."""
    if not NO_EXTENSIONS:
        try:
            return importlib.import_module(f"viz._fast._{name}_c"), True
        except ImportError:
            pass
    return importlib.import_module(f"viz._fast._{name}_py"), False
