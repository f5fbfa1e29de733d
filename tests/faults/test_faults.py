"""The fault suite: `viz up` under tracker-like traffic while its parts are stalled, killed and
restarted, with exact accounting by event id (sent, acknowledged, counted, lost, doubled).

Every scenario asserts lost = 0 and doubled = 0; the negative control shows the same accounting
catching a loss. The default profile is short (part of the README's test command); ``make
faults`` runs the long one (VIZ_FAULT_PROFILE=long: the outside review's rates and durations)
and writes the accounting to bench/results/.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest
import requests
from fault_traffic import Accounting, TrackerTraffic, count_events
from viz_platform import Up

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Profile:
    rate: float  # events/s, 1-5 per request
    phase_s: float  # traffic between two faults
    broker_stall_s: float
    pg_outage_s: float
    resend: int  # acknowledged events re-sent after a consumer restart


PROFILES = {
    "short": Profile(rate=100, phase_s=2.0, broker_stall_s=10.0, pg_outage_s=5.0, resend=200),
    "long": Profile(rate=400, phase_s=15.0, broker_stall_s=30.0, pg_outage_s=60.0, resend=2000),
}
PROFILE_NAME = os.environ.get("VIZ_FAULT_PROFILE", "short")
PROFILE = PROFILES[PROFILE_NAME]


def record(name: str, accounting: Accounting) -> None:
    """Print the accounting; with VIZ_FAULT_RESULTS, also keep it as JSON there."""
    print(f"\n[{PROFILE_NAME}] {name}: {accounting.summary()}")
    out = os.environ.get("VIZ_FAULT_RESULTS")
    if out:
        path = Path(out)
        path.mkdir(parents=True, exist_ok=True)
        data = asdict(accounting)
        data.update(lost=len(accounting.lost), doubled=len(accounting.doubled),
                    unknown=len(accounting.unknown), profile=asdict(PROFILE))
        (path / f"{name}.json").write_text(json.dumps(data, indent=1))


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    platform = Up(tmp_path / "viz-data")
    yield platform
    if platform.proc is not None and platform.proc.poll() is None:
        platform.kill_tree()


def signal_child(up: Up, name: str, signum: int) -> None:
    os.kill(up.pids()[name], signum)


def restart_of(up: Up, name: str, signum: int, *, timeout_s: float = 120) -> None:
    """Send ``signum`` to one child of `viz up` and wait until the supervisor restarted it."""
    mark = len(up.output)
    signal_child(up, name, signum)
    up.wait_for_output(f"{name} restarted", timeout_s=timeout_s, since=mark)


def wait_consuming(up: Up, consuming: bool, *, timeout_s: float) -> None:
    """Until the consumer says it consumes, or that it does not (its /status: /readyz
    tolerates not consuming for a while)."""
    deadline = time.monotonic() + timeout_s
    state: dict[str, object] = {}
    while True:
        try:
            state = requests.get(f"{up.url('consumer')}/status", timeout=2).json()
            if state["consuming"] is consuming:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, f"consuming is not {consuming} after " \
            f"{timeout_s:.0f} s: {state}"
        time.sleep(0.2)


def finish_and_count(up: Up, traffic: TrackerTraffic) -> Accounting:
    traffic.finish(timeout_s=120)
    assert traffic.unacknowledged == 0, traffic.ledger.statuses
    assert up.stop() == 0, up.text()
    return traffic.ledger.account(count_events(up.data_dir))


def test_stalls_kills_and_restarts_of_each_part_lose_nothing_and_count_once(up: Up) -> None:
    p = PROFILE
    up.start()
    traffic = TrackerTraffic(up.url("collect"), rate=p.rate)
    traffic.start()
    traffic.wait_for_acks(timeout_s=30)
    time.sleep(p.phase_s)

    traffic.set_phase("warehouse-kill")  # consumer and analytics die with a batch in hand
    restart_of(up, "viz-warehouse", signal.SIGKILL)
    traffic.wait_for_acks(timeout_s=30)
    time.sleep(p.phase_s)

    traffic.set_phase("collect-term")  # answers what it read, flushes, exits; then restarted
    restart_of(up, "viz-collect", signal.SIGTERM)
    traffic.wait_for_acks(timeout_s=30)
    time.sleep(p.phase_s)

    traffic.set_phase("postgres-outage")  # hangs, then stops, then comes back
    signal_child(up, "postgres", signal.SIGSTOP)
    time.sleep(p.pg_outage_s)
    signal_child(up, "postgres", signal.SIGCONT)
    restart_of(up, "postgres", signal.SIGINT)
    traffic.wait_for_acks(timeout_s=30)
    time.sleep(p.phase_s)

    traffic.set_phase("broker-stall")
    signal_child(up, "kafka", signal.SIGSTOP)
    time.sleep(p.broker_stall_s)
    signal_child(up, "kafka", signal.SIGCONT)
    back = time.monotonic()
    traffic.wait_for_acks(timeout_s=30)
    recovered_s = time.monotonic() - back
    # The consumer lost its group in the stall: it rejoins by itself and says so.
    wait_consuming(up, False, timeout_s=30)  # it noticed: the session expired in the stall
    wait_consuming(up, True, timeout_s=90)
    time.sleep(p.phase_s)

    traffic.set_phase("retry-after-consumer-restart")
    # Acknowledged long ago, so inserted and committed: a retry of them must not count again.
    old = traffic.pick_acked("warmup", p.resend // 2) + traffic.pick_acked("broker-stall",
                                                                           p.resend // 2)
    assert len(old) >= p.resend // 2
    restart_of(up, "viz-warehouse", signal.SIGTERM)
    traffic.resend(old)
    time.sleep(p.phase_s)

    accounting = finish_and_count(up, traffic)
    record("process-faults", accounting)
    accounting.assert_exact()
    assert accounting.acknowledged == accounting.sent == accounting.counted
    assert recovered_s < 15, f"collect answered 204 again only {recovered_s:.1f} s after the stall"


def test_restarts_in_a_row_and_a_hard_kill_of_the_whole_tree_lose_nothing(up: Up) -> None:
    p = PROFILE
    up.start()
    traffic = TrackerTraffic(up.url("collect"), rate=p.rate)
    traffic.start()
    for run in ("first", "second"):
        traffic.set_phase(run)
        traffic.wait_for_acks(timeout_s=60)
        time.sleep(p.phase_s)
        assert up.stop() == 0, up.text()  # traffic keeps coming: the tracker queues and retries
        up.start()
    traffic.set_phase("third")
    traffic.wait_for_acks(timeout_s=60)
    time.sleep(p.phase_s)
    up.kill_tree()  # under load, nothing drained, nothing flushed
    traffic.set_phase("after-kill")
    up.start()
    traffic.wait_for_acks(timeout_s=60)
    time.sleep(p.phase_s)
    accounting = finish_and_count(up, traffic)
    record("restarts-and-hard-kill", accounting)
    accounting.assert_exact()
    assert accounting.acknowledged == accounting.sent


def test_negative_control_the_accounting_catches_what_an_in_memory_broker_loses(
        tmp_path: Path) -> None:
    # The broker keeps everything in memory and the consumer holds its batches far longer
    # than the run: a hard kill must lose acknowledged events, and the accounting must say so.
    up = Up(tmp_path / "viz-data", env={"VIZ_UP_KAFKA_STORAGE": "memory",
                                        "VIZ_CONSUMER_FLUSH_INTERVAL_S": "3600"})
    up.start()
    try:
        traffic = TrackerTraffic(up.url("collect"), rate=PROFILE.rate)
        traffic.start()
        traffic.wait_for_acks(timeout_s=30)
        time.sleep(PROFILE.phase_s)
        up.kill_tree()
        up.start()
        accounting = finish_and_count(up, traffic)
    finally:
        if up.proc is not None and up.proc.poll() is None:
            up.kill_tree()
    record("negative-control", accounting)
    assert accounting.lost and not accounting.doubled
    with pytest.raises(AssertionError):
        accounting.assert_exact()
