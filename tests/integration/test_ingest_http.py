"""HTTP telemetry through the real ingest service, Kafka broker and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from shared.contract.topics import DEADLETTER, POSITIONS, VIDEO
from shared.settings import CommonSettings
from tests.conftest import TOKENS, Fleet, RunningService
from tests.harness import TopicTail, eventually

pytestmark = pytest.mark.integration


def ping(unit_id: str, *, seconds_ago: float = 10, **fields: Any) -> dict[str, Any]:
    ts = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return {"kind": "position", "unit_id": unit_id, "ts": ts.isoformat(), "lat": 27.2418, "lon": 111.4672, **fields}


async def test_an_array_of_pings_lands_on_the_positions_and_video_topics_keyed_by_unit(
    client: httpx.AsyncClient, settings: CommonSettings, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[0]
    body = [
        ping(unit, speed_kmh=32.5, gnss="BDS+GPS", seq=1),
        {"kind": "video", "unit_id": unit, "ts": datetime.now(UTC).isoformat(), "channel": 2, "state": "streaming"},
    ]
    async with TopicTail(settings.kafka, POSITIONS) as positions, TopicTail(settings.kafka, VIDEO) as video:
        response = await client.post("/v1/telemetry", json=body)
        assert response.status_code == 202
        assert response.json() == {"accepted": 2, "rejected": []}
        [position] = await positions.collect(lambda v: v["unit_id"] == unit, 1)
        [video_record] = await video.collect(lambda v: v["unit_id"] == unit, 1)
        assert positions.keys_of(lambda v: v["unit_id"] == unit) == [unit.encode()]
    assert position["v"] == 1
    assert position["platform_id"] == fleet.platform_id
    assert position["source"] == "http"
    assert position["speed_kmh"] == 32.5
    assert position["h3"] == "8940330f24bffff"
    assert position["ts"].endswith("Z")
    assert video_record["channel"] == 2
    assert video_record["platform_id"] == fleet.platform_id


async def test_ndjson_is_accepted_line_by_line_and_a_bad_line_does_not_lose_the_good_ones(
    client: httpx.AsyncClient, settings: CommonSettings, fleet: Fleet
) -> None:
    unit = fleet.unit_ids[0]
    lines = [orjson.dumps(ping(unit, seconds_ago=3, seq=1)), b"{not json", orjson.dumps(ping(unit, seconds_ago=2))]
    async with TopicTail(settings.kafka, POSITIONS) as positions:
        response = await client.post(
            "/v1/telemetry", content=b"\n".join(lines) + b"\n", headers={"Content-Type": "application/x-ndjson"}
        )
        assert response.status_code == 202
        answer = response.json()
        assert answer["accepted"] == 2
        assert [r["index"] for r in answer["rejected"]] == [1]
        await positions.collect(lambda v: v["unit_id"] == unit, 2)


REJECTIONS = [
    ("unknown_unit", lambda u: ping("no-such-unit")),
    ("future_timestamp", lambda u: ping(u, seconds_ago=-600)),
    ("out_of_range", lambda u: ping(u, lat=91.0)),
    ("out_of_range", lambda u: ping(u) | {"ts": "0001-01-01T00:00:00+08:00"}),  # no UTC instant: was a 500
    ("missing_field", lambda u: {"kind": "position", "unit_id": u, "ts": "2026-11-23T08:15:30Z"}),
    ("invalid_value", lambda u: ping(u, lat="north")),
    ("timestamp_without_offset", lambda u: ping(u) | {"ts": "2026-11-23T08:15:30"}),
    ("unknown_kind", lambda u: ping(u, kind="temperature")),
    ("not_an_object", lambda u: [u]),
]


@pytest.mark.parametrize(("reason", "make"), REJECTIONS, ids=[r for r, _ in REJECTIONS])
async def test_every_rejection_reason_is_answered_and_dead_lettered(
    client: httpx.AsyncClient, settings: CommonSettings, fleet: Fleet, reason: str, make: Any
) -> None:
    unit = fleet.unit_ids[1]
    bad = make(unit)
    good = ping(unit, seq=99)
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter:
        response = await client.post("/v1/telemetry", json=[good, bad])
        assert response.status_code == 202
        answer = response.json()
        assert answer["accepted"] == 1
        [rejected] = answer["rejected"]
        assert rejected["index"] == 1
        payload = orjson.dumps(bad).decode()
        [letter] = await deadletter.collect(lambda v: v["payload"] == payload, 1)
    assert letter["reason"] == reason
    assert letter["error"] == rejected["error"]
    assert letter["source"] == "http"
    assert letter["v"] == 1
    assert "received_at" in letter


async def test_a_body_that_is_not_json_is_400_and_dead_lettered(
    client: httpx.AsyncClient, settings: CommonSettings
) -> None:
    body = b"\x00\xffdefinitely not json"
    async with TopicTail(settings.kafka, DEADLETTER) as deadletter:
        response = await client.post("/v1/telemetry", content=body)
        assert response.status_code == 400
        assert response.json()["detail"]["field"] == "body"
        [letter] = await deadletter.collect(
            lambda v: v.get("payload_encoding") == "base64" and "not JSON" in v["error"], 1
        )
    assert letter["reason"] == "invalid_json"


async def test_more_than_ten_thousand_pings_is_413(client: httpx.AsyncClient, fleet: Fleet) -> None:
    body = orjson.dumps([ping(fleet.unit_ids[0])] * 10_001)
    response = await client.post("/v1/telemetry", content=body)
    assert response.status_code == 413
    assert "10000" in response.json()["detail"]["error"]


async def test_a_body_over_8_mib_is_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/telemetry", content=b" " * (8 * 1024 * 1024 + 1))
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("token", "status"),
    [(None, 401), ("wrong", 401), (TOKENS["viewer"], 403), (TOKENS["dispatcher"], 403), (TOKENS["admin"], 202)],
)
async def test_telemetry_needs_a_terminal_or_admin_token(
    ingest: RunningService, fleet: Fleet, token: str | None, status: int
) -> None:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=ingest.url) as anonymous:
        response = await anonymous.post("/v1/telemetry", json=ping(fleet.unit_ids[0]), headers=headers)
    assert response.status_code == status
    if status != 202:
        assert response.json()["detail"]["field"] == "Authorization"


async def test_probes_answer_without_a_token(ingest: RunningService) -> None:
    async with httpx.AsyncClient(base_url=ingest.url) as anonymous:
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        ready = await anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"kafka": "ok", "postgres": "ok"}
        metrics = (await anonymous.get("/metrics")).text
    assert "kuaijing_ingest_accepted_total" in metrics
    assert "kuaijing_ingest_produce_seconds" in metrics


async def test_metrics_count_accepted_and_rejected_by_reason(client: httpx.AsyncClient, fleet: Fleet) -> None:
    def value(text: str, name: str, labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(f"{name}{{") and all(part in line for part in labels.split(",")):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = (await client.get("/metrics")).text
    await client.post("/v1/telemetry", json=[ping(fleet.unit_ids[0]), ping("ghost")])
    after = (await client.get("/metrics")).text
    accepted = 'kind="position",source="http"'
    rejected = 'reason="unknown_unit",source="http"'
    assert (
        value(after, "kuaijing_ingest_accepted_total", accepted)
        == value(before, "kuaijing_ingest_accepted_total", accepted) + 1
    )
    assert (
        value(after, "kuaijing_ingest_rejected_total", rejected)
        == value(before, "kuaijing_ingest_rejected_total", rejected) + 1
    )


async def test_a_unit_registered_after_start_is_accepted_without_a_restart(
    client: httpx.AsyncClient, db: asyncpg.Connection, fleet: Fleet
) -> None:
    newcomer = f"{fleet.unit_ids[0]}-new"
    assert (await client.post("/v1/telemetry", json=ping(newcomer))).json()["accepted"] == 0
    await db.execute(
        "INSERT INTO units (id, platform_id, kind, callsign) VALUES ($1, $2, 'motorcycle', '7777')",
        newcomer,
        fleet.platform_id,
    )

    async def accepted() -> bool:
        return bool((await client.post("/v1/telemetry", json=ping(newcomer))).json()["accepted"] == 1)

    await eventually(accepted, timeout_s=10, what="the new unit to be accepted")
