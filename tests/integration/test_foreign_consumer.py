"""Consumers that are not Kuaijing's: librdkafka (through confluent-kafka) reads what ingest publishes, and a consumer
built from the published AsyncAPI and JSON Schemas alone (no project code) validates live records of every topic."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from services.dispatcher.settings import DispatcherSettings
from shared.contract.topics import POSITIONS
from shared.settings import CommonSettings
from tests.conftest import Fleet, Infra, RunningService, console
from tests.integration.test_coverage import play_advice_scene

pytestmark = pytest.mark.integration

PUBLISHED = Path(__file__).resolve().parents[2] / "shared" / "contract" / "published"
"""Read as files: the schema-built consumer below uses no project code."""

CONTRACT_POSITION_FIELDS = {
    # contract section 2: the position ping, every field; section 3: what ingest adds; "v" on every value
    "v", "kind", "unit_id", "ts", "lat", "lon", "speed_kmh", "heading_deg", "altitude_m", "gnss", "satellites",
    "hdop", "seq", "crs", "fix", "platform_id", "h3", "source", "received_at",
}  # fmt: skip


def read_with_librdkafka(bootstrap: str, unit_id: str, timeout_s: float = 30.0) -> tuple[bytes, dict[str, object]]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"librdkafka-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    try:
        partitions = [TopicPartition(POSITIONS.name, p, 0) for p in range(POSITIONS.partitions)]
        consumer.assign(partitions)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None or message.error():
                continue
            value = orjson.loads(message.value() or b"")
            if value.get("unit_id") == unit_id:
                return message.key() or b"", value
        raise AssertionError(f"librdkafka did not see {unit_id} on {POSITIONS.name}")
    finally:
        consumer.close()


async def test_librdkafka_reads_a_position_with_exactly_the_contracts_fields(
    client: httpx.AsyncClient, settings: CommonSettings, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[0]
    ts = datetime.now(UTC) - timedelta(seconds=1)
    ping = {
        "kind": "position", "unit_id": unit, "ts": ts.isoformat(), "lat": 27.2418, "lon": 111.4672,
        "speed_kmh": 32.5, "heading_deg": 270, "altitude_m": -12.0, "gnss": "BDS+GPS", "satellites": 14, "hdop": 0.8,
        "seq": 1842, "crs": "WGS84", "vendor_extra": "dropped",
    }  # fmt: skip
    assert (await client.post("/v1/telemetry", json=ping)).json()["accepted"] == 1
    key, value = await asyncio.to_thread(read_with_librdkafka, settings.kafka, unit)
    assert key == unit.encode()
    assert set(value) == CONTRACT_POSITION_FIELDS
    assert value["altitude_m"] == -12.0
    assert value["heading_deg"] == 270
    assert value["source"] == "http"
    assert value["crs"] == "WGS84"


def read_every_topic(bootstrap: str, start: dict[str, dict[int, int]], timeout_s: float = 30.0) -> dict[str, list[Any]]:
    """What a consumer written from the published files alone sees: every record published after `start`."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"schemas-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    seen: dict[str, list[Any]] = {topic: [] for topic in start}
    try:
        consumer.assign([TopicPartition(t, p, o) for t, offsets in start.items() for p, o in offsets.items()])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not all(seen.values()):
            message = consumer.poll(0.2)
            if message is not None and not message.error():
                seen[message.topic() or ""].append(message)
        return seen
    finally:
        consumer.close()


def high_watermarks(bootstrap: str, channels: list[dict[str, Any]]) -> dict[str, dict[int, int]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"marks-{uuid.uuid4().hex[:8]}"})
    try:
        return {
            c["address"]: {
                p: consumer.get_watermark_offsets(TopicPartition(c["address"], p), timeout=10)[1]
                for p in range(c["bindings"]["kafka"]["partitions"])
            }
            for c in channels
        }
    finally:
        consumer.close()


async def test_a_consumer_built_from_the_published_schemas_alone_validates_live_records_of_every_topic(
    client: httpx.AsyncClient,
    settings: CommonSettings,
    fleet: Fleet,
    dispatcher: RunningService,
    crew: Fleet,
    infra: Infra,
    dispatcher_settings: DispatcherSettings,
) -> None:
    asyncapi = json.loads((PUBLISHED / "asyncapi.json").read_text())
    channels = list(asyncapi["channels"].values())
    validators = {
        c["address"]: {
            name: jsonschema.Draft202012Validator(json.loads((PUBLISHED / "schemas" / f"{name}.json").read_text()))
            for name in c["messages"]
            if (PUBLISHED / "schemas" / f"{name}.json").exists()
        }
        for c in channels
    }
    start = await asyncio.to_thread(high_watermarks, settings.kafka, channels)

    unit = fleet.unit_ids[0]
    now = datetime.now(UTC) - timedelta(seconds=1)
    pings = [
        {"kind": "position", "unit_id": unit, "ts": now.isoformat(), "lat": 27.2418, "lon": 111.4672},
        {"kind": "video", "unit_id": unit, "ts": now.isoformat(), "channel": 1, "state": "streaming"},
        {"kind": "position", "unit_id": unit, "ts": now.isoformat(), "lat": 95.0, "lon": 111.4672},
    ]
    assert (await client.post("/v1/telemetry", json=pings)).json()["accepted"] == 2
    raw = Producer({"bootstrap.servers": settings.kafka})
    raw.produce(
        "kuaijing.telemetry.raw", orjson.dumps(pings[0] | {"ts": (now - timedelta(seconds=1)).isoformat()}), unit
    )
    raw.flush(10)
    async with console(dispatcher) as c:
        call = await c.post("/v1/calls", json={"lat": 31.5, "lon": 120.3, "category": "theft", "priority": 2})
        assert call.status_code == 201, call.text
        assigned = await c.post(f"/v1/calls/{call.json()['call_id']}/assign", json={"unit_id": crew.unit_ids[0]})
        assert assigned.status_code == 200, assigned.text
    await play_advice_scene(infra, settings, dispatcher_settings)  # move-up advice and coverage samples

    seen = await asyncio.to_thread(read_every_topic, settings.kafka, start)
    assert {topic for topic, records in seen.items() if not records} == set()
    checked = 0
    for topic, records in seen.items():
        for record in records:
            headers = dict(record.headers() or [])
            if headers.get("content-type") == b"application/jt808":
                continue
            value = orjson.loads(record.value())
            errors = {name: list(v.iter_errors(value)) for name, v in validators[topic].items()}
            assert any(not e for e in errors.values()), (topic, value, errors)
            checked += 1
    assert checked >= len(channels)
