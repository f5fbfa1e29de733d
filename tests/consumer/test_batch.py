"""The per-partition duplicate filter keeps exactly the most recent ids."""

from __future__ import annotations

from viz.consumer.batch import SeenIds


def test_remembers_the_last_capacity_ids_and_forgets_the_oldest_first() -> None:
    seen = SeenIds(3)
    assert [seen.seen(e) for e in ["a", "b", "a", "c"]] == [False, False, True, False]
    assert seen.seen("d") is False  # evicts "a", the oldest
    assert [seen.seen(e) for e in ["b", "c", "d"]] == [True, True, True]
    assert seen.seen("a") is False  # forgotten, so new again (and now evicts "b")
    assert [seen.seen(e) for e in ["c", "d", "a"]] == [True, True, True]
    assert seen.seen("b") is False


def test_matches_a_plain_fifo_model_over_a_long_run() -> None:
    capacity, seen, model = 7, SeenIds(7), []
    for i in range(500):
        event_id = str((i * 7919) % 23)
        expected = event_id in model
        if not expected:
            model = (model + [event_id])[-capacity:]
        assert seen.seen(event_id) is expected


def test_capacity_zero_remembers_nothing() -> None:
    seen = SeenIds(0)
    assert [seen.seen("a"), seen.seen("a")] == [False, False]
