"""The writer's own Native serialisation stores exactly what clickhouse-connect's insert stores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from viz.consumer.batch import Batch
from viz.consumer.runner import event_row
from viz.consumer.writer import COLUMNS, ClickHouseWriter
from viz.migrations.clickhouse import migrate_clickhouse

GOLDEN = Path(__file__).parent.parent / "fixtures" / "pipeline_events.jsonl"


def envelope(i: int, **data: Any) -> bytes:
    full = {"eid": f"s:b:{i}", "sid": "site-é", "tid": "t", "bid": "b", "id": str(i),
            "t": "pageview", "p": "/", "cts": 1_795_860_000_000, "ua": "curl/8.5.0", "tier": 2,
            **data}  # fmt: skip
    return json.dumps({"v": 1, "ts": 1_795_860_000_123, "data": full},
                      separators=(",", ":"), ensure_ascii=False).encode()


def table_digest(client: Any, table: str) -> tuple[int, int]:
    count, digest = client.query(
        f"SELECT count(), groupBitXor(cityHash64({', '.join(COLUMNS)})) FROM {table}"
    ).result_rows[0]
    return int(count), int(digest)


def test_native_block_rows_equal_clickhouse_connect_rows(clickhouse_client: Any,
                                                          ch_database: str) -> None:
    migrate_clickhouse(clickhouse_client, ch_database)
    db = ch_database
    values = [line.encode() for line in GOLDEN.read_text().splitlines() if line] + [
        envelope(1, p="/ünïcode/☃?utm_source=x", title="Ti\"tle\\", h="https://h/\n"),
        envelope(2, cts=-5, ms=2**40, tier=0),
        envelope(3, cts=2**62, ms=0, bid=None, r="/internal", n="né"),
    ]  # fmt: skip
    batch = Batch("raw", 0, 0.0)
    for offset, value in enumerate(values):
        batch.add_offset(offset)
        batch.rows.append(event_row(value, 65535, 2**63 + offset)[1])
    writer = ClickHouseWriter(clickhouse_client, db)
    writer.ensure_state_table()
    writer.write(batch, recorded_ns=1)

    clickhouse_client.command(f"CREATE TABLE {db}.expected AS {db}.traffic")
    clickhouse_client.insert(f"{db}.expected", batch.rows, column_names=COLUMNS)
    expected = table_digest(clickhouse_client, f"{db}.expected")
    assert expected[0] == len(values)
    assert table_digest(clickhouse_client, f"{db}.traffic") == expected
    # The same batch again (a replay after a crash) is dropped by its deduplication token.
    writer.write(batch, recorded_ns=2)
    assert table_digest(clickhouse_client, f"{db}.traffic")[0] == len(values)
