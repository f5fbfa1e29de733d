"""One partition's batch: the offset range it covers and the rows it will insert.

A batch is flushed when it holds ``max_events`` rows, when it is ``flush_interval_s`` old, or,
when it replays a range recorded before a crash, exactly when it reaches that range's end, so
the replay rebuilds the identical batch (same offsets, same deduplication token). Offsets name
a message only within one incarnation of the topic, so the token also carries the topic's id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Batch:
    topic: str
    partition: int
    started_at: float  # monotonic seconds
    first_offset: int = -1
    last_offset: int = -1
    rows: list[list[Any]] = field(default_factory=list)
    replay_until: int | None = None  # last offset of a recorded range being rebuilt
    # Kafka's id of this incarnation of the topic ("" when the broker has none, and for a range
    # recorded before ranges carried one: those are rebuilt with the token they were written with).
    topic_id: str = ""

    def add_offset(self, offset: int) -> None:
        """Every consumed offset belongs to the range, whether it yields a row or not."""
        if self.first_offset < 0:
            self.first_offset = offset
        self.last_offset = offset

    @property
    def empty(self) -> bool:
        return self.first_offset < 0

    @property
    def token(self) -> str:
        """The insert deduplication token: the offset range within this topic incarnation.

        A new broker or a recreated topic starts at offset 0 again; without the id its first
        batches would match the previous incarnation's tokens and ClickHouse would drop them."""
        if not self.topic_id:
            return f"{self.topic}:{self.partition}:{self.first_offset}-{self.last_offset}"
        return (f"{self.topic}@{self.topic_id}:{self.partition}:"
                f"{self.first_offset}-{self.last_offset}")

    def ready(self, now: float, max_events: int, flush_interval_s: float) -> bool:
        if self.empty:
            return False
        if self.replay_until is not None:
            return self.last_offset >= self.replay_until
        return len(self.rows) >= max_events or now - self.started_at >= flush_interval_s


class SeenIds:
    """The most recent event ids of one partition, to drop tracker retries (bounded, FIFO).

    A set for the lookups and a ring of the same ids for the order of eviction: cheaper per
    event than an OrderedDict, which allocates a link per id."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: set[str] = set()
        self._ring: list[str | None] = [None] * capacity
        self._next = 0  # the ring slot the next id goes to, holding the oldest id once full

    def seen(self, event_id: str) -> bool:
        """True when ``event_id`` was already seen; otherwise remember it and return False."""
        ids = self._ids
        if event_id in ids:
            return True
        if self.capacity == 0:
            return False
        i = self._next
        oldest = self._ring[i]
        if oldest is not None:
            ids.discard(oldest)
        self._ring[i] = event_id
        self._next = i + 1 if i + 1 < self.capacity else 0
        ids.add(event_id)
        return False

    def warm(self, event_ids: list[str]) -> None:
        """Remember ``event_ids`` (oldest first), as if they had just been seen."""
        for event_id in event_ids:
            self.seen(event_id)

    def __len__(self) -> int:
        return len(self._ids)
