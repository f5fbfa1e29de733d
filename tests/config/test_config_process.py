"""viz-config as the CLI runs it: the command functions and the served process itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests
from config_support import ADMIN, ADMIN_TOKEN, SERVICE_TOKEN
from live_server import wait_until_ready

from viz.common.web import HttpError
from viz.config import commands
from viz.embedded.process import free_port


async def test_create_and_list_sites_commands(config_dsn: str) -> None:
    created = await commands.create_site(config_dsn, sid="news-main", tid="news", name="News",
                                         domains=["News.Example"], features={"recs": True})
    assert created["sid"] == "news-main" and created["domains"] == ["news.example"]
    assert created["features"] == {"collect": True, "cmp": True, "recs": True}
    await commands.create_site(config_dsn, sid="blog", tid="news", name="Blog", domains=[],
                               features={})
    listed = await commands.list_sites(config_dsn)
    assert [s["sid"] for s in listed] == ["blog", "news-main"]
    assert all("secret_key" not in s and "keys" not in s for s in listed)


async def test_create_site_command_reports_bad_input(config_dsn: str) -> None:
    with pytest.raises(HttpError, match="domains\\[0\\]: must be a hostname"):
        await commands.create_site(config_dsn, sid="news-main", tid="news", name="News",
                                   domains=["https://news.example"], features={})
    await commands.create_site(config_dsn, sid="news-main", tid="news", name="News",
                               domains=[], features={})
    with pytest.raises(HttpError, match="already exists") as caught:
        await commands.create_site(config_dsn, sid="news-main", tid="news", name="News",
                                   domains=[], features={})
    assert caught.value.status == 409


@pytest.mark.slow
def test_serves_until_sigterm_then_exits_cleanly(config_dsn: str) -> None:
    port = free_port("127.0.0.1")
    env = {**os.environ, "VIZ_PG_DSN": config_dsn, "VIZ_CONFIG_PORT": str(port),
           "VIZ_ADMIN_TOKEN": ADMIN_TOKEN, "VIZ_SERVICE_TOKEN": SERVICE_TOKEN,
           "VIZ_LOG_LEVEL": "INFO"}
    process = subprocess.Popen([sys.executable, "-m", "viz.config"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, "viz-config")
        response = requests.post(f"{url}/admin/sites", headers=ADMIN, timeout=5,
                                 json={"sid": "news-main", "tid": "news"})
        assert response.status_code == 201
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, stderr.decode()
    log = stderr.decode()
    assert "viz-config listening on" in log and "viz-config stopping" in log
    assert "Traceback" not in log
    assert ADMIN_TOKEN not in log and SERVICE_TOKEN not in log and config_dsn not in log
