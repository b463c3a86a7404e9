"""The dispatcher through the real Kafka broker and PostgreSQL: live map, nearest, calls, arrival, restart."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer, TopicPartition

from services.dispatcher.consumer import assign_from, follow_positions, tail_consumer
from services.dispatcher.settings import DispatcherSettings
from shared.contract.schemas import PositionRecord
from shared.contract.topics import CALLS, POSITIONS, UNIT_STATUS, Topic
from shared.geo import h3_cell
from shared.infra.kafka import ensure_topics, started_producer
from shared.settings import CommonSettings
from tests.conftest import TOKENS, Fleet, RunningService, console
from tests.harness import TopicTail, eventually

pytestmark = pytest.mark.integration

SITE = (31.50, 120.30)
"""Where these tests' units patrol: away from the other tests' units and zones."""


async def report(
    settings: CommonSettings, fleet: Fleet, unit_id: str, lat: float, lon: float, *, ts: datetime | None = None
) -> None:
    record = {
        "v": 1,
        "kind": "position",
        "unit_id": unit_id,
        "ts": (ts or datetime.now(UTC)).isoformat(),
        "lat": lat,
        "lon": lon,
        "fix": True,
        "platform_id": fleet.platform_id,
        "h3": h3_cell(lat, lon),
        "source": "kafka",
        "received_at": datetime.now(UTC).isoformat(),
    }
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all")
    try:
        await producer.start()
        await producer.send_and_wait(POSITIONS.name, orjson.dumps(record), key=unit_id.encode())
    finally:
        await producer.stop()


async def unit_view(client: httpx.AsyncClient, unit_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/units/{unit_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_position_produced_to_the_topic_moves_the_unit_and_makes_it_recommendable(
    settings: CommonSettings, dispatcher: RunningService, crew: Fleet
) -> None:
    unit = crew.unit_ids[0]
    await report(settings, crew, unit, SITE[0], SITE[1])
    async with console(dispatcher, "viewer") as client:

        async def moved() -> dict[str, Any] | None:
            view = await unit_view(client, unit)
            return view if view["position"] else None

        view = await eventually(moved, what="the unit to move")
        assert view["online"] is True
        assert view["status"] == "available"
        assert (view["position"]["lat"], view["position"]["lon"]) == SITE
        nearest = await client.get(
            "/v1/nearest",
            params={"lat": SITE[0] + 0.001, "lon": SITE[1], "platform_id": crew.platform_id, "order": "distance"},
        )
    assert nearest.status_code == 200
    [found] = nearest.json()["units"]
    assert found["unit_id"] == unit
    assert found["distance_m"] == pytest.approx(111.19, abs=0.1)
    assert found["eta_s"] > 0
    async with httpx.AsyncClient(base_url=dispatcher.url) as client:
        metrics = (await client.get("/metrics")).text
    online = next(line for line in metrics.splitlines() if line.startswith('kuaijing_dispatcher_units{state="online"}'))
    assert float(online.split()[-1]) >= 1


async def test_a_call_created_over_rest_lands_on_the_topic_once_even_when_repeated(
    settings: CommonSettings, dispatcher: RunningService
) -> None:
    call_id = f"C-{uuid.uuid4().hex[:10]}"
    body = {"call_id": call_id, "lat": 31.9, "lon": 120.9, "category": "traffic", "priority": 2, "address": "Ring road"}
    async with TopicTail(settings.kafka, CALLS) as calls, console(dispatcher) as client:
        first = await client.post("/v1/calls", json=body)
        again = await client.post("/v1/calls", json=body)
        assert first.status_code == 201, first.text
        assert again.status_code == 200
        assert again.json()["call_id"] == first.json()["call_id"] == call_id
        [event] = await calls.collect(lambda v: v["call_id"] == call_id, 1)
        await asyncio.sleep(1.0)
        assert len([v for _, v, _ in calls.records if v["call_id"] == call_id]) == 1
        assert calls.keys_of(lambda v: v["call_id"] == call_id) == [call_id.encode()]
    assert first.json()["zone_class"] == "rural"
    assert first.json()["target_s"] == 900
    assert event["event"] == "created"
    assert event["category"] == "traffic"
    assert event["v"] == 1


async def test_a_call_no_one_was_sent_to_is_closed_at_the_console_on_the_topic_and_in_the_store(
    settings: CommonSettings, dispatcher: RunningService, crew: Fleet
) -> None:
    phoned, sent = f"C-{uuid.uuid4().hex[:10]}", f"C-{uuid.uuid4().hex[:10]}"
    unit = crew.unit_ids[2]
    await report(settings, crew, unit, SITE[0] - 0.02, SITE[1])
    async with TopicTail(settings.kafka, CALLS) as calls, console(dispatcher) as client:
        for call_id in (phoned, sent):
            body = {"call_id": call_id, "lat": SITE[0] - 0.02, "lon": SITE[1], "category": "noise", "priority": 3}
            assert (await client.post("/v1/calls", json=body)).status_code == 201
        closed = await client.post(f"/v1/calls/{phoned}/close", json={})
        again = await client.post(f"/v1/calls/{phoned}/close")
        assert (await client.post(f"/v1/calls/{sent}/assign", json={"unit_id": unit})).status_code == 200
        refused = await client.post(f"/v1/calls/{sent}/close")
        unknown = await client.post("/v1/calls/C-none/close")
        [event] = await calls.collect(lambda v: v["call_id"] == phoned and v["event"] == "closed", 1)
        open_calls = (await client.get("/v1/calls", params={"status": "open"})).json()
        stored = (await client.get(f"/v1/calls/{phoned}")).json()
    async with console(dispatcher, "viewer") as viewer:
        forbidden = await viewer.post(f"/v1/calls/{phoned}/close")
    assert closed.status_code == again.status_code == 200, closed.text
    assert closed.json()["status"] == again.json()["status"] == "closed"
    assert [e["event"] for e in again.json()["timeline"]] == ["created", "closed"]
    assert (event["source"], event.get("unit_id")) == ("console", None)
    assert refused.status_code == 409
    assert unit in refused.json()["detail"]["error"]
    assert unknown.status_code == 404
    assert forbidden.status_code == 403
    assert phoned not in {c["call_id"] for c in open_calls}
    assert sent in {c["call_id"] for c in open_calls}
    assert stored["status"] == "closed"


async def test_gps_arrival_closes_the_loop(settings: CommonSettings, dispatcher: RunningService, crew: Fleet) -> None:
    unit = crew.unit_ids[1]
    lat, lon = SITE[0] + 0.02, SITE[1] + 0.02
    await report(settings, crew, unit, lat + 0.01, lon)  # about 1.1 km away
    call_id = f"C-{uuid.uuid4().hex[:10]}"
    async with (
        TopicTail(settings.kafka, CALLS) as calls,
        TopicTail(settings.kafka, UNIT_STATUS) as statuses,
        console(dispatcher) as client,
    ):

        async def online() -> bool:
            return bool((await unit_view(client, unit))["online"])

        await eventually(online, what="the unit online")
        created = await client.post(
            "/v1/calls", json={"call_id": call_id, "lat": lat, "lon": lon, "category": "fight", "priority": 1}
        )
        assert created.status_code == 201
        too_early = datetime.now(UTC) - timedelta(hours=1)
        early = await client.post(f"/v1/calls/{call_id}/assign", json={"unit_id": unit, "ts": too_early.isoformat()})
        assert early.status_code == 422
        assert early.json()["detail"]["field"] == "ts"
        assign_at = datetime.now(UTC)
        assigned = await client.post(f"/v1/calls/{call_id}/assign", json={"unit_id": unit, "ts": assign_at.isoformat()})
        assert assigned.status_code == 200, assigned.text
        busy = await client.post(f"/v1/calls/{call_id}/assign", json={"unit_id": unit})
        assert busy.status_code == 409
        assert busy.json()["detail"]["error"]

        await report(settings, crew, unit, lat + 0.0005, lon, ts=assign_at + timedelta(seconds=40))  # 56 m away

        async def on_scene() -> bool:
            return bool((await unit_view(client, unit))["status"] == "on_scene")

        await eventually(on_scene, what="GPS arrival")
        clear_at = assign_at + timedelta(minutes=5)
        cleared = await client.post(
            f"/v1/units/{unit}/status", json={"status": "available", "ts": clear_at.isoformat()}
        )
        assert cleared.status_code == 200
        events = await calls.collect(lambda v: v["call_id"] == call_id, 4)
        await statuses.collect(lambda v: v["unit_id"] == unit, 3)
        call = (await client.get(f"/v1/calls/{call_id}")).json()
    assert [e["event"] for e in events] == ["created", "assigned", "on_scene", "closed"]
    arrival = events[2]
    assert (arrival["source"], arrival["unit_id"], arrival["platform_id"]) == ("gps", unit, crew.platform_id)
    assert arrival["ts"] == (assign_at + timedelta(seconds=40)).isoformat().replace("+00:00", "Z")
    assert [s["status"] for _, s, _ in statuses.records if s["unit_id"] == unit] == [
        "dispatched",
        "on_scene",
        "available",
    ]
    assert call["status"] == "closed"
    assert [e["event"] for e in call["timeline"]] == ["created", "assigned", "on_scene", "closed"]


async def test_auto_assign_dispatches_the_best_recommendation(
    settings: CommonSettings, dispatcher: RunningService, crew: Fleet
) -> None:
    lat, lon = SITE[0] - 0.03, SITE[1] - 0.03
    await report(settings, crew, crew.unit_ids[2], lat, lon + 0.002)
    async with console(dispatcher) as client:

        async def online() -> bool:
            return bool((await unit_view(client, crew.unit_ids[2]))["online"])

        await eventually(online, what="the unit online")
        response = await client.post(
            "/v1/calls", json={"lat": lat, "lon": lon, "category": "robbery", "priority": 1, "auto_assign": True}
        )
        body = response.json()
        assert response.status_code == 201
        assert body["assigned_unit_id"] == crew.unit_ids[2] == body["recommendations"][0]["unit_id"]
        assert (await unit_view(client, crew.unit_ids[2]))["status"] == "dispatched"
        listed = (await client.get("/v1/calls", params={"status": "open"})).json()
    assert body["call_id"] in [c["call_id"] for c in listed]


async def test_a_restarted_dispatcher_keeps_statuses_positions_and_open_calls(
    settings: CommonSettings, dispatcher_settings: DispatcherSettings, dispatcher: RunningService, crew: Fleet
) -> None:
    from services.dispatcher.app import create_app

    unit = crew.unit_ids[0]
    await report(settings, crew, unit, SITE[0] + 0.05, SITE[1])
    call_id = f"C-{uuid.uuid4().hex[:10]}"
    async with console(dispatcher) as client:

        async def online() -> bool:
            return bool((await unit_view(client, unit))["online"])

        await eventually(online, what="the unit online")
        await client.post(
            "/v1/calls",
            json={"call_id": call_id, "lat": SITE[0] + 0.05, "lon": SITE[1], "category": "x", "priority": 3},
        )
        assert (await client.post(f"/v1/calls/{call_id}/assign", json={"unit_id": unit})).status_code == 200
        assert (await client.post(f"/v1/units/{unit}/status", json={"status": "en_route"})).status_code == 200

    async with RunningService(create_app(dispatcher_settings)) as restarted, console(restarted) as client:
        view = await unit_view(client, unit)
        assert (view["status"], view["call_id"]) == ("en_route", call_id)
        assert view["position"]["lat"] == SITE[0] + 0.05
        assert restarted.app.state.service.open_call(call_id) is not None
        assert unit in restarted.app.state.service.open_call(call_id).assigned
        call = (await client.get(f"/v1/calls/{call_id}")).json()
        assert [e["event"] for e in call["timeline"]] == ["created", "assigned", "en_route"]


async def test_the_registry_over_rest_and_zones_setting_the_target(dispatcher: RunningService) -> None:
    tag = uuid.uuid4().hex[:8]
    zone = {
        "type": "Polygon",
        "coordinates": [[[121.0, 30.0], [121.1, 30.0], [121.1, 30.1], [121.0, 30.1], [121.0, 30.0]]],
    }
    async with console(dispatcher, "admin") as admin:
        assert (
            await admin.put(
                f"/v1/platforms/P-{tag}", json={"name": "North", "kind": "patrol", "lat": 30.05, "lon": 121.05}
            )
        ).status_code == 200
        unit = await admin.put(
            f"/v1/units/U-{tag}",
            json={"platform_id": f"P-{tag}", "kind": "motorcycle", "callsign": "88", "terminal_id": "00013912345678"},
        )
        assert unit.status_code == 200, unit.text
        assert unit.json()["terminal_id"] == "13912345678"
        taken = await admin.put(
            f"/v1/units/T-{tag}",
            json={"platform_id": f"P-{tag}", "kind": "motorcycle", "callsign": "89", "terminal_id": "13912345678"},
        )
        assert taken.status_code == 409, taken.text
        assert "terminal_id" in taken.json()["detail"]["error"]
        missing = await admin.put(
            f"/v1/units/V-{tag}", json={"platform_id": "nowhere", "kind": "motorcycle", "callsign": "1"}
        )
        assert missing.status_code == 404
        assert missing.json()["detail"]["field"] == "platform_id"
        assert (await admin.put(f"/v1/zones/Z-{tag}", json={"class": "key_area", "geometry": zone})).status_code == 200
        bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
        assert (await admin.put(f"/v1/zones/B-{tag}", json={"class": "rural", "geometry": bow_tie})).status_code == 422
        imported = await admin.post(
            "/v1/registry/import",
            json={"units": [{"id": f"W-{tag}", "platform_id": f"P-{tag}", "kind": "command_car", "callsign": "99"}]},
        )
        assert imported.json() == {"platforms": 0, "units": 1, "zones": 0}
        assert (await admin.get(f"/v1/platforms/P-{tag}")).json()["name"] == "North"
        assert (await admin.get(f"/v1/zones/Z-{tag}")).json()["class"] == "key_area"
        assert (await admin.get(f"/v1/units/W-{tag}")).json()["status"] == "available"
        assert f"U-{tag}" in [
            u["id"] for u in (await admin.get("/v1/units", params={"platform_id": f"P-{tag}"})).json()
        ]
        call = await admin.post("/v1/calls", json={"lat": 30.05, "lon": 121.05, "category": "x", "priority": 1})
    assert (call.json()["zone_class"], call.json()["target_s"]) == ("key_area", 60)


@pytest.mark.parametrize(
    ("role", "method", "path", "expected"),
    [
        (None, "GET", "/v1/nearest?lat=1&lon=1", 401),
        ("terminal", "GET", "/v1/nearest?lat=1&lon=1", 403),
        ("viewer", "GET", "/v1/nearest?lat=1&lon=1", 200),
        ("viewer", "POST", "/v1/calls", 403),
        ("dispatcher", "POST", "/v1/calls", 201),
        ("dispatcher", "PUT", "/v1/platforms/X", 403),
        ("admin", "POST", "/v1/calls", 201),
        ("viewer", "GET", "/v1/calls", 200),
    ],
)
async def test_auth_per_role(
    dispatcher: RunningService, role: str | None, method: str, path: str, expected: int
) -> None:
    headers = {} if role is None else {"Authorization": f"Bearer {TOKENS[role]}"}
    body: dict[str, Any] | None = None
    if path == "/v1/calls" and method == "POST":
        body = {"lat": 10.0, "lon": 10.0, "category": "x", "priority": 3}
    elif path.startswith("/v1/platforms"):
        body = {"name": "x", "kind": "patrol", "lat": 1, "lon": 1}
    async with httpx.AsyncClient(base_url=dispatcher.url, headers=headers) as client:
        response = await client.request(method, path, json=body)
    assert response.status_code == expected, response.text


async def test_the_event_stream_carries_statuses_and_calls(dispatcher: RunningService, crew: Fleet) -> None:
    unit = crew.unit_ids[2]
    seen: list[tuple[str, dict[str, Any]]] = []

    async def listen() -> None:
        async with console(dispatcher, "viewer") as client, client.stream("GET", "/v1/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            kind = ""
            async for line in stream.aiter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    seen.append((kind, orjson.loads(line.split(":", 1)[1])))
                    if kind == "status" and seen[-1][1]["unit_id"] == unit:
                        return

    listener = asyncio.create_task(listen())

    async def subscribed() -> bool:
        return bool(dispatcher.app.state.service.subscribers > 0)

    await eventually(subscribed, what="the SSE subscription")
    async with console(dispatcher) as client:
        assert (await client.post(f"/v1/units/{unit}/status", json={"status": "off_duty"})).status_code == 200
    await asyncio.wait_for(listener, timeout=15)
    assert ("status", {"unit_id": unit, "status": "off_duty", "call_id": None}) in [
        (k, {key: v[key] for key in ("unit_id", "status", "call_id")}) for k, v in seen if k == "status"
    ]


async def test_the_positions_tail_rereads_what_a_failure_left_unapplied(settings: CommonSettings) -> None:
    # Recording a GPS arrival can fail (PostgreSQL down) halfway through a fetched batch; the restarted tail must
    # apply the rest of that batch, not skip to the next fetch.
    topic: Topic[Any] = Topic(f"test.positions-tail.{uuid.uuid4().hex[:8]}", "unit_id", None, partitions=2)
    await ensure_topics(settings.kafka, [topic])
    sent = []
    async with started_producer(settings.kafka) as producer:
        for i in range(12):
            unit_id, ts = f"TAIL-{i % 4}", datetime.now(UTC) + timedelta(seconds=i)
            record = {"v": 1, "kind": "position", "unit_id": unit_id, "ts": ts.isoformat(), "lat": SITE[0],
                      "lon": SITE[1], "fix": True, "platform_id": "P", "h3": h3_cell(*SITE), "source": "kafka",
                      "received_at": ts.isoformat()}  # fmt: skip
            await (await producer.send(topic.name, orjson.dumps(record), key=unit_id.encode()))
            sent.append((unit_id, ts))

        class FailsOnce:
            def __init__(self) -> None:
                self.applied: set[tuple[str, datetime]] = set()
                self.calls = 0

            async def on_position(self, record: PositionRecord) -> None:
                self.calls += 1
                if self.calls == 3:
                    raise ConnectionError("PostgreSQL is down")
                self.applied.add((record.unit_id, record.ts))

        sink = FailsOnce()
        consumer = tail_consumer(settings.kafka)
        try:
            await consumer.start()
            partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            tail = partial(follow_positions, consumer=consumer, partitions=partitions, service=sink,
                           caught_up=asyncio.Event(), batch_size=100, poll_ms=100)  # fmt: skip
            with pytest.raises(ConnectionError):
                await tail()
            restarted = asyncio.create_task(tail())

            async def all_applied() -> bool | None:
                return len(sink.applied) == len(sent) or None

            try:
                await eventually(all_applied, what="every position applied")
            finally:
                restarted.cancel()
        finally:
            await consumer.stop()
    assert sink.applied == set(sent)


async def test_the_calls_tail_takes_records_arriving_one_by_one_in_gathered_fetches(settings: CommonSettings) -> None:
    """A hundred call events published one at a time over a second or more reach the calls tail in a few fetches:
    the broker holds each for up to 100 ms. A tail on aiokafka's defaults fetches after nearly every record (about
    a twentieth of each call's CPU on a busy night)."""
    key = f"C-gathered-{uuid.uuid4().hex[:8]}".encode()
    consumer = tail_consumer(settings.kafka, gathered=True)
    await consumer.start()
    try:
        await assign_from(consumer, CALLS, None)

        async def publish() -> None:
            async with started_producer(settings.kafka) as producer:
                for n in range(100):
                    await (await producer.send(CALLS.name, b'{"n": %d}' % n, key=key))
                    await asyncio.sleep(0.005)

        async def fetches_until_all_read() -> int:
            fetches = read = 0
            while read < 100:
                batches = await consumer.getmany(timeout_ms=1000)
                ours = sum(1 for records in batches.values() for record in records if record.key == key)
                fetches, read = fetches + (ours > 0), read + ours
            return fetches

        fetches, _ = await asyncio.wait_for(asyncio.gather(fetches_until_all_read(), publish()), timeout=60)
    finally:
        await consumer.stop()
    assert fetches <= 30, f"{fetches} fetches for 100 records"
