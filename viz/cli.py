"""The ``viz`` command: ``up``, ``serve SERVICE``, ``migrate`` and ``site create|list``."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from viz.common.errors import SettingsError
from viz.common.settings import ClickHouseSettings, Env, KafkaSettings
from viz.common.web import HttpError

SERVICES = ("config", "collect", "consumer", "cmp", "analytics", "recs", "warehouse")
# `warehouse` is the embedded mode's single ClickHouse process: consumer + analytics on one chDB.
_SERVICE_MODULES = {"warehouse": "viz.embedded.warehouse"}
DEFAULT_DATA_DIR = ".viz"


def _environ_with_up_env(data_dir: str) -> dict[str, str]:
    """The process environment, completed by the DSNs of a running ``viz up`` when unset.

    So ``viz site create`` and ``viz migrate`` work next to ``viz up`` without exporting anything.
    """
    environ = dict(os.environ)
    env_file = Path(data_dir) / "run" / "services.env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key not in environ:
                environ[key] = value
    return environ


def _cmd_serve(args: argparse.Namespace) -> int:
    module = importlib.import_module(
        _SERVICE_MODULES.get(args.service, f"viz.{args.service}.__main__"))
    extra = {"VIZ_COLLECT_WORKERS": str(args.workers)} if args.workers else {}
    module.run({**os.environ, **extra})
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from viz.migrations.postgres import migrate_postgres

    environ = _environ_with_up_env(args.data_dir)
    env = Env(environ)
    pg_dsn = env.url("VIZ_PG_DSN", schemes=("postgresql", "postgres"))
    kafka = KafkaSettings.read(env) if environ.get("VIZ_KAFKA_BOOTSTRAP") else None
    clickhouse = ClickHouseSettings.read(env) if environ.get("VIZ_CLICKHOUSE_DSN") else None
    retention_days = env.int("VIZ_CLICKHOUSE_RETENTION_DAYS", 400, min=1, max=36500)
    env.done()
    applied = asyncio.run(migrate_postgres(pg_dsn))
    print(f"postgres: {len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))
    if kafka is not None:
        from viz.migrations.kafka import ensure_topics

        created = ensure_topics(kafka)
        print(f"kafka: {len(created)} topic(s) created" + (f": {', '.join(created)}" if created else ""))
    else:
        print("kafka: VIZ_KAFKA_BOOTSTRAP not set, topics skipped")
    if clickhouse is not None:
        import clickhouse_connect

        from viz.migrations.clickhouse import migrate_clickhouse

        client = clickhouse_connect.get_client(dsn=clickhouse.dsn)
        done = migrate_clickhouse(client, clickhouse.database, retention_days=retention_days)
        print(f"clickhouse: {len(done)} migration(s) applied" + (f": {', '.join(done)}" if done else ""))
    else:
        print("clickhouse: VIZ_CLICKHOUSE_DSN not set, skipped")
    return 0


def _cmd_site(args: argparse.Namespace) -> int:
    from viz.config import commands

    environ = _environ_with_up_env(args.data_dir)
    env = Env(environ)
    pg_dsn = env.url("VIZ_PG_DSN", schemes=("postgresql", "postgres"))
    env.done()
    if args.site_command == "create":
        features = {name: name in args.features.split(",") for name in ("collect", "cmp", "recs")}
        site = asyncio.run(commands.create_site(
            pg_dsn, sid=args.sid, tid=args.tid or args.sid, name=args.name or args.sid,
            domains=list(args.domain), features=features))
        print(json.dumps(site, indent=2, default=str))
    else:
        sites = asyncio.run(commands.list_sites(pg_dsn))
        if args.json:
            print(json.dumps(sites, indent=2, default=str))
        else:
            for site in sites:
                print(f"{site['sid']:<24} {site['tid']:<16} v{site['version']:<4} "
                      f"{','.join(site['domains'])}")
    return 0


_ENVELOPE_FIELDS = ("ts", "sid", "tid", "bid", "eid", "t", "p", "r", "cts", "ms", "h", "n",
                    "title", "tier", "ua")


def _cmd_tail(args: argparse.Namespace) -> int:
    """Print the last events of the raw topic, decoded (what collect acknowledged)."""
    from confluent_kafka import Consumer, TopicPartition

    from viz._fast import EnvelopeError, decode_envelope

    env = Env(_environ_with_up_env(args.data_dir))
    kafka = KafkaSettings.read(env)
    env.done()
    consumer = Consumer({"bootstrap.servers": kafka.bootstrap, "group.id": "viz-tail",
                         "enable.auto.commit": False})
    try:
        partitions = consumer.list_topics(kafka.topic_raw, timeout=10).topics[kafka.topic_raw]
        assignment = []
        for p in partitions.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(kafka.topic_raw, p), 10)
            # One extra: some brokers (the embedded Tansu) report the high watermark one short.
            assignment.append(TopicPartition(kafka.topic_raw, p, max(low, high - args.n - 1)))
        consumer.assign(assignment)
        events = []
        while (msg := consumer.poll(1.0)) is not None:  # until a second passes with nothing
            if msg.error() is not None:
                continue
            try:
                envelope = decode_envelope(msg.value() or b"")
                fields = {k: getattr(envelope, k) for k in _ENVELOPE_FIELDS}
                events.append((envelope.ts, json.dumps(
                    {k: v for k, v in fields.items() if v is not None})))
            except EnvelopeError as exc:
                events.append((0, f"(undecodable at {msg.partition()}:{msg.offset()}: {exc})"))
    finally:
        consumer.close()
    for _ts, line in sorted(events)[-args.n:]:
        print(line)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from viz.up import Platform, UpSettings

    settings = UpSettings.from_env(os.environ, data_dir=args.data_dir)
    return Platform(settings).run()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="viz", description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("VIZ_DATA_DIR", DEFAULT_DATA_DIR),
                        help="where `viz up` keeps its engines' data (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole platform on this machine (embedded engines)")
    up.set_defaults(func=_cmd_up)

    serve = sub.add_parser("serve", help="run one service in the foreground (production)")
    serve.add_argument("service", choices=SERVICES)
    serve.add_argument("--workers", type=int, default=0, help="collect: processes on one port")
    serve.set_defaults(func=_cmd_serve)

    migrate = sub.add_parser("migrate", help="apply PostgreSQL migrations and create Kafka topics")
    migrate.set_defaults(func=_cmd_migrate)

    site = sub.add_parser("site", help="manage sites without the back-office")
    site_sub = site.add_subparsers(dest="site_command", required=True)
    create = site_sub.add_parser("create", help="create a site")
    create.add_argument("sid", help="site id: 3-64 of A-Z a-z 0-9 _ -")
    create.add_argument("--domain", action="append", required=True,
                        help="an allowed domain (repeat for several)")
    create.add_argument("--tid", help="tenant id (default: the site id)")
    create.add_argument("--name", help="display name (default: the site id)")
    create.add_argument("--features", default="collect,cmp",
                        help="comma-separated: collect, cmp, recs (default: %(default)s)")
    tail = sub.add_parser("tail", help="print the last events collect acknowledged (from Kafka)")
    tail.add_argument("-n", type=int, default=10, help="how many (default: %(default)s)")
    tail.set_defaults(func=_cmd_tail)

    listing = site_sub.add_parser("list", help="list sites")
    listing.add_argument("--json", action="store_true")
    site.set_defaults(func=_cmd_site)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except SettingsError as exc:
        print(f"viz: {exc}", file=sys.stderr)
        return 2
    except HttpError as exc:  # validation and conflicts from the stores, as the API words them
        field = exc.details.get("field")
        print(f"viz: {exc.message}" + (f" (field: {field})" if field else ""), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
