"""viz-cmp as `viz serve cmp` runs it: serves, answers a decision, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid

import requests
from cmp_support import ADMIN, COOKIE_SECRET, DOMAIN, ORIGIN, SERVICE_TOKEN, config_settings
from live_server import LiveServer, wait_until_ready

from viz.config.app import create_app as create_config_app
from viz.embedded.process import free_port


def test_viz_serve_cmp_serves_until_sigterm_then_exits_cleanly(cmp_database: str) -> None:
    config = LiveServer(create_config_app(config_settings(cmp_database)))
    config.start()
    port = free_port("127.0.0.1")
    env = {**os.environ, "VIZ_PG_DSN": cmp_database, "VIZ_CMP_PORT": str(port),
           "VIZ_CONFIG_URL": config.url, "VIZ_SERVICE_TOKEN": SERVICE_TOKEN,
           "VIZ_CMP_COOKIE_SECRET": COOKIE_SECRET, "VIZ_LOG_LEVEL": "INFO"}
    process = subprocess.Popen([sys.executable, "-m", "viz", "serve", "cmp"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sid = "proc-" + uuid.uuid4().hex[:8]
        response = requests.post(f"{config.url}/admin/sites", headers=ADMIN, timeout=10,
                                 json={"sid": sid, "tid": "t" + uuid.uuid4().hex[:8],
                                       "domains": [DOMAIN]})
        assert response.status_code == 201
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(url, process, "viz-cmp")
        response = requests.post(f"{url}/cmp/consent", timeout=5, headers={"Origin": ORIGIN},
                                 json={"sid": sid, "tier": 1, "banner_version": "v1"})
        assert response.status_code == 200, response.text
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        config.stop()
    log = stderr.decode()
    assert process.returncode == 0, log
    assert "viz-cmp listening on" in log and "viz-cmp stopping" in log
    assert "Traceback" not in log
    assert COOKIE_SECRET not in log and SERVICE_TOKEN not in log and cmp_database not in log
