"""`viz up` end to end: engines, migrations, every service, a real event from collect to the
analytics API, a clean stop that loses nothing acknowledged, and data kept for the next start."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from viz_platform import Up

from viz.embedded.process import port_open

pytestmark = pytest.mark.slow

BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0.0.0 Safari/537.36")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    platform = Up(tmp_path / "viz-data")
    yield platform
    if platform.proc is not None and platform.proc.poll() is None:
        platform.proc.kill()
        platform.proc.wait()


def send_pageview(up: Up, path: str) -> None:
    headers = {"User-Agent": BROWSER}
    init = requests.get(f"{up.url('collect')}/init", params={"sid": "demo", "tier": "1"},
                        headers=headers, timeout=10)
    assert init.status_code == 200, init.text
    ident = init.json()
    body = {"sid": "demo", "bid": ident["bid"], "token": ident["token"], "events": [
        {"id": uuid.uuid4().hex[:16], "t": "pageview", "p": path, "ts": int(time.time() * 1000)}]}
    sent = requests.post(f"{up.url('collect')}/collect", data=json.dumps(body),
                         headers={**headers, "Content-Type": "text/plain"}, timeout=10)
    assert sent.status_code == 204, sent.text


def pageviews(up: Up, token: str) -> int:
    response = requests.get(f"{up.url('analytics')}/analytics/overview",
                            params={"site": "demo"},
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["pageviews"])


def wait_for_pageviews(up: Up, token: str, expected: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (seen := pageviews(up, token)) < expected:
        assert time.monotonic() < deadline, f"saw {seen} pageviews, expected {expected}"
        time.sleep(0.2)
    assert seen == expected


def test_platform_runs_counts_an_event_stops_cleanly_and_keeps_its_data(up: Up) -> None:
    up.start()
    output = "".join(up.output)
    assert "demo site" in output and up.admin_token() not in output
    assert oct((up.data_dir / "secrets.env").stat().st_mode & 0o777) == "0o600"
    admin = {"Authorization": f"Bearer {up.admin_token()}"}
    token = requests.post(f"{up.url('config')}/admin/tokens", headers=admin, timeout=10,
                          json={"name": "test", "site_ids": ["demo"]}).json()["token"]

    send_pageview(up, "/first")
    wait_for_pageviews(up, token, 1)
    # The README's way to see what collect acknowledged.
    tail = subprocess.run([sys.executable, "-m", "viz", "--data-dir", str(up.data_dir), "tail",
                           "-n", "5"], capture_output=True, text=True, timeout=60, check=True)
    assert '"p": "/first"' in tail.stdout and '"sid": "demo"' in tail.stdout
    # Acknowledged, then stopped at once: the stop drains the in-memory broker first.
    send_pageview(up, "/second")
    assert up.stop() == 0, "".join(up.output)
    assert not any(port_open("127.0.0.1", port) for port in up.ports.values())

    up.start()
    assert "demo site" not in "".join(up.output[-12:])  # created once only
    wait_for_pageviews(up, token, 2, timeout_s=20)
    assert up.stop() == 0
