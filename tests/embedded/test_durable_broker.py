"""The embedded broker's ``s3`` storage (Tansu on an embedded SeaweedFS) keeps what it
acknowledged through SIGKILLs and restarts; ``memory`` stays available as an opt-in."""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from viz.embedded.kafka import CONSUMER_SESSION_TIMEOUT_MS, EmbeddedKafka
from viz.embedded.seaweedfs import S3Client

pytestmark = pytest.mark.slow

PARTITIONS = 3


def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(15)


def _producer(bootstrap: str, **extra: object) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 2, **extra})


Acked = dict[int, list[tuple[int, bytes]]]  # partition -> [(offset, value)] as acknowledged


def _produce_all(bootstrap: str, topic: str, values: list[bytes]) -> Acked:
    producer = _producer(bootstrap)
    acked: Acked = defaultdict(list)
    errors: list[object] = []

    def report(err: object, msg: object) -> None:
        if err is None:
            acked[msg.partition()].append((msg.offset(), msg.value()))  # type: ignore[attr-defined]
        else:
            errors.append(err)

    for i, value in enumerate(values):
        producer.produce(topic, key=f"k{i % 7}", value=value, on_delivery=report)
        producer.poll(0)
    assert producer.flush(20) == 0
    assert errors == []
    assert sum(len(v) for v in acked.values()) == len(values)
    return acked


