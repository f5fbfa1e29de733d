"""The ceiling: nginx answering an empty 204 to ``POST /collect`` on one worker, access log off.

The config is written into a fresh directory and nginx runs in the foreground there (its own
pid file, error log and temp paths), so nothing of a system nginx is used or touched.
"""

from __future__ import annotations

import shutil
from pathlib import Path

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{
    worker_connections 4096;
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # The load generator keeps its connections for the whole run.
    keepalive_requests 100000000;
    keepalive_timeout 600s;
    client_max_body_size 64k;
    server {{
        listen {host}:{port} backlog=4096;
        location = /collect {{ return 204; }}
        location = /healthz {{ return 200 "ok\\n"; }}
        location / {{ return 404; }}
    }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise RuntimeError("nginx is not installed: run scripts/bench-deps.sh")
    return found


def nginx_argv(root: Path, host: str, port: int) -> list[str]:
    """Write the config under ``root`` and return the command that serves it in the foreground."""
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root.resolve(), host=host, port=port))
    return [nginx_binary(), "-p", str(root.resolve()), "-c", str(conf.resolve()),
            "-e", str((root / "error.log").resolve())]
