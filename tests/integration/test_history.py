"""The history writer against the real broker and database: idempotent, event-time aware, crash safe."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared.contract.topics import POSITIONS
from shared.geo import h3_cell
from shared.settings import CommonSettings
from tests.conftest import Fleet, Infra, register_fleet
from tests.harness import eventually, free_port

pytestmark = pytest.mark.integration


def ping(unit_id: str, ts: datetime, **fields: object) -> dict[str, object]:
    return {"kind": "position", "unit_id": unit_id, "ts": ts.isoformat(), "lat": 27.2418, "lon": 111.4672, **fields}


async def count(db: asyncpg.Connection, unit_id: str) -> int:
    result: int = await db.fetchval("SELECT count(*) FROM positions WHERE unit_id = $1", unit_id)
    return result


async def test_an_http_ping_is_stored_in_history_with_everything_ingest_added(
    client: httpx.AsyncClient, db: asyncpg.Connection, fleet: Fleet, history_writer: None
) -> None:
    unit = fleet.unit_ids[0]
    ts = datetime.now(UTC).replace(microsecond=250_000) - timedelta(seconds=30)
    video = {"kind": "video", "unit_id": unit, "ts": ts.isoformat(), "channel": 1, "state": "fault", "fps": 0}
    body = [ping(unit, ts, speed_kmh=41.0, satellites=12, gnss="GPS"), video]
    assert (await client.post("/v1/telemetry", json=body)).json()["accepted"] == 2

    async def stored() -> asyncpg.Record | None:
        return await db.fetchrow("SELECT * FROM positions WHERE unit_id = $1", unit)

    row = await eventually(stored, what="the ping in positions")
    assert row["ts"] == ts
    assert row["speed_kmh"] == 41.0
    assert row["satellites"] == 12
    assert row["platform_id"] == fleet.platform_id
    assert row["h3"] == h3_cell(27.2418, 111.4672)
    assert row["source"] == "http"

    async def video_stored() -> asyncpg.Record | None:
        return await db.fetchrow("SELECT * FROM video_pings WHERE unit_id = $1", unit)

    video_row = await eventually(video_stored, what="the video ping")
    assert (video_row["channel"], video_row["state"]) == (1, "fault")


async def test_a_repeated_ping_is_stored_once(
    client: httpx.AsyncClient, db: asyncpg.Connection, fleet: Fleet, history_writer: None
) -> None:
    unit = fleet.unit_ids[1]
    ts = datetime.now(UTC) - timedelta(seconds=20)
    for _ in range(3):
        assert (await client.post("/v1/telemetry", json=[ping(unit, ts), ping(unit, ts)])).json()["accepted"] == 2
    marker = ts + timedelta(seconds=1)
    assert (await client.post("/v1/telemetry", json=ping(unit, marker))).json()["accepted"] == 1

    async def marker_stored() -> bool:
        return bool(await db.fetchval("SELECT 1 FROM positions WHERE unit_id = $1 AND ts = $2", unit, marker))

    await eventually(marker_stored, what="the marker ping")
    assert await count(db, unit) == 2


async def test_a_late_ping_is_stored_but_does_not_become_the_newest_position(
    client: httpx.AsyncClient, db: asyncpg.Connection, fleet: Fleet, history_writer: None
) -> None:
    unit = fleet.unit_ids[2]
    newest = datetime.now(UTC) - timedelta(seconds=5)
    late = newest - timedelta(hours=2)
    no_fix = newest + timedelta(seconds=2)
    await client.post("/v1/telemetry", json=ping(unit, newest, lat=27.3))
    await client.post("/v1/telemetry", json=ping(unit, late, lat=27.1))
    await client.post("/v1/telemetry", json=ping(unit, no_fix, lat=27.5, fix=False))

    async def all_three() -> bool:
        return await count(db, unit) == 3

    await eventually(all_three, what="three rows in history")
    latest = await db.fetchrow("SELECT ts, lat FROM unit_latest_positions WHERE unit_id = $1", unit)
    assert latest is not None
    assert latest["ts"] == newest
    assert latest["lat"] == 27.3


async def test_the_history_writer_killed_mid_batch_and_restarted_loses_nothing_and_duplicates_nothing(
    infra: Infra, settings: CommonSettings, db: asyncpg.Connection
) -> None:
    fleet = await register_fleet(infra.database, units=4)
    start = datetime.now(UTC) - timedelta(hours=1)
    total = 20_000
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=20)
    try:
        await producer.start()
        for i in range(total):
            unit = fleet.unit_ids[i % 4]
            record = {
                "v": 1, "kind": "position", "unit_id": unit, "ts": (start + timedelta(milliseconds=i)).isoformat(),
                "lat": 27.2, "lon": 111.4, "fix": True, "platform_id": fleet.platform_id,
                "h3": h3_cell(27.2, 111.4), "source": "kafka", "received_at": datetime.now(UTC).isoformat(),
            }  # fmt: skip
            await producer.send(POSITIONS.name, orjson.dumps(record), key=unit.encode())
        await producer.flush()
    finally:
        await producer.stop()

    env = {
        **os.environ,
        "KUAIJING_KAFKA_BOOTSTRAP": settings.kafka,
        "KUAIJING_DATABASE_URL": settings.database,
        "KUAIJING_API_TOKENS": "admin:x",
        "KUAIJING_RAW_CONSUMER_ENABLED": "false",
        "KUAIJING_HISTORY_GROUP": f"history-kill-{uuid.uuid4().hex[:8]}",
        "KUAIJING_HISTORY_BATCH_SIZE": "300",
        "KUAIJING_INGEST_PORT": str(free_port()),
        "KUAIJING_LOG_LEVEL": "WARNING",
    }
    units = fleet.unit_ids

    async def stored() -> int:
        result: int = await db.fetchval("SELECT count(*) FROM positions WHERE unit_id = ANY($1)", units)
        return result

    command = [sys.executable, "-m", "services.cli", "serve", "ingest"]
    writer = await asyncio.create_subprocess_exec(*command, env=env)
    try:
        await eventually(stored, timeout_s=60, what="the writer to store its first batches")
        writer.kill()
        await writer.wait()
        at_kill = await stored()
        assert 0 < at_kill < total, "the kill must land mid-stream for this test to mean anything"

        writer = await asyncio.create_subprocess_exec(*command, env=env)

        async def complete() -> bool:
            return await stored() >= total

        await eventually(complete, timeout_s=90, what="the restarted writer to finish")
        await asyncio.sleep(1.0)  # anything replayed after completion would show up as a change now
    finally:
        if writer.returncode is None:
            writer.terminate()
            await asyncio.wait_for(writer.wait(), timeout=30)
    assert await stored() == total
    distinct = await db.fetchval(
        "SELECT count(*) FROM (SELECT DISTINCT unit_id, ts FROM positions WHERE unit_id = ANY($1)) d", units
    )
    assert distinct == total
    newest = await db.fetch("SELECT unit_id, ts FROM unit_latest_positions WHERE unit_id = ANY($1)", units)
    assert {r["unit_id"]: r["ts"] for r in newest} == {
        units[k]: start + timedelta(milliseconds=total - 4 + k) for k in range(4)
    }
