"""Two dispatcher processes over one Kafka and one PostgreSQL, as a command centre runs them for a node to fail:
each holds the whole live map, either serves any call, one unit is never assigned twice, either's live feed shows
every call event, and the survivor of a SIGKILL loses nothing the other committed."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest

from shared.contract.topics import CALLS
from shared.settings import CommonSettings
from tests.conftest import Fleet, Infra, register_fleet
from tests.harness import TopicTail, eventually
from tests.integration.test_dispatcher import report, unit_view
from tests.replicas import Replica, running, start_replica

pytestmark = pytest.mark.integration

SITE = (30.90, 119.80)
"""Where these tests' units patrol: away from every other test's units and zones."""


@pytest.fixture(scope="module")
def replicas(infra: Infra) -> Iterator[list[Replica]]:
    with running([start_replica(infra, "dispatcher"), start_replica(infra, "dispatcher")]) as started:
        yield started


@pytest.fixture
async def crew(infra: Infra, replicas: list[Replica]) -> Fleet:
    """Fresh units, online, known to both replicas before the test starts."""
    fleet = await register_fleet(infra.database, units=4)

    async def both_know() -> bool:
        for replica in replicas:
            async with replica.client("viewer") as c:
                for unit in fleet.unit_ids:
                    if (await c.get(f"/v1/units/{unit}")).status_code != 200:
                        return False
        return True

    await eventually(both_know, timeout_s=30, what="both replicas to learn the new units")
    settings = CommonSettings(kafka_bootstrap=infra.kafka, database_url=infra.database)
    for index, unit in enumerate(fleet.unit_ids):
        await report(settings, fleet, unit, SITE[0] + index * 0.001, SITE[1])

    async def both_online() -> bool:
        for replica in replicas:
            async with replica.client("viewer") as c:
                for unit in fleet.unit_ids:
                    response = await c.get(f"/v1/units/{unit}")
                    if response.status_code != 200 or not response.json()["online"]:
                        return False
        return True

    await eventually(both_online, timeout_s=30, what="both replicas to hold the new units online")
    return fleet


async def new_call(replica: Replica, **extra: Any) -> str:
    async with replica.client() as c:
        response = await c.post(
            "/v1/calls", json={"lat": SITE[0], "lon": SITE[1], "category": "theft", "priority": 1} | extra
        )
    assert response.status_code == 201, response.text
    call_id: str = response.json()["call_id"]
    return call_id


async def test_each_replica_holds_the_whole_live_map(replicas: list[Replica], crew: Fleet) -> None:
    for replica in replicas:
        async with replica.client("viewer") as c:
            lats = [(await unit_view(c, unit))["position"]["lat"] for unit in crew.unit_ids]
        assert lats == [SITE[0] + i * 0.001 for i in range(len(crew.unit_ids))]


async def test_a_call_created_on_one_replica_is_readable_and_assignable_on_the_other_within_a_second(
    replicas: list[Replica], crew: Fleet
) -> None:
    first, second = replicas
    call_id = await new_call(first)
    async with second.client() as c:

        async def readable() -> bool:
            return (await c.get(f"/v1/calls/{call_id}")).status_code == 200

        await eventually(readable, timeout_s=1, what="the call readable on the other replica")
        assigned = await c.post(f"/v1/calls/{call_id}/assign", json={"unit_id": crew.unit_ids[0]})
        assert assigned.status_code == 200, assigned.text
    async with first.client() as c:

        async def seen_assigned() -> bool:
            call = (await c.get(f"/v1/calls/{call_id}")).json()
            return bool(call["assigned_unit_ids"] == [crew.unit_ids[0]])

        await eventually(seen_assigned, timeout_s=1, what="the assignment seen on the first replica")
        en_route = await c.post(f"/v1/units/{crew.unit_ids[0]}/status", json={"status": "en_route"})
        assert en_route.status_code == 200, en_route.text


async def test_fifty_concurrent_assignments_of_one_unit_across_replicas_give_exactly_one_success(
    replicas: list[Replica], crew: Fleet, db: asyncpg.Connection
) -> None:
    unit = crew.unit_ids[1]
    call_ids = [await new_call(replicas[i % 2]) for i in range(50)]
    clients = [replica.client() for replica in replicas]
    try:
        answers = await asyncio.gather(
            *(
                clients[i % 2].post(f"/v1/calls/{call_id}/assign", json={"unit_id": unit})
                for i, call_id in enumerate(call_ids)
            )
        )
    finally:
        for c in clients:
            await c.aclose()
    codes = sorted(a.status_code for a in answers)
    assert codes == [200] + [409] * 49, [a.text for a in answers if a.status_code not in (200, 409)]
    stored = await db.fetchval(
        "SELECT count(*) FROM call_events WHERE event = 'assigned' AND unit_id = $1 AND call_id = ANY($2)",
        unit,
        call_ids,
    )
    assert stored == 1


async def test_the_live_feed_of_either_replica_shows_every_call_event(replicas: list[Replica], crew: Fleet) -> None:
    marker = f"R-{uuid.uuid4().hex[:10]}"
    heard: dict[str, list[str]] = {replica.url: [] for replica in replicas}
    subscribed = [asyncio.Event() for _ in replicas]

    async def listen(replica: Replica, ready: asyncio.Event) -> None:
        async with replica.client("viewer") as c, c.stream("GET", "/v1/events") as stream:
            kind = ""
            async for line in stream.aiter_lines():
                if line.startswith(":"):
                    ready.set()
                elif line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and kind == "call":
                    event = orjson.loads(line.split(":", 1)[1])
                    if event["call_id"] == marker:
                        heard[replica.url].append(event["event"])
                        if {"created", "assigned", "en_route"} <= set(heard[replica.url]):
                            return

    listeners = [asyncio.create_task(listen(r, e)) for r, e in zip(replicas, subscribed, strict=True)]
    try:
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in subscribed)), timeout=10)
        await new_call(replicas[0], call_id=marker, auto_assign=True)
        async with replicas[1].client() as c:
            assigned = (await c.get(f"/v1/calls/{marker}")).json()["assigned_unit_ids"]
            await c.post(f"/v1/units/{assigned[0]}/status", json={"status": "en_route", "call_id": marker})
        await asyncio.wait_for(asyncio.gather(*listeners), timeout=15)
    finally:
        for listener in listeners:
            listener.cancel()
    # Each once; the replica that decided the en_route may show it before the other's events reach it by the topic.
    assert all(sorted(events) == ["assigned", "created", "en_route"] for events in heard.values()), heard


async def test_killing_one_replica_leaves_the_other_serving_with_nothing_lost(
    replicas: list[Replica], crew: Fleet, settings: CommonSettings, db: asyncpg.Connection
) -> None:
    doomed, survivor = replicas
    async with TopicTail(settings.kafka, CALLS) as calls_topic:
        call_ids = [await new_call(doomed, auto_assign=i == 0) for i in range(5)]
        doomed.process.send_signal(signal.SIGKILL)
        doomed.process.wait()
        later = await new_call(survivor)
        async with survivor.client() as c:
            assigned = await c.post(f"/v1/calls/{later}/assign", json={"unit_id": crew.unit_ids[3]})
            assert assigned.status_code == 200, assigned.text
        committed = {
            (r["call_id"], r["event"])
            for r in await db.fetch(
                "SELECT call_id, event FROM call_events WHERE call_id = ANY($1)", [*call_ids, later]
            )
        }
        published = await calls_topic.collect(lambda v: v["call_id"] in {*call_ids, later}, len(committed))
    assert {(v["call_id"], v["event"]) for v in published} == committed
