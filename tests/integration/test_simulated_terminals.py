"""The demo's own terminals against the real gateway and broker: a simulated JT/T 808 terminal registers, logs in,
reports its blind-area fixes before its current one, delivers what it queued across a lost connection, keeps its
link alive with heartbeats and flags a lost camera; the raw-topic relay's pings come out on `kuaijing.positions`
like any other."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.ingest.settings import IngestSettings
from services.simulator.night import REAR_CAMERA
from services.simulator.terminals import BATCH_ITEMS, Jt808Terminal, RawTopicRelay
from shared.contract.topics import POSITIONS, VIDEO
from shared.settings import CommonSettings
from tests.conftest import Fleet
from tests.harness import TopicTail

pytestmark = pytest.mark.integration


def ping(unit_id: str, ts: datetime, seq: int) -> dict[str, Any]:
    return {"kind": "position", "unit_id": unit_id, "ts": ts.isoformat(), "lat": 27.24 + seq / 10_000,
            "lon": 111.47, "speed_kmh": 30.0, "heading_deg": 90.0, "gnss": "BDS+GPS", "satellites": 11,
            "hdop": 0.9, "seq": seq}  # fmt: skip


def zulu(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


async def test_the_simulated_terminal_uploads_late_fixes_first_and_survives_a_lost_connection(
    settings: CommonSettings, ingest_settings: IngestSettings, terminals: Fleet
) -> None:
    unit, phone = terminals.unit_ids[0], terminals.terminal_ids[0]
    now = datetime.now(UTC).replace(microsecond=0)
    late = tuple(ping(unit, now - timedelta(seconds=60 - i), i) for i in range(BATCH_ITEMS + 5))
    terminal = Jt808Terminal(ingest_settings.jt808_port, phone)
    try:
        async with TopicTail(settings.kafka, POSITIONS) as positions:
            sent = ping(unit, now, 100)
            futures = terminal.report(sent, late)
            assert len(futures) == 3, "30 late fixes go as two 0x0704 batches, then the 0x0200"
            await asyncio.wait_for(asyncio.gather(*futures), timeout=20)
            records = await positions.collect(lambda v: v["unit_id"] == unit, len(late) + 1)

            terminal._writer.transport.abort()
            after = terminal.report(ping(unit, now + timedelta(seconds=2), 101), ())
            await asyncio.wait_for(asyncio.gather(*after), timeout=20)
            again = zulu(now + timedelta(seconds=2))
            await positions.collect(lambda v: v["unit_id"] == unit and v["ts"] == again, 1)
            await asyncio.wait_for(terminal.heartbeat(), timeout=20)
    finally:
        await terminal.close()
    assert sorted(r["ts"] for r in records) == sorted(zulu(datetime.fromisoformat(p["ts"])) for p in (*late, sent))
    assert {r["source"] for r in records} == {"jt808"}


async def test_a_lost_camera_flagged_on_a_fix_comes_out_as_an_offline_video_ping(
    settings: CommonSettings, ingest_settings: IngestSettings, terminals: Fleet
) -> None:
    unit, phone = terminals.unit_ids[1], terminals.terminal_ids[1]
    now = datetime.now(UTC).replace(microsecond=0)
    terminal = Jt808Terminal(ingest_settings.jt808_port, phone)
    try:
        async with TopicTail(settings.kafka, VIDEO) as video:
            [acknowledged] = terminal.report(ping(unit, now, 1), (), video_lost=REAR_CAMERA)
            await asyncio.wait_for(acknowledged, timeout=20)
            [state] = await video.collect(lambda v: v["unit_id"] == unit, 1)
    finally:
        await terminal.close()
    assert (state["channel"], state["state"], state["ts"]) == (2, "offline", zulu(now))


async def test_the_raw_topic_relay_reaches_positions(settings: CommonSettings, fleet: Fleet) -> None:
    unit = fleet.unit_ids[0]
    now = datetime.now(UTC).replace(microsecond=0)
    relay = RawTopicRelay(settings.kafka_client)
    try:
        await relay.start()
        async with TopicTail(settings.kafka, POSITIONS) as positions:
            futures = await relay.relay([ping(unit, now + timedelta(seconds=i), i) for i in range(5)])
            await asyncio.wait_for(asyncio.gather(*futures), timeout=20)
            records = await positions.collect(lambda v: v["unit_id"] == unit, 5)
    finally:
        await relay.stop()
    assert sorted(r["seq"] for r in records) == list(range(5))
