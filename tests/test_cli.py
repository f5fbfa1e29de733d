"""The `viz` command as an operator uses it: migrate, then manage sites without the back-office."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def viz(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "viz", *args], capture_output=True, text=True,
                          env={**os.environ, **env}, cwd=cwd, timeout=120)


def test_migrate_then_create_and_list_sites(pg_database: str, tmp_path: Path) -> None:
    env = {"VIZ_PG_DSN": pg_database}
    first = viz("migrate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "migration(s) applied: 0001_tenants_and_sites, 0002_api_tokens" in first.stdout
    assert "postgres: 0 migration(s) applied" in viz("migrate", env=env, cwd=tmp_path).stdout

    created = viz("site", "create", "my-blog", "--domain", "blog.example.com", "--domain",
                  "example.com", "--features", "collect", env=env, cwd=tmp_path)
    assert created.returncode == 0, created.stderr
    site = json.loads(created.stdout)
    assert site["sid"] == "my-blog" and site["tid"] == "my-blog"
    assert site["features"] == {"collect": True, "cmp": False, "recs": False}
    assert "secret" not in created.stdout.lower()

    listed = viz("site", "list", env=env, cwd=tmp_path)
    assert listed.stdout.split()[:2] == ["my-blog", "my-blog"]


def test_bad_input_gets_a_message_not_a_traceback(pg_database: str, tmp_path: Path) -> None:
    env = {"VIZ_PG_DSN": pg_database}
    viz("migrate", env=env, cwd=tmp_path)
    bad = viz("site", "create", "a/b", "--domain", "x.example", env=env, cwd=tmp_path)
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr and "sid" in bad.stderr
    viz("site", "create", "twice", "--domain", "x.example", env=env, cwd=tmp_path)
    again = viz("site", "create", "twice", "--domain", "x.example", env=env, cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_missing_settings_are_listed_at_once(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIZ_")}
    result = subprocess.run([sys.executable, "-m", "viz", "serve", "config"], capture_output=True,
                            text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    for variable in ("VIZ_PG_DSN", "VIZ_ADMIN_TOKEN", "VIZ_SERVICE_TOKEN"):
        assert variable in result.stderr
    assert "Traceback" not in result.stderr
