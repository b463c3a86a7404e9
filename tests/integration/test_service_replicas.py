"""Ingest and analytics scaled out the way Kafka scales consumers: replicas in one consumer group share the
partitions, each record is handled by one of them, and a JT/T 808 terminal may reconnect to any ingest replica
(its auth code lives in PostgreSQL, not in the replica that issued it)."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from aiokafka import AIOKafkaProducer

from shared import jt808
from shared.contract.topics import CALLS, TELEMETRY_RAW
from shared.jt808 import MessageId, RegisterResult, Result
from shared.settings import CommonSettings
from tests.conftest import Infra, register_fleet
from tests.harness import eventually
from tests.integration.test_analytics import metric, publish, scenario, stored_calls
from tests.integration.test_jt808_gateway import Terminal, location
from tests.replicas import Replica, running, start_replica

pytestmark = pytest.mark.integration


GROUPS = {kind: f"test-{kind}-{uuid.uuid4().hex[:8]}" for kind in ("raw", "history", "analytics")}


@pytest.fixture(scope="module")
def ingest_replicas(infra: Infra) -> Iterator[list[Replica]]:
    groups = {"KUAIJING_RAW_GROUP": GROUPS["raw"], "KUAIJING_HISTORY_GROUP": GROUPS["history"]}
    with running([start_replica(infra, "ingest", env=groups), start_replica(infra, "ingest", env=groups)]) as replicas:
        yield replicas


@pytest.fixture(scope="module")
def analytics_replicas(infra: Infra) -> Iterator[list[Replica]]:
    group = {"KUAIJING_ANALYTICS_GROUP": GROUPS["analytics"]}
    with running(
        [start_replica(infra, "analytics", env=group), start_replica(infra, "analytics", env=group)]
    ) as replicas:
        yield replicas


async def metrics_of(replica: Replica) -> str:
    async with replica.client("viewer") as c:
        return (await c.get("/metrics")).text


async def test_ingest_replicas_share_the_raw_topic_and_the_history_writer_by_consumer_groups(
    infra: Infra, ingest_replicas: list[Replica], db: asyncpg.Connection
) -> None:
    fleet = await register_fleet(infra.database, units=24)
    now = datetime.now(UTC).replace(microsecond=0)

    async def both_know_the_fleet() -> bool:
        for replica in ingest_replicas:
            probe = {
                "kind": "position",
                "unit_id": fleet.unit_ids[-1],
                "ts": now.isoformat(),
                "lat": 27.2,
                "lon": 111.4,
            }
            async with replica.client("terminal") as c:
                if (await c.post("/v1/telemetry", json=probe)).json()["accepted"] != 1:
                    return False
        return True

    async def both_hold_partitions() -> bool:
        for replica in ingest_replicas:
            text = await metrics_of(replica)
            for group, topic in ((GROUPS["raw"], TELEMETRY_RAW.name), (GROUPS["history"], "kuaijing.positions")):
                if f'kuaijing_consumer_lag{{group="{group}",topic="{topic}"}}' not in text:
                    return False
        return True

    await eventually(both_know_the_fleet, timeout_s=30, what="both replicas to learn the fleet")
    await eventually(both_hold_partitions, timeout_s=60, what="both replicas to hold partitions of both groups")
    before = [metric(await metrics_of(r), "kuaijing_ingest_accepted_total", kind="position", source="kafka")
              for r in ingest_replicas]  # fmt: skip

    per_unit = 25
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka, acks="all", linger_ms=10)
    try:
        await producer.start()
        for i in range(per_unit):
            for unit in fleet.unit_ids:
                ping = {
                    "kind": "position",
                    "unit_id": unit,
                    "ts": (now - timedelta(seconds=60 + i)).isoformat(),
                    "lat": 27.2 + i / 1000,
                    "lon": 111.4,
                }
                await producer.send(TELEMETRY_RAW.name, orjson.dumps(ping), key=unit.encode())
        await producer.flush()
    finally:
        await producer.stop()
    sent = per_unit * len(fleet.unit_ids)

    async def handled() -> list[float] | None:
        counts = [
            metric(await metrics_of(r), "kuaijing_ingest_accepted_total", kind="position", source="kafka") - b
            for r, b in zip(ingest_replicas, before, strict=True)
        ]
        return counts if sum(counts) >= sent else None

    counts = await eventually(handled, timeout_s=60, what="every raw ping handled by one of the replicas")
    assert sum(counts) == sent, counts
    assert all(c > 0 for c in counts), f"one replica handled everything: {counts}"

    async def stored() -> bool:
        rows = await db.fetchval(
            "SELECT count(*) FROM positions WHERE unit_id = ANY($1) AND source = 'kafka'", fleet.unit_ids
        )
        return bool(rows == sent)

    await eventually(stored, timeout_s=60, what="every raw ping in history once")


async def test_a_terminal_registered_on_one_ingest_replica_authenticates_and_reports_on_the_other(
    infra: Infra, ingest_replicas: list[Replica], db: asyncpg.Connection
) -> None:
    fleet = await register_fleet(infra.database, units=1, terminals=True)
    phone = fleet.terminal_ids[0]
    first, second = ingest_replicas

    async def registered() -> str | None:
        async with Terminal(first.jt808_port, phone) as terminal:
            result, code = await terminal.register()
            return code if result == RegisterResult.SUCCESS else None

    code = await eventually(registered, timeout_s=30, what="the terminal registered on the first replica")
    now = datetime.now(UTC).replace(microsecond=0)

    async def second_knows_the_unit() -> bool:
        probe = {"kind": "position", "unit_id": fleet.unit_ids[0], "ts": now.isoformat(), "lat": 27.2, "lon": 111.4}
        async with second.client("terminal") as c:
            return bool((await c.post("/v1/telemetry", json=probe)).json()["accepted"] == 1)

    await eventually(second_knows_the_unit, timeout_s=30, what="the second replica to learn the unit")
    async with Terminal(second.jt808_port, phone) as terminal:
        auth = jt808.encode_authentication(jt808.Authentication(code), wide=False)
        assert await terminal.general(MessageId.AUTHENTICATE, auth) == Result.SUCCESS
        report = jt808.encode_location(location(now, 27.2418, 111.4672))
        assert await terminal.general(MessageId.LOCATION, report) == Result.SUCCESS


async def test_analytics_replicas_share_the_calls_topic_and_report_the_same_figures(
    infra: Infra, analytics_replicas: list[Replica], db: asyncpg.Connection
) -> None:
    group = GROUPS["analytics"]

    async def both_hold_partitions() -> bool:
        texts = [await metrics_of(r) for r in analytics_replicas]
        return all(f'kuaijing_consumer_lag{{group="{group}",topic="{CALLS.name}"}}' in text for text in texts)

    await eventually(both_hold_partitions, timeout_s=60, what="both analytics replicas to hold partitions")
    tag = uuid.uuid4().hex[:8]
    start_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    events = scenario(start_at, tag, random.Random(11), calls=30)
    await publish(CommonSettings(kafka_bootstrap=infra.kafka, database_url=infra.database), events)

    async def all_stored() -> bool:
        return await stored_calls(db, tag) == 30

    await eventually(all_stored, timeout_s=60, what="the calls stored by the replicas")
    # Facts recomputed count what each replica consumed (new events would not: the suite's own analytics service
    # reads the same topic in its own group and may store an event first).
    handled = [metric(await metrics_of(r), "kuaijing_analytics_facts_recomputed_total") for r in analytics_replicas]
    assert all(h > 0 for h in handled), f"one replica handled everything: {handled}"
    window = {"from": start_at.isoformat(), "to": (start_at + timedelta(days=1)).isoformat()}
    answers = []
    for replica in analytics_replicas:
        async with replica.client("viewer") as c:
            answers.append((await c.get("/v1/reports/response-times", params=window)).json())
    assert answers[0] == answers[1]
