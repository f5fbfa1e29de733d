"""Service benchmark: nginx empty 204, a plain aiohttp collect and viz-collect, side by side.

Optional targets ``floor``, ``floor-nowait`` and ``floor-lean`` (``floor_collect.py``): the bare
contract on collect's own stack, the body produced as is and a 204 after its delivery report
(``-nowait``: right after ``produce``; ``-lean``: with /collect's essential checks and envelopes;
``-lean-c``: the same as a typed Cython extension type, built from ``lean_c.pyx`` on demand).

One run starts the embedded broker (and, for viz-collect, PostgreSQL + viz-config + a site),
then for every repetition and every server: starts the server pinned to one core, measures
throughput at saturation and latency at fixed open-loop rates with ``bench/loadgen`` pinned to
the other core, and stops it. Servers are interleaved within a repetition so that machine noise
hits them alike; medians over repetitions and per-repetition ratios are reported.

    .venv/bin/python bench/service/run.py                      # all three, 3 repetitions
    .venv/bin/python bench/service/run.py --targets nginx,aiohttp --reps 1 --duration 5
    .venv/bin/python bench/service/run.py --results-md bench/RESULTS.md --json out.json

Everything it starts runs on loopback, on free ports, under a temporary directory, and is
stopped at the end (also on Ctrl-C). Each load run is bounded by count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOADGEN = REPO / "bench" / "loadgen" / "loadgen"
sys.path.insert(0, str(HERE))

from nginx import nginx_argv  # noqa: E402

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/126.0 Safari/537.36")
SITE_DOMAIN = "bench.example"
SECTION = "## Service benchmarks"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- processes


class Proc:
    """A child process this runner started; stopped by its own pid only."""

    def __init__(self, name: str, argv: list[str], *, log_path: Path, env: dict[str, str] | None = None,
                 cpu: str | None = None, stop_signal: int = signal.SIGTERM) -> None:
        self.name = name
        self.stop_signal = stop_signal
        self.log_path = log_path
        full = (["taskset", "-c", cpu] if cpu is not None else []) + argv
        self.argv = full
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env,
                                          start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout_s: float = 20.0) -> None:
        if not self.alive():
            return
        try:
            os.kill(self.popen.pid, self.stop_signal)
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log(f"{self.name} did not stop in {timeout_s:.0f} s; SIGKILL")
            self.popen.kill()
            self.popen.wait(10)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) of ``pid`` and its descendants so far."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += times.get(p, 0.0)
        todo.extend(c for c, parent in parents.items() if parent == p)
    return total


def machine_cpu() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


class CpuWatch:
    """CPU used during one load run: the server's, and everyone else's (the noise)."""

    def __init__(self, pid: int, broker_pids: tuple[int, ...]) -> None:
        self.pid = pid
        self.broker_pids = broker_pids
        self.t0 = time.monotonic()
        self.server0 = tree_cpu_s(pid)
        self.broker0 = sum(tree_cpu_s(b) for b in broker_pids)
        self.busy0, self.steal0 = machine_cpu()

    def stamp(self, result: dict[str, Any]) -> None:
        wall = time.monotonic() - self.t0
        server = tree_cpu_s(self.pid) - self.server0
        busy, steal = machine_cpu()
        broker = sum(tree_cpu_s(b) for b in self.broker_pids) - self.broker0
        result["server_cpu_util"] = server / wall
        result["broker_cpu_cores"] = broker / wall
        # Everything else: other engineers' jobs, PostgreSQL, viz-config, this runner: the noise.
        result["other_cpu_cores"] = max(
            0.0, (busy - self.busy0 - server - broker - result["client_cpu_s"]) / wall)
        result["steal_cores"] = (steal - self.steal0) / wall


def wait_for_quiet(below_cores: float, max_wait_s: float) -> float:
    """Wait (bounded) until the machine's busy CPU over 2 s is under ``below_cores``.

    Nothing of ours runs between repetitions, so this is everyone else's load. Returns the last
    sample, which the report shows next to the repetition.
    """
    deadline = time.monotonic() + max_wait_s
    said = False
    while True:
        b0, _ = machine_cpu()
        time.sleep(2.0)
        busy = (machine_cpu()[0] - b0) / 2.0
        if busy < below_cores or time.monotonic() >= deadline:
            return busy
        if not said:
            log(f"  machine busy ({busy:.2f} cores): waiting up to {max_wait_s:.0f} s for "
                f"< {below_cores:.2f}")
            said = True


def http_get(url: str, *, headers: dict[str, str] | None = None, timeout_s: float = 2.0
             ) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, proc: Proc | None, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.name} exited while starting:\n{proc.tail()}")
        try:
            if http_get(url, timeout_s=1.0)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s")


# ----------------------------------------------------------------------------- environment


@dataclass
class Site:
    sid: str
    tid: str
    key: bytes


@dataclass
class Broker:
    storage: str
    bootstrap: str
    pids: tuple[int, ...]  # Tansu, and SeaweedFS for the s3 storages: the broker's CPU


BROKER_STORAGES = ("memory", "s3", "s3-fsync")


def broker_storages(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BROKER_STORAGES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"storages are {', '.join(BROKER_STORAGES)}")
    return names


@dataclass
class Env:
    """The shared pieces: the broker(s), and for viz-collect PostgreSQL + viz-config + a site."""

    root: Path
    args: argparse.Namespace
    procs: list[Any] = field(default_factory=list)
    bootstrap: str = ""
    config_url: str = ""
    service_token: str = ""
    site: Site | None = None
    brokers: dict[str, Broker] = field(default_factory=dict)

    def start(self, with_config: bool) -> None:
        from viz.common.settings import KafkaSettings
        from viz.embedded import EmbeddedKafka
        from viz.migrations.kafka import ensure_topics

        for storage in self.args.broker_storage:
            kafka = EmbeddedKafka(self.root / f"kafka-{storage}",
                                  storage="memory" if storage == "memory" else "s3",
                                  fsync=storage == "s3-fsync")
            kafka.start()
            self.procs.append(kafka)
            pids = (kafka.broker_pid,
                    kafka.seaweedfs.pid if kafka.seaweedfs is not None else None)
            self.brokers[storage] = Broker(storage, kafka.bootstrap,
                                           tuple(p for p in pids if p is not None))
            settings = KafkaSettings(bootstrap=kafka.bootstrap, topic_raw="viz.traffic.raw",
                                     topic_dlq="viz.traffic.dlq", partitions=12)
            ensure_topics(settings)
            log(f"broker ({storage}) on {kafka.bootstrap}, topics ready")
        self.kafka_settings = settings
        self.bootstrap = self.brokers[self.args.broker_storage[0]].bootstrap
        if not with_config:
            self.site = Site("bench", "bench", secrets.token_bytes(32))
            return
        from viz.embedded import EmbeddedPostgres, free_port
        from viz.migrations.postgres import migrate_postgres

        pg = EmbeddedPostgres(self.root / "pg", durable=False)
        pg.start()
        self.procs.append(pg)
        asyncio.run(migrate_postgres(pg.dsn))
        port = free_port()
        self.service_token = secrets.token_urlsafe(24)
        env = {**os.environ, "VIZ_PG_DSN": pg.dsn, "VIZ_ADMIN_TOKEN": secrets.token_urlsafe(24),
               "VIZ_SERVICE_TOKEN": self.service_token, "VIZ_CONFIG_PORT": str(port),
               "VIZ_CONFIG_HOST": "127.0.0.1", "VIZ_LOG_LEVEL": "WARNING"}
        config = Proc("viz-config", [sys.executable, "-m", "viz", "serve", "config"],
                      log_path=self.root / "config.log", env=env)
        self.procs.append(config)
        self.config_url = f"http://127.0.0.1:{port}"
        wait_http(self.config_url + "/healthz", config)
        from viz.config.commands import create_site

        asyncio.run(create_site(pg.dsn, sid="bench", tid="bench", name="Benchmark",
                                domains=[SITE_DOMAIN],
                                features={"collect": True, "cmp": False, "recs": False}))
        status, body = http_get(f"{self.config_url}/internal/sites/bench",
                                headers={"Authorization": f"Bearer {self.service_token}"})
        if status != 200:
            raise RuntimeError(f"internal site lookup answered {status}: {body[:200]!r}")
        wire = json.loads(body)
        self.site = Site(wire["sid"], wire["tid"], bytes.fromhex(wire["keys"]["current"]))
        log(f"postgres + viz-config on {self.config_url}, site {self.site.sid!r} created")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {proc}: {exc}")
        self.procs.clear()

    def topic_messages(self, bootstrap: str) -> int:
        """Messages in the raw topic (sum of high watermarks): what the servers produced."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "viz-bench-watermarks",
                             "enable.auto.commit": False})
        try:
            total = 0
            for p in range(self.kafka_settings.partitions):
                _low, high = consumer.get_watermark_offsets(
                    TopicPartition(self.kafka_settings.topic_raw, p), timeout=10)
                total += high
            return total
        finally:
            consumer.close()