def _read_partitions(bootstrap: str, topic: str, ends: dict[int, int],
                     timeout_s: float = 20.0) -> dict[int, list[tuple[int, bytes]]]:
    """Every message from offset 0 up to ``ends[p]`` (exclusive) of each partition."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in ends])
    got: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and any(
                (got[p][-1][0] + 1 if got[p] else 0) < end for p, end in ends.items()):
            for msg in consumer.consume(500, 0.5):
                if msg.error() is None:
                    got[msg.partition()].append((msg.offset(), msg.value()))
    finally:
        consumer.close()
    return got


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def _group_consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "session.timeout.ms": CONSUMER_SESSION_TIMEOUT_MS})


def test_acknowledged_messages_and_committed_offsets_survive_a_sigkill(tmp_path: Path) -> None:
    topic, group, total = "durable.events", "durable-group", 300
    broker = EmbeddedKafka(tmp_path / "kafka", storage="s3")
    broker.start()
    try:
        assert broker.storage == "s3"
        _create_topic(broker.bootstrap, topic)
        acked = _produce_all(broker.bootstrap, topic, [f"m{i}".encode() for i in range(total)])

        # A consumer group reads part of it and commits where it stands.
        consumer = _group_consumer(broker.bootstrap, group)
        consumer.subscribe([topic])
        seen, deadline = 0, time.monotonic() + 30
        while seen < total // 2 and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(20, 0.5) if m.error() is None)
        assert seen >= total // 2
        committed = [tp for tp in consumer.position(consumer.assignment()) if tp.offset >= 0]
        consumer.commit(offsets=committed, asynchronous=False)
        consumer.close()
        committed_at = {tp.partition: tp.offset for tp in committed}
        assert sum(committed_at.values()) >= total // 2

        pids = [broker.broker_pid, broker.seaweedfs.pid if broker.seaweedfs else None]
        broker.kill()
        assert all(pid is not None and _gone(pid) for pid in pids)
    finally:
        broker.kill()

    again = EmbeddedKafka(tmp_path / "kafka", port=broker.port, storage="s3")
    again.start()
    try:
        # Every acknowledged message, at its acknowledged offset, in order.
        ends = {p: (max(o for o, _ in acked[p]) + 1 if acked[p] else 0)
                for p in range(PARTITIONS)}
        stored = _read_partitions(again.bootstrap, topic, ends)
        for p in range(PARTITIONS):
            assert stored[p] == sorted(acked[p]), f"partition {p}"

        # The group's committed offsets are intact, and a new member resumes from them.
        consumer = _group_consumer(again.bootstrap, group)
        try:
            found = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)],
                                       timeout=15)
            assert {tp.partition: tp.offset for tp in found if tp.offset >= 0} == committed_at
            resumes = {p: o for p, o in committed_at.items() if o < ends[p]}
            consumer.subscribe([topic])
            first: dict[int, int] = {}
            deadline = time.monotonic() + 30
            while not resumes.keys() <= first.keys() and time.monotonic() < deadline:
                for msg in consumer.consume(100, 0.5):
                    if msg.error() is None:
                        first.setdefault(msg.partition(), msg.offset())
            assert {p: first.get(p) for p in resumes} == resumes
        finally:
            consumer.close()
    finally:
        again.stop()
    assert not again.running()


def test_sigkill_mid_produce_keeps_every_acknowledged_message(tmp_path: Path) -> None:
    topic = "durable.inflight"
    broker = EmbeddedKafka(tmp_path / "kafka", storage="s3")
    broker.start()
    producer = _producer(broker.bootstrap, **{"message.timeout.ms": 4000, "linger.ms": 1})
    acked: Acked = defaultdict(list)
    failed: list[object] = []
    stop = threading.Event()

    def report(err: object, msg: object) -> None:
        if err is None:
            acked[msg.partition()].append((msg.offset(), msg.value()))  # type: ignore[attr-defined]
        else:
            failed.append(err)

    def produce() -> None:
        i = 0
        while not stop.is_set():
            try:
                producer.produce(topic, key=f"k{i % 7}", value=f"m{i}".encode(),
                                 on_delivery=report)
                i += 1
            except BufferError:
                pass
            producer.poll(0.001 if i % 20 == 0 else 0)

    try:
        _create_topic(broker.bootstrap, topic)
        worker = threading.Thread(target=produce, daemon=True)
        worker.start()
        deadline = time.monotonic() + 20
        while sum(len(v) for v in acked.values()) < 500 and time.monotonic() < deadline:
            time.sleep(0.01)
        broker.kill()  # with messages in flight
        stop.set()
        worker.join(10)
        producer.flush(10)  # every report: successes before the kill, failures after it
    finally:
        stop.set()
        broker.kill()
    assert sum(len(v) for v in acked.values()) >= 500
    assert failed, "nothing was in flight when the broker died"

    # New ports this time (the old ones are forgotten): the data is found all the same.
    (tmp_path / "kafka" / "seaweedfs" / "ports.json").unlink()
    again = EmbeddedKafka(tmp_path / "kafka", storage="s3")
    again.start()
    try:
        ends = {p: max(o for o, _ in acked[p]) + 1 for p in acked}
        stored = _read_partitions(again.bootstrap, topic, ends)
        for p, messages in acked.items():
            kept = dict(stored[p])
            missing = [(o, v) for o, v in messages if kept.get(o) != v]
            assert missing == [], f"partition {p}: {len(missing)} acknowledged, not stored"
    finally:
        again.stop()


def test_memory_storage_is_still_there_and_forgets_on_restart(tmp_path: Path) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", storage="memory")
    assert broker.seaweedfs is None
    broker.start()
    try:
        _create_topic(broker.bootstrap, "mem.events")
        acked = _produce_all(broker.bootstrap, "mem.events", [b"a", b"b", b"c"])
        ends = {p: len(v) for p, v in acked.items()}
        assert _read_partitions(broker.bootstrap, "mem.events", ends) == acked
    finally:
        broker.stop()
    assert not broker.running()
    broker.start()
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        assert "mem.events" not in admin.list_topics(timeout=10).topics
    finally:
        broker.stop()
    assert not (tmp_path / "kafka" / "seaweedfs").exists()


def test_unknown_storage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="storage"):
        EmbeddedKafka(tmp_path, storage="disk")  # type: ignore[arg-type]


def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """The TCP addresses process ``pid`` listens on (from /proc, IPv4 and IPv6)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, width in (("tcp", 8), ("tcp6", 32)):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            assert len(hex_ip) == width
            if width == 8:
                ip = ".".join(str(int(hex_ip[i:i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                ip = "v6:" + hex_ip
            found.add((ip, int(hex_port, 16)))
    return found


def test_seaweedfs_listens_on_loopback_only_and_refuses_anonymous_requests(
        tmp_path: Path) -> None:
    broker = EmbeddedKafka(tmp_path / "kafka", storage="s3")
    broker.start()
    try:
        store = broker.seaweedfs
        assert store is not None and store.pid is not None
        listening = _listening_addresses(store.pid)
        assert listening == {("127.0.0.1", port) for port in store.ports.values()}

        client = store.client()
        assert b"tansu" in client.list_buckets()
        status, _ = client.request("GET", "/", signed=False)
        assert status == 403
        status, _ = client.request("PUT", "/tansu/anonymous", b"x", signed=False)
        assert status == 403
        wrong = S3Client(store.s3_endpoint, store.access_key, "not-the-secret")
        status, _ = wrong.request("GET", "/tansu/")
        assert status == 403
        assert (tmp_path / "kafka" / "seaweedfs" / "s3.json").stat().st_mode & 0o077 == 0
    finally:
        broker.stop()


def test_fsync_mode_keeps_acknowledged_messages_and_cannot_be_switched_later(
        tmp_path: Path) -> None:
    """``fsync=True``: SQLite filer store and fsynced volume writes (slower, see
    docs/decisions.md); the same crash guarantee, and a data directory keeps its mode."""
    broker = EmbeddedKafka(tmp_path / "kafka", storage="s3", fsync=True)
    broker.start()
    try:
        _create_topic(broker.bootstrap, "fsync.events")
        acked = _produce_all(broker.bootstrap, "fsync.events", [f"f{i}".encode() for i in range(60)])
        store = tmp_path / "kafka" / "seaweedfs"
        assert (store / "filer" / "filer.db").exists()
        assert (store / "fsync.configured").exists()
    finally:
        broker.kill()

    with pytest.raises(RuntimeError, match="cannot be switched"):
        EmbeddedKafka(tmp_path / "kafka", storage="s3", fsync=False).start()

    again = EmbeddedKafka(tmp_path / "kafka", storage="s3", fsync=True)
    again.start()
    try:
        ends = {p: max(o for o, _ in acked[p]) + 1 for p in acked}
        stored = _read_partitions(again.bootstrap, "fsync.events", ends)
        assert {p: stored[p] for p in acked} == {p: sorted(v) for p, v in acked.items()}
    finally:
        again.stop()
