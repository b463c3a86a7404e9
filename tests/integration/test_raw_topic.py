"""`kuaijing.telemetry.raw` through the real ingest consumer."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared.contract.topics import DEADLETTER, JT808_CONTENT_TYPE, POSITIONS, TELEMETRY_RAW
from shared.settings import CommonSettings
from tests.conftest import Fleet, RunningService
from tests.harness import TopicTail

pytestmark = pytest.mark.integration


async def produce(settings: CommonSettings, *records: tuple[bytes, bytes, list[tuple[str, bytes]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    try:
        await producer.start()
        for key, value, headers in records:
            await producer.send_and_wait(TELEMETRY_RAW.name, value, key=key, headers=headers)
    finally:
        await producer.stop()


async def test_a_json_ping_on_the_raw_topic_reaches_the_positions_topic(
    settings: CommonSettings, ingest: RunningService, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[0]
    ts = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    ping = {"kind": "position", "unit_id": unit, "ts": ts, "lat": 27.25, "lon": 111.48, "gnss": "BDS"}
    async with TopicTail(settings.kafka, POSITIONS) as positions:
        await produce(settings, (b"", orjson.dumps(ping), []))
        [record] = await positions.collect(lambda v: v["unit_id"] == unit, 1)
        assert positions.keys_of(lambda v: v["unit_id"] == unit) == [unit.encode()]
    assert record["source"] == "kafka"
    assert record["platform_id"] == fleet.platform_id
    assert record["gnss"] == "BDS"


async def test_bad_raw_records_are_dead_lettered_with_their_origin_and_the_good_one_beside_them_is_kept(
    settings: CommonSettings, ingest: RunningService, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[2]
    good = {"kind": "position", "unit_id": unit, "ts": datetime.now(UTC).isoformat(), "lat": 27.2, "lon": 111.4}
    frame = bytes.fromhex("7e0002000004304832546500b7ca7e")
    marker = unit.encode()
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter, TopicTail(settings.kafka, POSITIONS) as positions:
        await produce(
            settings,
            (marker, b"{broken json " + marker, []),
            (marker, frame + marker, [("content-type", JT808_CONTENT_TYPE)]),
            (marker, orjson.dumps(good), []),
            (marker, orjson.dumps({**good, "lat": -200.0}), []),
        )
        letters = await deadletter.collect(lambda v: unit in v["payload"] or _b64_has(v, marker), 3)
        await positions.collect(lambda v: v["unit_id"] == unit, 1)
        assert set(deadletter.keys_of(lambda v: unit in v["payload"] or _b64_has(v, marker))) == {marker}
    by_reason = {letter["reason"]: letter for letter in letters}
    assert set(by_reason) == {"invalid_json", "invalid_frame", "out_of_range"}
    assert by_reason["invalid_frame"]["payload_encoding"] == "base64"
    assert base64.b64decode(by_reason["invalid_frame"]["payload"]) == frame + marker
    assert all(letter["source"] == "kafka" for letter in letters)
    assert all(letter["origin"].startswith(f"{TELEMETRY_RAW.name}/") for letter in letters)


def _b64_has(letter: dict[str, str], marker: bytes) -> bool:
    return letter.get("payload_encoding") == "base64" and marker in base64.b64decode(letter["payload"])
