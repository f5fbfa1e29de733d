"""The supervisor's bookkeeping: restart with doubling backoff, reset after a stable run, give up
on a crash loop. Processes are stand-ins here (pure logic); tests/faults/ kill real ones."""

from __future__ import annotations

from viz.supervisor import RestartPolicy, Supervisor

POLICY = RestartPolicy(initial_backoff_s=1.0, max_backoff_s=8.0, crash_limit=3, window_s=100.0,
                       stable_after_s=30.0)


class Proc:
    def __init__(self, *, fail_starts: int = 0) -> None:
        self.alive = True
        self.starts = 0
        self.fail_starts = fail_starts

    def start(self) -> None:
        self.starts += 1
        if self.fail_starts:
            self.fail_starts -= 1
            raise RuntimeError("port busy")
        self.alive = True

    def running(self) -> bool:
        return self.alive


def test_a_child_that_exits_is_restarted_after_its_backoff_and_not_before() -> None:
    sup, proc = Supervisor(POLICY), Proc()
    sup.add("viz-warehouse", proc.start, proc.running, now=0.0)
    assert sup.check(5.0) == []
    proc.alive = False
    [notice] = sup.check(6.0)
    assert (notice.kind, notice.child, notice.delay_s) == ("exited", "viz-warehouse", 1.0)
    assert sup.check(6.5) == [] and proc.starts == 0
    [notice] = sup.check(7.0)
    assert notice.kind == "restarted" and proc.starts == 1 and proc.running()


def test_backoff_doubles_per_crash_in_a_row_up_to_the_cap_and_resets_after_a_stable_run() -> None:
    policy = RestartPolicy(initial_backoff_s=1.0, max_backoff_s=4.0, crash_limit=10,
                           window_s=1000.0, stable_after_s=30.0)
    sup, proc = Supervisor(policy), Proc()
    sup.add("viz-collect", proc.start, proc.running, now=0.0)
    delays = []
    now = 10.0
    for _ in range(4):
        proc.alive = False
        [exited] = sup.check(now)
        delays.append(exited.delay_s)
        now += exited.delay_s
        assert [n.kind for n in sup.check(now)] == ["restarted"]
    assert delays == [1.0, 2.0, 4.0, 4.0]
    now += 31.0
    assert sup.check(now) == []  # ran long enough: the next crash starts from 1 s again
    proc.alive = False
    assert sup.check(now)[0].delay_s == 1.0


def test_a_crash_loop_gives_up_once_and_never_restarts_again() -> None:
    sup, proc = Supervisor(POLICY), Proc()
    sup.add("viz-warehouse", proc.start, proc.running, now=0.0)
    kinds = []
    now = 1.0
    for _ in range(6):
        proc.alive = False
        for notice in sup.check(now):
            kinds.append(notice.kind)
        now += 20.0
        kinds.extend(n.kind for n in sup.check(now))
    assert kinds.count("gave_up") == 1
    assert kinds[:6] == ["exited", "restarted"] * 3 and kinds[6] == "gave_up"
    starts = proc.starts
    assert sup.check(now + 10_000) == [] and proc.starts == starts


def test_crashes_older_than_the_window_do_not_count_towards_the_limit() -> None:
    sup, proc = Supervisor(POLICY), Proc()
    sup.add("postgres", proc.start, proc.running, now=0.0)
    now = 0.0
    for _ in range(10):  # one crash every 60 s: never more than 2 within 100 s
        now += 60.0
        proc.alive = False
        kinds = [n.kind for n in sup.check(now)] + [n.kind for n in sup.check(now + 10.0)]
        assert "gave_up" not in kinds
    assert proc.starts == 10


def test_a_failed_start_counts_as_a_crash_and_is_retried_with_more_backoff() -> None:
    sup, proc = Supervisor(POLICY), Proc(fail_starts=2)
    sup.add("kafka", proc.start, proc.running, now=0.0)
    proc.alive = False
    assert sup.check(1.0)[0].delay_s == 1.0
    [failed] = sup.check(2.0)
    assert (failed.kind, failed.detail, failed.delay_s) == ("start_failed", "port busy", 2.0)
    [failed] = sup.check(4.0)
    assert failed.delay_s == 4.0
    assert [n.kind for n in sup.check(8.0)] == ["restarted"] and proc.running()
