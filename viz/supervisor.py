"""Keeps ``viz up``'s child processes alive: a child that exits is started again after a backoff,
and one that keeps crashing makes the supervisor give up (the platform then stops, in order).

Pure bookkeeping over an injected clock: it calls each child's ``start`` and ``running`` and
never sleeps, so a test drives it by moving a :class:`~viz.common.clock.ManualClock`.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff doubles from ``initial_backoff_s`` up to ``max_backoff_s`` for each crash in a
    row; a child that ran ``stable_after_s`` starts again from the initial backoff. More than
    ``crash_limit`` crashes within ``window_s`` is a crash loop."""

    initial_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    crash_limit: int = 5
    window_s: float = 300.0
    stable_after_s: float = 60.0


@dataclass
class Child:
    """One supervised process. ``start`` may raise (a failed start counts as a crash);
    ``running`` is cheap and never blocks."""

    name: str
    start: Callable[[], None]
    running: Callable[[], bool]
    started_at: float = 0.0
    restart_at: float | None = None  # set while the child is down and waiting for its restart
    backoff_s: float = 0.0
    crashes: deque[float] = field(default_factory=deque)
    restarts: int = 0


@dataclass(frozen=True)
class Notice:
    """What :meth:`Supervisor.check` did, for ``viz up`` to print: ``kind`` is ``exited``
    (restart scheduled in ``delay_s``), ``restarted``, ``start_failed`` or ``gave_up``."""

    kind: str
    child: str
    detail: str = ""
    delay_s: float = 0.0


class Supervisor:
    def __init__(self, policy: RestartPolicy | None = None) -> None:
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []

    def add(self, name: str, start: Callable[[], None], running: Callable[[], bool],
            *, now: float) -> Child:
        """Supervise a child that is already running (started by the caller at ``now``)."""
        child = Child(name, start, running, started_at=now,
                      backoff_s=self.policy.initial_backoff_s)
        self.children.append(child)
        return child

    def check(self, now: float) -> list[Notice]:
        """Notice exits, start the children whose backoff is over; never blocks beyond a
        child's own ``start``. A :class:`Notice` of kind ``gave_up`` means: stop the platform."""
        notices: list[Notice] = []
        policy = self.policy
        for child in self.children:
            if child.restart_at is None:
                if child.running():
                    if now - child.started_at >= policy.stable_after_s:
                        child.backoff_s = policy.initial_backoff_s
                    continue
                notices.extend(self._crashed(child, now, "exited"))
            if child.restart_at is not None and now >= child.restart_at:
                try:
                    child.start()
                except Exception as exc:  # a failed start is one more crash
                    log.warning("restarting %s failed: %s", child.name, exc)
                    notices.extend(self._crashed(child, now, "start_failed", str(exc)[:200]))
                    continue
                child.restart_at = None
                child.started_at = now
                child.restarts += 1
                notices.append(Notice("restarted", child.name))
        return notices

    def _crashed(self, child: Child, now: float, kind: str, detail: str = "") -> list[Notice]:
        policy = self.policy
        child.crashes.append(now)
        while child.crashes and child.crashes[0] < now - policy.window_s:
            child.crashes.popleft()
        if len(child.crashes) > policy.crash_limit:
            child.restart_at = float("inf")  # never again: the platform stops
            return [Notice("gave_up", child.name,
                           f"{len(child.crashes)} crashes within {policy.window_s:.0f} s")]
        delay = child.backoff_s
        child.backoff_s = min(child.backoff_s * 2, policy.max_backoff_s)
        child.restart_at = now + delay
        return [Notice(kind, child.name, detail, delay)]
