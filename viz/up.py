"""``viz up``: the whole platform on one machine, on embedded engines, supervised, stopped in order.

Start order: engines (PostgreSQL, Redis, broker) → migrations → services. While it runs, a
process that exits is started again with backoff (:mod:`viz.supervisor`); only a crash loop, or
Ctrl-C, stops the platform. Stop order is the reverse of the start, and every service finishes
what it acknowledged before the engines go away: collect stops accepting, the consumer drains
the broker into ClickHouse and commits, and only then does the broker stop.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from viz.common.settings import Env, KafkaSettings
from viz.embedded import EmbeddedKafka, EmbeddedPostgres, EmbeddedRedis, chdb_dsn
from viz.embedded.process import ServerProcess, port_open, wait_until
from viz.supervisor import Notice, RestartPolicy, Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpSettings:
    data_dir: Path
    host: str
    pg_port: int
    redis_port: int
    kafka_port: int
    config_port: int
    collect_port: int
    cmp_port: int
    analytics_port: int
    consumer_port: int
    kafka_storage: str
    kafka_fsync: bool
    start_timeout_s: float

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, data_dir: str) -> UpSettings:
        env = Env(environ)
        settings = cls(
            data_dir=Path(data_dir).resolve(),
            host=env.str("VIZ_UP_HOST", "127.0.0.1"),
            pg_port=env.int("VIZ_UP_PG_PORT", 54320, min=1, max=65535),
            redis_port=env.int("VIZ_UP_REDIS_PORT", 63790, min=1, max=65535),
            kafka_port=env.int("VIZ_UP_KAFKA_PORT", 19092, min=1, max=65535),
            config_port=env.int("VIZ_CONFIG_PORT", 3002, min=1, max=65535),
            collect_port=env.int("VIZ_COLLECT_PORT", 3001, min=1, max=65535),
            cmp_port=env.int("VIZ_CMP_PORT", 3003, min=1, max=65535),
            analytics_port=env.int("VIZ_ANALYTICS_PORT", 3004, min=1, max=65535),
            consumer_port=env.int("VIZ_CONSUMER_PORT", 3006, min=1, max=65535),
            # Durable by default: a hard kill keeps every acknowledged event (docs/decisions.md).
            kafka_storage=env.str("VIZ_UP_KAFKA_STORAGE", "s3", choices=("s3", "memory")),
            kafka_fsync=env.bool("VIZ_UP_KAFKA_FSYNC", False),
            start_timeout_s=env.float("VIZ_UP_START_TIMEOUT_S", 90.0, min=1.0),
        )
        env.done()
        return settings


def load_or_create_secrets(path: Path) -> dict[str, str]:
    """This installation's admin token, service token and consent-cookie key, generated once
    and kept 0600."""
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
    changed = False
    for key in ("VIZ_ADMIN_TOKEN", "VIZ_SERVICE_TOKEN", "VIZ_CMP_COOKIE_SECRET"):
        if not values.get(key):
            values[key] = secrets.token_urlsafe(32)
            changed = True
    if changed:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("".join(f"{k}={v}\n" for k, v in values.items()))
    os.chmod(path, 0o600)
    return values


DEMO_SID = "demo"


async def ensure_demo_site(pg_dsn: str) -> str | None:
    """On a first start (no sites at all) create a site a newcomer can send events to."""
    from viz.config import commands

    if await commands.list_sites(pg_dsn):
        return None
    await commands.create_site(pg_dsn, sid=DEMO_SID, tid=DEMO_SID, name="Demo site",
                               domains=["localhost", "127.0.0.1"],
                               features={"collect": True, "cmp": True, "recs": False})
    return DEMO_SID


class Platform:
    """Owns every engine and service process of one ``viz up``."""

    def __init__(self, settings: UpSettings, *, out: IO[str] = sys.stdout,
                 policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.out = out
        data = settings.data_dir
        self.pg = EmbeddedPostgres(data / "postgres", port=settings.pg_port, host=settings.host)
        self.redis = EmbeddedRedis(data / "redis", port=settings.redis_port, host=settings.host)
        self.kafka = EmbeddedKafka(data / "kafka", port=settings.kafka_port, host=settings.host,
                                   storage="s3" if settings.kafka_storage == "s3" else "memory",
                                   fsync=settings.kafka_fsync)
        self.services: list[ServerProcess] = []
        self.supervisor = Supervisor(policy)
        self._env: dict[str, str] = {}
        self._stop = threading.Event()

    def _say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def _service_env(self, secret_values: Mapping[str, str]) -> dict[str, str]:
        s = self.settings
        return {
            "VIZ_PG_DSN": self.pg.dsn,
            "VIZ_REDIS_URL": self.redis.url,
            "VIZ_KAFKA_BOOTSTRAP": self.kafka.bootstrap,
            "VIZ_CLICKHOUSE_DSN": chdb_dsn(str(s.data_dir / "clickhouse")),
            "VIZ_CONFIG_HOST": s.host,
            "VIZ_CONFIG_PORT": str(s.config_port),
            "VIZ_CONFIG_URL": f"http://{s.host}:{s.config_port}",
            "VIZ_COLLECT_HOST": s.host,
            "VIZ_COLLECT_PORT": str(s.collect_port),
            "VIZ_ANALYTICS_HOST": s.host,
            "VIZ_ANALYTICS_PORT": str(s.analytics_port),
            "VIZ_CONSUMER_HOST": s.host,
            "VIZ_CONSUMER_PORT": str(s.consumer_port),
            "VIZ_CMP_HOST": s.host,
            "VIZ_CMP_PORT": str(s.cmp_port),
            "VIZ_PUBLIC_COLLECT_URL": f"http://{s.host}:{s.collect_port}",
            "VIZ_PUBLIC_CONFIG_URL": f"http://{s.host}:{s.config_port}",
            "VIZ_PUBLIC_CMP_URL": f"http://{s.host}:{s.cmp_port}",
            "VIZ_CONFIG_DEMO_PAGES": "1",
            **secret_values,
        }

    def _check_ports_free(self, settle_s: float = 10.0) -> None:
        s = self.settings

        def busy_ports() -> list[str]:
            return [f"{name} port {port}" for name, port in
                    (("postgres", s.pg_port), ("redis", s.redis_port), ("kafka", s.kafka_port),
                     ("viz-config", s.config_port), ("viz-collect", s.collect_port),
                     ("viz-cmp", s.cmp_port), ("viz-analytics", s.analytics_port),
                     ("viz-consumer", s.consumer_port)) if port_open(s.host, port)]

        # Processes of a `viz up` killed a moment ago may still be exiting: give them a moment.
        busy = busy_ports()
        deadline = time.monotonic() + settle_s
        while busy and time.monotonic() < deadline:
            time.sleep(0.2)
            busy = busy_ports()
        if busy:
            raise RuntimeError("already in use: " + ", ".join(busy)
                               + " (another `viz up`? set VIZ_UP_*_PORT / VIZ_*_PORT)")

    def _start_service(self, name: str, port: int) -> None:
        proc = ServerProcess(
            f"viz-{name}", [sys.executable, "-m", "viz", "serve", name],
            log_path=self.settings.data_dir / "logs" / f"{name}.log",
            stop_signal=signal.SIGTERM, env={**os.environ, **self._env},
        )
        proc.start()
        self.services.append(proc)
        url = f"http://{self.settings.host}:{port}/healthz"

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
                    return bool(resp.status == 200)
            except OSError:
                return False

        try:
            wait_until(healthy, timeout_s=self.settings.start_timeout_s, what=f"viz-{name}",
                       interval_s=0.1, alive=proc.running)
        except (TimeoutError, RuntimeError):
            self._say(f"viz-{name} failed to start; last log lines:\n{proc.tail_log()}")
            raise
        # From here on a restart does not wait for health: the supervisor keeps watching.
        self.supervisor.add(proc.name, proc.start, proc.running, now=time.monotonic())

    def _restart_kafka(self) -> None:
        from viz.migrations.kafka import ensure_topics

        self.kafka.stop()  # whichever of broker and storage still runs: both start together
        self.kafka.start()
        # An in-memory broker comes back empty: the topics must exist before anyone produces.
        ensure_topics(KafkaSettings.read(Env(self._env)))

    def start(self) -> None:
        import asyncio

        from viz.migrations.kafka import ensure_topics
        from viz.migrations.postgres import migrate_postgres

        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        (s.data_dir / "run").mkdir(exist_ok=True)
        self._check_ports_free()
        secret_values = load_or_create_secrets(s.data_dir / "secrets.env")

        self._say(f"viz up: data in {s.data_dir}")
        now = time.monotonic
        self.pg.start()
        self.supervisor.add("postgres", self.pg.start, self.pg.running, now=now())
        self._say(f"  postgres    {self.pg.dsn}")
        self.redis.start()
        self.supervisor.add("redis", self.redis.start, self.redis.running, now=now())
        self._say(f"  redis       {self.redis.url}")
        self.kafka.start()
        self.supervisor.add("kafka", self._restart_kafka, self.kafka.running, now=now())
        durability = ("durable: SeaweedFS under " + str(s.data_dir / "kafka")
                      + (", fsync on" if s.kafka_fsync else "")
                      if s.kafka_storage == "s3" else "in memory: drained before it stops")
        self._say(f"  kafka       {self.kafka.bootstrap} ({durability})")

        applied = asyncio.run(migrate_postgres(self.pg.dsn))
        self._env = self._service_env(secret_values)
        topics = ensure_topics(KafkaSettings.read(Env(self._env)))
        self._say(f"  migrations  {len(applied)} applied, {len(topics)} topic(s) created")

        public_env = {k: v for k, v in self._env.items() if k not in secret_values}
        (s.data_dir / "run" / "services.env").write_text(
            "".join(f"{k}={v}\n" for k, v in public_env.items()))

        self._start_service("config", s.config_port)
        self._say(f"  viz-config     http://{s.host}:{s.config_port}  (admin API: /admin, "
                  f"bearer tokens in {s.data_dir / 'secrets.env'})")
        demo = asyncio.run(ensure_demo_site(self.pg.dsn))
        if demo:
            self._say(f"  demo site      '{demo}' created (domains: localhost, 127.0.0.1)")
        self._start_service("cmp", s.cmp_port)
        self._say(f"  viz-cmp        http://{s.host}:{s.cmp_port}")
        # chDB lets one process open the engine: consumer and analytics share it.
        self._start_service("warehouse", s.analytics_port)
        self._say(f"  viz-analytics  http://{s.host}:{s.analytics_port}  "
                  f"(ClickHouse in {s.data_dir / 'clickhouse'})")
        self._say(f"  viz-consumer   http://{s.host}:{s.consumer_port}/readyz  "
                  "(in the same process as viz-analytics)")
        self._start_service("collect", s.collect_port)
        self._say(f"  viz-collect    http://{s.host}:{s.collect_port}")
        self._say(f"  demo page      http://{s.host}:{s.config_port}/demo/{DEMO_SID}")
        self._say(f"  logs        {s.data_dir / 'logs'}")
        self._say("viz up: ready. Ctrl-C stops everything (data stays for the next start).")

    def stop(self) -> None:
        """Services first (collect stops accepting, the warehouse drains the broker into
        ClickHouse and commits), then the engines."""
        for proc in reversed(self.services):
            # Longer than the warehouse's drain (120 s): it is never killed mid-drain.
            proc.stop(timeout_s=180)
        self.services.clear()
        self.kafka.stop()
        self.redis.stop()
        self.pg.stop()

    def _report(self, notice: Notice) -> None:
        if notice.kind == "gave_up":
            self._say(f"viz up: {notice.child} keeps crashing ({notice.detail}); "
                      "stopping the platform in order")
        elif notice.kind == "restarted":
            self._say(f"viz up: {notice.child} restarted")
        else:
            what = "exited" if notice.kind == "exited" else f"failed to start ({notice.detail})"
            if notice.child == "kafka" and self.settings.kafka_storage == "memory":
                what += "; its in-memory topics are gone (VIZ_UP_KAFKA_STORAGE=memory)"
            self._say(f"viz up: {notice.child} {what}; restarting in {notice.delay_s:.0f} s "
                      f"(logs in {self.settings.data_dir / 'logs'})")

    def pids(self) -> dict[str, int]:
        """Every engine and service process running now, by name."""
        found = {"postgres": self.pg.pid, "redis": self.redis.pid, **self.kafka.pids(),
                 **{proc.name: proc.pid for proc in self.services}}
        return {name: pid for name, pid in found.items() if pid is not None}

    def _write_pids(self) -> None:
        """``run/pids.json``: what runs now (for operators and the fault tests)."""
        path = self.settings.data_dir / "run" / "pids.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.pids(), indent=1, sort_keys=True))
        tmp.replace(path)

    def supervise(self) -> int:
        """Until Ctrl-C or SIGTERM (0) or a crash loop (1): restart what exits."""
        self._write_pids()
        while not self._stop.wait(0.5):
            notices = self.supervisor.check(time.monotonic())
            for notice in notices:
                self._report(notice)
                if notice.kind == "gave_up":
                    return 1
            if notices:
                self._write_pids()
        return 0

    def run(self) -> int:
        lock_path = self.settings.data_dir / "run" / "up.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._say(f"viz up: another `viz up` is using {self.settings.data_dir}")
                return 1
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: self._stop.set())
            code = 0
            try:
                self.start()
                code = self.supervise()
            except Exception as exc:
                self._say(f"viz up: {exc}")
                code = 1
            finally:
                self._say("viz up: stopping services, then engines…")
                self.stop()
                self._say("viz up: stopped.")
            return code
