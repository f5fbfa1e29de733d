"""A child server dies with the process that started it, whatever killed that process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from viz.embedded.process import ServerProcess, wait_for_previous, wait_until

# A short-lived parent: starts one "server" (sleep), prints its pid, then waits to be killed.
PARENT = """
import sys, time
from pathlib import Path
from viz.embedded.process import ServerProcess
server = ServerProcess("sleeper", ["sleep", "300"], log_path=Path(sys.argv[1]),
                       user=sys.argv[2] or None, die_with_parent=sys.argv[3] == "1")
server.start()
print(server.pid, flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")  # a zombie has exited; only its parent has not reaped it


def _child_of_killed_parent(tmp_path: Path, *, user: str, die_with_parent: bool) -> int:
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "sleeper.log"), user,
         "1" if die_with_parent else "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert not _gone(child)
        if user:
            assert Path(f"/proc/{child}").stat().st_uid != os.getuid()
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
    return child


@pytest.mark.parametrize("user", ["", "nobody"])
def test_a_child_server_dies_when_its_parent_is_sigkilled(tmp_path: Path, user: str) -> None:
    if user and os.geteuid() != 0:
        pytest.skip("running a child as another user needs root")
    child = _child_of_killed_parent(tmp_path, user=user, die_with_parent=True)
    wait_until(lambda: _gone(child), timeout_s=5, what=f"child {child} of a killed parent")


def test_without_die_with_parent_the_child_outlives_its_parent(tmp_path: Path) -> None:
    """The control: the check above would notice an orphan."""
    child = _child_of_killed_parent(tmp_path, user="", die_with_parent=False)
    try:
        time.sleep(0.5)
        assert not _gone(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_start_waits_for_a_previous_server_named_in_the_pid_file(tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    old = ServerProcess("old", ["sleep", "300"], log_path=tmp_path / "old.log", pid_file=pid_file)
    old.start()
    assert pid_file.read_text().strip() == str(old.pid)
    try:
        with pytest.raises(RuntimeError, match="still runs"):
            wait_for_previous(pid_file, "sleep", timeout_s=0.3)
        wait_for_previous(pid_file, "something-else", timeout_s=0.3)  # another binary: ignored
    finally:
        old.kill()
    wait_for_previous(pid_file, "sleep", timeout_s=1)  # gone: no wait
    new = ServerProcess("new", ["sleep", "300"], log_path=tmp_path / "new.log", pid_file=pid_file)
    new.start()
    try:
        assert pid_file.read_text().strip() == str(new.pid)
    finally:
        new.kill()
