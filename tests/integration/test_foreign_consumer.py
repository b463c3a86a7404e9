"""A consumer that is not aiokafka (librdkafka, through confluent-kafka) reads what ingest publishes."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from confluent_kafka import Consumer, TopicPartition

from shared.contract.topics import POSITIONS
from shared.settings import CommonSettings
from tests.conftest import Fleet

pytestmark = pytest.mark.integration

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
