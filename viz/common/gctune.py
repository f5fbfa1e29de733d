"""Garbage-collector tuning for the long-running hot loops (collect's server, the consumer)."""

from __future__ import annotations

import gc


def tune_gc(young_threshold: int = 50_000) -> None:
    """Call once per process, after startup, before serving.

    Both loops allocate a few short-lived containers per request or event (collect holds them
    until the delivery report) and CPython's default collects the young generation every 700
    net allocations, so full collections, each walking every module and cache (tens of ms, a
    latency spike), came every few thousand requests. Startup objects are moved out of the
    collector's sight (``gc.freeze``) and young collections come every ``young_threshold``.
    Reference counting still frees the per-request garbage at once."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