# ----------------------------------------------------------------------------- servers


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    needs_token: Callable[[], tuple[str, str]] | None = None  # returns (bid, token)
    kind: str = ""  # the target: the name without "@storage"
    broker: Broker | None = None  # None: nginx, which produces nothing


def token_for(site: Site, bid: str, now_s: float) -> str:
    import hashlib
    import hmac

    window = int(now_s // 300)
    return hmac.new(site.key, f"{bid}:{site.tid}:{window}".encode(), hashlib.sha256).hexdigest()


def expand_targets(names: list[str], storages: list[str]) -> list[str]:
    """With several broker storages every producing target runs once per broker: NAME@STORAGE,
    interleaved (collect@memory, collect@s3, collect@memory, ... over the repetitions)."""
    if len(storages) == 1:
        return names
    return [n if n == "nginx" else f"{n}@{s}" for n in names
            for s in (storages if n != "nginx" else storages[:1])]


def build_servers(env: Env, names: list[str]) -> list[Server]:
    from viz.embedded import free_port

    args = env.args
    assert env.site is not None
    servers = []
    for full in names:
        name, _, storage = full.partition("@")
        broker = env.brokers[storage or args.broker_storage[0]]
        bootstrap = broker.bootstrap
        port = free_port()
        if name == "nginx":
            argv = nginx_argv(env.root / "nginx", "127.0.0.1", port)
            servers.append(Server(name, argv, dict(os.environ), port))
        elif name == "aiohttp":
            argv = [sys.executable, str(HERE / "aiohttp_collect.py"), "--port", str(port),
                    "--bootstrap", bootstrap, "--sid", env.site.sid, "--tid", env.site.tid,
                    "--key-hex", env.site.key.hex(), "--linger-ms", str(args.linger_ms),
                    "--compression", args.compression]
            if args.aiohttp_uvloop:
                argv.append("--uvloop")
            servers.append(Server(name, argv, dict(os.environ), port))
        elif name in ("floor", "floor-nowait", "floor-lean", "floor-lean-c"):
            argv = [sys.executable, str(HERE / "floor_collect.py"), "--port", str(port),
                    "--bootstrap", bootstrap, "--key", env.site.sid,
                    "--linger-ms", str(args.linger_ms), "--compression", args.compression]
            if name == "floor-nowait":
                argv.append("--no-wait")
            if name == "floor-lean-c":
                argv.append("--compiled")
            if name in ("floor-lean", "floor-lean-c"):
                argv += ["--lean", "--tid", env.site.tid, "--key-hex", env.site.key.hex(),
                         "--origin", f"https://{SITE_DOMAIN}"]
            servers.append(Server(name, argv, dict(os.environ), port))
        elif name == "collect":
            cenv = {**os.environ, "VIZ_KAFKA_BOOTSTRAP": bootstrap,
                    "VIZ_CONFIG_URL": env.config_url, "VIZ_SERVICE_TOKEN": env.service_token,
                    "VIZ_COLLECT_PORT": str(port), "VIZ_COLLECT_HOST": "127.0.0.1",
                    "VIZ_COLLECT_LINGER_MS": str(args.linger_ms),
                    "VIZ_COLLECT_COMPRESSION": args.compression, "VIZ_LOG_LEVEL": "WARNING",
                    # The generator is one client address sending thousands of requests a
                    # second: the per-client rate limit would answer most of them 429.
                    "VIZ_COLLECT_RATE_LIMIT_PER_S": "0"}
            argv = [sys.executable, "-m", "viz", "serve", "collect"]
            servers.append(Server(name, argv, cenv, port))
        else:
            raise SystemExit(f"unknown target {name!r} "
                             "(nginx, aiohttp, floor, floor-nowait, floor-lean, floor-lean-c, collect)")
        servers[-1].name = full
        servers[-1].kind = name
        servers[-1].broker = None if name == "nginx" else broker
    return servers


def init_token(port: int, sid: str) -> tuple[str, str]:
    """A BID and token from viz-collect's own ``GET /init`` (tier 1)."""
    status, body = http_get(f"http://127.0.0.1:{port}/init?sid={sid}&tier=1",
                            headers={"Origin": f"https://{SITE_DOMAIN}", "User-Agent": BROWSER_UA,
                                     "Referer": f"https://{SITE_DOMAIN}/"})
    if status != 200:
        raise RuntimeError(f"/init answered {status}: {body[:300]!r}")
    answer = json.loads(body)
    return answer["bid"], answer["token"]


def write_bodies(path: Path, site: Site, bid: str, token: str, *, count: int, events: int,
                 tag: str) -> None:
    """Distinct request bodies (unique client event ids), sent round-robin by the generator."""
    now_ms = int(time.time() * 1000)
    with open(path, "w") as out:
        for i in range(count):
            evs = [{"id": f"{tag}-{i}-{j}", "t": "pageview", "p": f"/article/{(i * 7 + j) % 500}",
                    "r": "https://news.example/", "ts": now_ms, "title": "A benchmark article"}
                   for j in range(events)]
            out.write(json.dumps({"sid": site.sid, "bid": bid, "token": token, "events": evs},
                                 separators=(",", ":")) + "\n")


# ----------------------------------------------------------------------------- load runs


def loadgen_argv(port: int, bodies: Path, *, rate: float, connections: int, duration: float,
                 warmup: float, cpu: str, label: str) -> list[str]:
    """The generator pinned to ``cpu``, POSTing ``bodies`` to /collect as a browser page would."""
    return ["taskset", "-c", cpu, str(LOADGEN), "--port", str(port), "--path", "/collect",
            "--method", "POST", "--bodies-file", str(bodies),
            "-H", "Content-Type: text/plain;charset=UTF-8", "-H", f"User-Agent: {BROWSER_UA}",
            "-H", f"Origin: https://{SITE_DOMAIN}", "-H", f"Referer: https://{SITE_DOMAIN}/a",
            "-c", str(connections), "--rate", str(rate), "--duration", str(duration),
            "--warmup", str(warmup), "--drain", "5", "--timeout", "10", "--label", label]


def loadgen(port: int, bodies: Path, *, rate: float, connections: int, args: argparse.Namespace,
            label: str) -> dict[str, Any]:
    argv = loadgen_argv(port, bodies, rate=rate, connections=connections, duration=args.duration,
                        warmup=args.warmup, cpu=args.client_cpu, label=label)
    bound = args.duration + args.warmup + 5 + 30
    done = subprocess.run(argv, capture_output=True, text=True, timeout=bound, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"loadgen failed ({done.returncode}): {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["argv"] = shlex.join(argv[3:])
    return result


def sustained(r: dict[str, Any]) -> bool:
    return (r["achieved_rps"] >= 0.99 * r["target_rps"] and r["unfinished"] == 0
            and r["errors"]["total"] == 0 and r["non_2xx"] == 0)


def measure(server: Server, proc: Proc, bodies: Path, fallback: dict[str, float],
            args: argparse.Namespace, rep: int) -> dict[str, Any]:
    """Saturation, then the target rate, then (when the target was not sustained) a lower one."""
    out: dict[str, Any] = {"open_loop": {}}
    broker_pids = server.broker.pids if server.broker is not None else ()
    watch = CpuWatch(proc.pid, broker_pids)
    sat = loadgen(server.port, bodies, rate=0, connections=args.sat_connections, args=args,
                  label=f"{server.name} saturation rep {rep}")
    watch.stamp(sat)
    out["saturation"] = sat
    log(f"  {server.name:8} saturation: {sat['achieved_rps']:9.0f} req/s  "
        f"p50 {sat['latency_ms']['p50']:.2f} p99 {sat['latency_ms']['p99']:.2f} ms  "
        f"errors {sat['errors']['total']} non-2xx {sat['non_2xx']}  "
        f"cpu: server {sat['server_cpu_util']:.2f} client {sat['client_cpu_util']:.2f} "
        f"broker {sat['broker_cpu_cores']:.2f} others {sat['other_cpu_cores']:.2f}")
    rates = [args.rate, *args.extra_rates]
    while rates:
        rate = rates.pop(0)
        time.sleep(1.0)
        watch = CpuWatch(proc.pid, broker_pids)
        r = loadgen(server.port, bodies, rate=rate, connections=args.rate_connections, args=args,
                    label=f"{server.name} {rate:.0f}/s rep {rep}")
        watch.stamp(r)
        r["sustained"] = sustained(r)
        out["open_loop"][str(int(rate))] = r
        log(f"  {server.name:8} {rate:6.0f}/s: achieved {r['achieved_rps']:8.0f}  "
            f"p50 {r['latency_ms']['p50']:.2f} p99 {r['latency_ms']['p99']:.2f} "
            f"p99.9 {r['latency_ms']['p99_9']:.2f} ms  unfinished {r['unfinished']} "
            f"errors {r['errors']['total']} non-2xx {r['non_2xx']}  "
            f"lag p99 {r['send_lag_ms']['p99']:.2f} ms  cpu: server {r['server_cpu_util']:.2f} "
            f"broker {r['broker_cpu_cores']:.2f} others {r['other_cpu_cores']:.2f}"
            + ("" if r["sustained"] else "  NOT SUSTAINED"))
        if rate == args.rate:
            if not r["sustained"] and server.name not in fallback:
                # Decided once, in the first repetition, so every repetition measures the same.
                fb = args.fallback_rate.get(server.name, args.fallback_rate.get("*", 0.0)) or (
                    0.7 * sat["achieved_rps"]) // 100 * 100
                if 0 < fb < args.rate:
                    fallback[server.name] = fb
                    log(f"  {server.name}: {args.rate:.0f}/s not sustained; also measuring "
                        f"{fb:.0f}/s in every repetition")
            if server.name in fallback and fallback[server.name] not in args.extra_rates:
                rates.append(fallback[server.name])
    return out


def run_server(env: Env, server: Server, rep: int, fallback: dict[str, float]) -> dict[str, Any]:
    args = env.args
    assert env.site is not None
    proc = Proc(server.name, server.argv, log_path=env.root / f"{server.name}-{rep}.log",
                env=server.env, cpu=args.server_cpu,
                stop_signal=signal.SIGQUIT if server.kind == "nginx" else signal.SIGTERM)
    try:
        wait_http(f"http://127.0.0.1:{server.port}/healthz", proc)
        if server.kind == "collect":
            bid, token = init_token(server.port, env.site.sid)
        else:
            bid = secrets.token_urlsafe(16)[:22]
            token = token_for(env.site, bid, time.time())
        bodies = env.root / f"bodies-{server.name}-{rep}.txt"
        write_bodies(bodies, env.site, bid, token, count=args.distinct_bodies,
                     events=args.events, tag=f"{server.name.replace('@', '-')}{rep}{secrets.token_hex(3)}")
        broker = server.broker
        before = env.topic_messages(broker.bootstrap) if broker is not None else 0
        result = measure(server, proc, bodies, fallback, args, rep)
        if broker is not None:
            time.sleep(1.0)
            produced = env.topic_messages(broker.bootstrap) - before
            answered = sum(v for r in [result["saturation"], *result["open_loop"].values()]
                           for k, v in r["answered_all"].items() if k.startswith("2"))
            result["kafka_messages"] = produced
            result["events_answered_2xx"] = answered * args.events
            if produced < answered * args.events:
                log(f"  WARNING {server.name}: {answered * args.events} events answered 2xx but "
                    f"only {produced} messages in the topic")
        if not proc.alive():
            raise RuntimeError(f"{server.name} died during the run:\n{proc.tail()}")
        return result
    finally:
        proc.stop()


# ----------------------------------------------------------------------------- report


def med(values: list[float | None] | list[float]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def cpu_us(r: dict[str, Any]) -> float | None:
    return r["server_cpu_util"] / r["achieved_rps"] * 1e6 if r["achieved_rps"] else None


def summarise(results: dict[str, list[dict[str, Any]]], names: list[str],
              rate: float, fallback: dict[str, float],
              extra_rates: list[float] | tuple[float, ...] = ()) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in names:
        reps = results[name]
        sat = [r["saturation"] for r in reps]
        s: dict[str, Any] = {
            "saturation_rps": med([r["achieved_rps"] for r in sat]),
            "saturation_rps_all": [round(r["achieved_rps"]) for r in sat],
            "saturation_p50_ms": med([r["latency_ms"]["p50"] for r in sat]),
            "saturation_p99_ms": med([r["latency_ms"]["p99"] for r in sat]),
            "saturation_server_cpu": med([r["server_cpu_util"] for r in sat]),
            # Server CPU per answer: what one dedicated core would sustain is about 1e6 / this,
            # and it is far less sensitive to other jobs taking turns on the core than req/s.
            "saturation_cpu_us_per_req": med([cpu_us(r) for r in sat]),
            "saturation_broker_cpu": med([r["broker_cpu_cores"] for r in sat]),
            "saturation_other_cpu": med([r["other_cpu_cores"] for r in sat]),
        }
        for label, r_ in (("target", rate), ("fallback", fallback.get(name)),
                          *((f"at {x:.0f}", x) for x in extra_rates)):
            if r_ is None:
                continue
            runs = [r["open_loop"][str(int(r_))] for r in reps if str(int(r_)) in r["open_loop"]]
            if not runs:
                continue
            s[label] = {
                "rate": r_,
                "achieved_rps": med([r["achieved_rps"] for r in runs]),
                "p50_ms": med([r["latency_ms"]["p50"] for r in runs]),
                "p99_ms": med([r["latency_ms"]["p99"] for r in runs]),
                "p99_9_ms": med([r["latency_ms"]["p99_9"] for r in runs]),
                "p99_ms_all": [round(r["latency_ms"]["p99"], 2) for r in runs],
                "sustained_reps": sum(1 for r in runs if r["sustained"]),
                "reps": len(runs),
                "client_send_lag_p99_ms": med([r["send_lag_ms"]["p99"] for r in runs]),
                "server_cpu": med([r["server_cpu_util"] for r in runs]),
                "cpu_us_per_req": med([cpu_us(r) for r in runs]),
                "broker_cpu": med([r["broker_cpu_cores"] for r in runs]),
                "other_cpu": med([r["other_cpu_cores"] for r in runs]),
            }
        summary[name] = s
    # Ratios per repetition (servers measured minutes apart, under the same noise), then median.
    ratios: dict[str, Any] = {}
    n = min(len(results[x]) for x in names)
    for a, b in (("collect", "nginx"), ("collect", "aiohttp"), ("aiohttp", "nginx"),
                 ("collect", "floor"), ("floor", "nginx"), ("floor", "floor-nowait"),
                 ("floor-lean", "floor"), ("collect", "floor-lean"),
                 ("floor-lean-c", "floor-lean"), ("floor-lean-c", "floor")):
        if a in names and b in names:
            per = [results[a][i]["saturation"]["achieved_rps"]
                   / max(results[b][i]["saturation"]["achieved_rps"], 1e-9) for i in range(n)]
            ratios[f"{a}/{b} saturation req/s"] = {"median": med(per),
                                                   "per_rep": [round(x, 3) for x in per]}
            cost = []
            for i in range(n):
                ca, cb = cpu_us(results[a][i]["saturation"]), cpu_us(results[b][i]["saturation"])
                if ca and cb:
                    cost.append(ca / cb)
            ratios[f"{a}/{b} CPU per request"] = {"median": med(cost),
                                                  "per_rep": [round(x, 3) for x in cost]}
    # The same target on two brokers (--broker-storage a,b): what the storage costs.
    for a in names:
        kind, _, storage = a.partition("@")
        b = f"{kind}@memory"
        if not storage or storage == "memory" or b not in names:
            continue
        for rate_ in [rate, *extra_rates]:
            key = str(int(rate_))
            pairs = [(ra["open_loop"][key], rb["open_loop"][key])
                     for ra, rb in zip(results[a], results[b], strict=False)
                     if key in ra["open_loop"] and key in rb["open_loop"]]
            for metric in ("p50", "p99"):
                per = [x["latency_ms"][metric] / max(y["latency_ms"][metric], 1e-9)
                       for x, y in pairs]
                if per:
                    ratios[f"{a}/{b} {metric} at {rate_:.0f}/s"] = {
                        "median": med(per), "per_rep": [round(v, 3) for v in per]}
        per = [ra["saturation"]["achieved_rps"] / max(rb["saturation"]["achieved_rps"], 1e-9)
               for ra, rb in zip(results[a], results[b], strict=False)]
        ratios[f"{a}/{b} saturation req/s"] = {"median": med(per),
                                               "per_rep": [round(v, 3) for v in per]}
    summary["ratios"] = ratios
    return summary


def fmt(v: float | None, spec: str = ".2f") -> str:
    return "–" if v is None else format(v, spec)


def markdown(summary: dict[str, Any], names: list[str], meta: dict[str, Any]) -> str:
    lines = [
        f"### Run of {meta['date']}",
        "",
        f"    {meta['command']}",
        "",
        f"Machine: {meta['machine']}. Server under test pinned to CPU {meta['server_cpu']}, "
        f"load generator on CPU {meta['client_cpu']}, broker"
        f"{', PostgreSQL, viz-config' if 'collect' in names else ''} on CPU {meta['infra_cpu']}. {meta['reps']} repetitions, servers interleaved; medians shown "
        f"(saturation: {meta['sat_connections']} connections; open loop: "
        f"{meta['rate_connections']} connections, {meta['duration']} s measured after "
        f"{meta['warmup']} s warm-up; {meta['events']} event(s) per request; producer "
        f"linger {meta['linger_ms']} ms, {meta['compression']}; broker storage "
        f"{', '.join(meta.get('broker_storage', ['memory']))}). "
        f"Load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}"
        + (f"; other jobs' CPU just before each repetition (cores): "
           f"{', '.join(str(x) for x in meta['busy_before_reps'])}"
           if meta.get("busy_before_reps") else "") + ".",
        "",
        "Saturation (closed loop: each connection sends when its previous answer arrived):",
        "",
        "| server | req/s, median (each rep) | server CPU µs/req | p50 / p99 ms | "
        "CPU cores: server / broker / others |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        s = summary[name]
        lines.append(
            f"| {name} | {fmt(s['saturation_rps'], '.0f')} "
            f"({', '.join(str(x) for x in s['saturation_rps_all'])}) "
            f"| {fmt(s['saturation_cpu_us_per_req'], '.1f')} "
            f"| {fmt(s['saturation_p50_ms'])} / {fmt(s['saturation_p99_ms'])} "
            f"| {fmt(s['saturation_server_cpu'])} / {fmt(s['saturation_broker_cpu'])} / "
            f"{fmt(s['saturation_other_cpu'])} |")
    lines += [
        "",
        "Open loop (requests scheduled at a fixed rate, latency from the scheduled send time; "
        "≥ marks runs that did not keep up, whose backlog makes every latency a lower bound):",
        "",
        "| server | offered req/s | achieved req/s | p50 ms | p99 ms (each rep) | p99.9 ms "
        "| kept up | server CPU µs/req | CPU cores: server / broker / others "
        "| generator send lag p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for key in ("target", "fallback", *(k for k in summary[name] if k.startswith("at "))):
            t = summary[name].get(key)
            if not t:
                continue
            lb = "" if t["sustained_reps"] == t["reps"] else "≥ "
            lines.append(
                f"| {name} | {t['rate']:.0f} | {fmt(t['achieved_rps'], '.0f')} "
                f"| {lb}{fmt(t['p50_ms'])} | {lb}{fmt(t['p99_ms'])} "
                f"({', '.join(str(x) for x in t['p99_ms_all'])}) | {lb}{fmt(t['p99_9_ms'])} "
                f"| {t['sustained_reps']}/{t['reps']} | {fmt(t['cpu_us_per_req'], '.1f')} "
                f"| {fmt(t['server_cpu'])} / {fmt(t['broker_cpu'])} / {fmt(t['other_cpu'])} "
                f"| {fmt(t['client_send_lag_p99_ms'])} |")
    if summary["ratios"]:
        lines.append("")
        lines.append("Ratios (per repetition, then median): " + "; ".join(
            f"{k} = {fmt(v['median'], '.3f')} ({', '.join(str(x) for x in v['per_rep'])})"
            for k, v in summary["ratios"].items()))
    return "\n".join(lines) + "\n"


def update_results_md(path: Path, run_md: str) -> None:
    """Add this run under the service section (created at the end when missing).

    The newest run goes first in the section; every other section, and earlier runs, stay
    byte for byte (the micro benchmarks section belongs to someone else).
    """
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines(keepends=True)
    try:
        at = next(i for i, line in enumerate(lines) if line.rstrip("\n") == SECTION)
    except StopIteration:
        path.write_text(text.rstrip("\n") + "\n\n" + SECTION + "\n\n" + run_md)
        return
    # After the heading and the section's lead paragraph (up to the first "### " or the end).
    end = next((i for i in range(at + 1, len(lines))
                if lines[i].startswith("## ") or lines[i].startswith("### ")), len(lines))
    block = run_md if run_md.endswith("\n") else run_md + "\n"
    if lines[end - 1].strip():
        block = "\n" + block
    if end < len(lines) and lines[end].startswith("## "):
        block += "\n"
    lines.insert(end, block)
    path.write_text("".join(lines))


# ----------------------------------------------------------------------------- main


def serve_for(env: Env, seconds: float) -> int:
    """A throwaway collect stack on loopback for smoke and load tests, stopped after ``seconds``."""
    try:
        env.start(with_config=True)
        assert env.site is not None
        server = build_servers(env, ["collect"])[0]
        proc = Proc("collect", server.argv, log_path=env.root / "collect.log", env=server.env,
                    cpu=env.args.server_cpu)
        env.procs.append(proc)
        wait_http(f"http://127.0.0.1:{server.port}/healthz", proc)
        print(json.dumps({"host": f"http://127.0.0.1:{server.port}", "sid": env.site.sid,
                          "origin": f"https://{SITE_DOMAIN}", "logs": str(env.root),
                          "config_url": env.config_url, "service_token": env.service_token,
                          "stops_in_s": seconds}), flush=True)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.alive():
            time.sleep(0.5)
        return 0 if proc.alive() else 1
    except KeyboardInterrupt:
        return 130
    finally:
        env.stop()
        if not env.args.keep:
            shutil.rmtree(env.root, ignore_errors=True)



def fallback_rates(text: str) -> dict[str, float]:
    """``5000`` (every server) or ``aiohttp=1500,collect=5000``."""
    rates: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.rpartition("=")
        rates[name.strip() if sep else "*"] = float(value)
    return rates


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="nginx,aiohttp,collect")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--rate", type=float, default=18000, help="open-loop rate (req/s)")
    p.add_argument("--fallback-rate", type=fallback_rates, default={},
                   help="lower open-loop rate for servers that cannot sustain --rate: RATE, or "
                        "NAME=RATE,... (default: 70%% of their first saturation throughput)")
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--warmup", type=float, default=3)
    p.add_argument("--sat-connections", type=int, default=64)
    p.add_argument("--rate-connections", type=int, default=200)
    p.add_argument("--events", type=int, default=1, help="events per request")
    p.add_argument("--broker-storage", type=broker_storages, default=["memory"],
                   metavar="S[,S]",
                   help="the embedded broker's storage: memory (Tansu in memory), s3 (Tansu on "
                        "SeaweedFS, durable), s3-fsync (and fsynced); with several, every "
                        "target but nginx runs against each, as NAME@STORAGE, interleaved")
    p.add_argument("--extra-rates", type=lambda t: [float(x) for x in t.split(",") if x],
                   default=[], metavar="R[,R]",
                   help="more open-loop rates measured in every repetition after --rate")
    p.add_argument("--distinct-bodies", type=int, default=4096)
    p.add_argument("--linger-ms", type=float, default=2.0, help="producer linger.ms for both")
    p.add_argument("--compression", default="lz4")
    p.add_argument("--aiohttp-uvloop", action="store_true")
    p.add_argument("--server-cpu", default="1")
    p.add_argument("--client-cpu", default="0", help="CPU(s) of the load generator")
    p.add_argument("--infra-cpu", default="0",
                   help="CPU(s) of the broker, PostgreSQL and viz-config (default: with the generator)")
    p.add_argument("--quiet-wait", type=float, default=30, metavar="S",
                   help="before each repetition wait up to S s for the machine to calm down "
                        "(0: do not wait)")
    p.add_argument("--quiet-below", type=float, default=0.5, metavar="CORES",
                   help="what calm means: other jobs' CPU over 2 s below this many cores")
    p.add_argument("--json", type=Path, help="write every raw result here")
    p.add_argument("--results-md", type=Path, help="replace the service section of this file")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    p.add_argument("--report-from", type=Path, metavar="JSON",
                   help="no measuring: rebuild the report from a --json file of an earlier run")
    p.add_argument("--serve-for", type=float, default=0, metavar="S",
                   help="no benchmark: run broker + viz-config + viz-collect with a site for S "
                        "seconds (at most 3600), e.g. for loadtest/locustfile.py")
    args = p.parse_args()
    # SIGTERM (e.g. `kill` of a --serve-for stack) stops everything it started, as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    names = expand_targets([n.strip() for n in args.targets.split(",") if n.strip()],
                           args.broker_storage)
    if args.report_from:
        run = json.loads(args.report_from.read_text())
        if "fallback" not in run["meta"]:  # files written before it was recorded
            rate_key = str(int(run["meta"]["rate"]))
            run["meta"]["fallback"] = {
                n: float(k) for n, reps in run["raw"].items()
                for k in reps[0]["open_loop"] if k != rate_key}
        report(run, [n for n in names if n in run["raw"]], args)
        return 0
    if args.reps < 1 or args.duration <= 0 or args.duration > 120 or args.rate <= 0:
        p.error("need reps >= 1, 0 < duration <= 120, rate > 0")

    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < (LOADGEN.parent / "loadgen.c").stat().st_mtime:
        subprocess.run(["make", "-s", "-C", str(LOADGEN.parent)], check=True)
    if "floor-lean-c" in names:
        pyx = HERE / "lean_c.pyx"
        built = list(HERE.glob("lean_c.*.so"))
        if not built or built[0].stat().st_mtime < pyx.stat().st_mtime:
            subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q",
                            str(pyx)], check=True)
    if shutil.which("taskset") is None:
        raise SystemExit("taskset missing: run scripts/bench-deps.sh")
    # The broker, PostgreSQL and viz-config inherit this; the server and generator use taskset.
    os.sched_setaffinity(0, {int(c) for c in args.infra_cpu.split(",")})

    root = Path(tempfile.mkdtemp(prefix="viz-service-bench-"))
    env = Env(root, args)
    if args.serve_for:
        return serve_for(env, min(args.serve_for, 3600.0))
    loadavg_before = Path("/proc/loadavg").read_text().split()[:3]
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    fallback: dict[str, float] = {}
    quiet: list[float] = []
    try:
        env.start(with_config=any(n.partition("@")[0] == "collect" for n in names))
        servers = build_servers(env, names)
        for rep in range(1, args.reps + 1):
            log(f"repetition {rep}/{args.reps}")
            if args.quiet_wait > 0:
                busy = wait_for_quiet(args.quiet_below, args.quiet_wait)
                quiet.append(round(busy, 2))
                log(f"  machine busy before this repetition: {busy:.2f} cores")
            for server in servers:
                results[server.name].append(run_server(env, server, rep, fallback))
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        env.stop()
        if args.keep:
            log(f"logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    meta = run_meta(args, loadavg_before, fallback)
    meta["busy_before_reps"] = quiet
    report({"meta": meta, "raw": results}, names, args)
    return 0


def run_meta(args: argparse.Namespace, loadavg_before: list[str],
             fallback: dict[str, float]) -> dict[str, Any]:
    loadavg_after = Path("/proc/loadavg").read_text().split()[:3]
    cpu_model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "bench/service/run.py", *sys.argv[1:]]),
        "machine": f"{os.cpu_count()} × {cpu_model}, Linux {platform.release()}, shared with "
                   "other engineers' jobs (noisy)",
        "server_cpu": args.server_cpu, "client_cpu": args.client_cpu, "infra_cpu": args.infra_cpu, "reps": args.reps,
        "rate": args.rate, "duration": args.duration, "warmup": args.warmup,
        "sat_connections": args.sat_connections, "rate_connections": args.rate_connections,
        "events": args.events, "linger_ms": args.linger_ms, "compression": args.compression,
        "loadavg_before": " ".join(loadavg_before), "loadavg_after": " ".join(loadavg_after),
        "fallback": fallback, "broker_storage": args.broker_storage,
        "extra_rates": args.extra_rates,
    }


def report(run: dict[str, Any], names: list[str], args: argparse.Namespace) -> None:
    """Summary (medians, ratios), the markdown table, and the files asked for."""
    meta, results = run["meta"], run["raw"]
    summary = summarise(results, names, meta["rate"], meta.get("fallback", {}),
                        meta.get("extra_rates", []))
    md = markdown(summary, names, meta)
    print(md)
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "summary": summary, "raw": results},
                                        indent=2))
    if args.results_md:
        update_results_md(args.results_md, md)
        log(f"updated {args.results_md} ({SECTION})")


if __name__ == "__main__":
    sys.exit(main())
