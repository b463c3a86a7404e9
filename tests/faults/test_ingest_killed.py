"""Ingest SIGKILLed in the middle of a stream and restarted, while terminals keep sending as real ones do (a batch
not answered 202 is sent again): every ping that was acknowledged is on `kuaijing.positions` and in the history
table exactly once, and ingest is ready again without a human."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contract.topics import POSITIONS
from tests.conftest import TOKENS, Fleet, Infra, register_fleet
from tests.harness import eventually
from tests.replicas import Replica, running, start_replica

pytestmark = [pytest.mark.faults, pytest.mark.integration]

PINGS = 100_000
BATCH = 500
CLIENTS = 4


@dataclass
class Stream:
    acknowledged: int = 0
    resent: int = 0
    refused: dict[str, int] = field(default_factory=dict)


def batches(fleet: Fleet, start: datetime) -> list[list[dict[str, object]]]:
    """PINGS distinct (unit, ts) pings over the fleet, in batches as a terminal relay would post them."""
    pings = [
        {
            "kind": "position",
            "unit_id": fleet.unit_ids[i % len(fleet.unit_ids)],
            "ts": (start + timedelta(milliseconds=i)).isoformat(),
            "lat": 27.2 + (i % 1000) / 100_000,
            "lon": 111.4,
        }
        for i in range(PINGS)
    ]
    return [pings[i : i + BATCH] for i in range(0, PINGS, BATCH)]


async def send_all(url: str, work: list[list[dict[str, object]]], stream: Stream) -> None:
    """One client: each batch until it is answered 202 (a 503, a reset connection or a timeout mean: send again)."""
    headers = {"Authorization": f"Bearer {TOKENS['terminal']}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
        while work:
            body = orjson.dumps(work[-1])
            try:
                response = await client.post("/v1/telemetry", content=body)
                outcome = str(response.status_code)
            except httpx.HTTPError as e:
                outcome = type(e).__name__
            if outcome == "202":
                stream.acknowledged += len(work.pop())
                continue
            stream.resent += 1
            stream.refused[outcome] = stream.refused.get(outcome, 0) + 1
            await asyncio.sleep(0.2)


_GROUP = uuid.uuid4().hex[:8]
GROUPS = {"KUAIJING_RAW_GROUP": f"fault-raw-{_GROUP}", "KUAIJING_HISTORY_GROUP": f"fault-history-{_GROUP}"}
"""The killed ingest and the one that replaces it share their consumer groups, as one deployment's replicas do."""


@pytest.fixture(scope="module")
def ingest_process(infra: Infra) -> Iterator[list[Replica]]:
    with running([start_replica(infra, "ingest", env=GROUPS)]) as started:
        yield started


async def test_ingest_killed_mid_stream_loses_and_doubles_nothing(
    infra: Infra, ingest_process: list[Replica], db: asyncpg.Connection
) -> None:
    [first] = ingest_process
    fleet = await register_fleet(infra.database, units=40)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    probe = {"kind": "position", "unit_id": fleet.unit_ids[-1], "ts": (start - timedelta(seconds=1)).isoformat(),
             "lat": 27.2, "lon": 111.4}  # fmt: skip

    async def knows_the_fleet() -> bool:
        async with first.client("terminal") as c:
            return bool((await c.post("/v1/telemetry", json=probe)).json()["accepted"] == 1)

    await eventually(knows_the_fleet, timeout_s=30, what="ingest to learn the fleet")
    consumer = AIOKafkaConsumer(bootstrap_servers=infra.kafka, group_id=None, enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(POSITIONS.name, p) for p in range(POSITIONS.partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)

    work = batches(fleet, start)
    shares = [work[i::CLIENTS] for i in range(CLIENTS)]
    stream = Stream()
    began = time.monotonic()
    clients = [asyncio.create_task(send_all(first.url, share, stream)) for share in shares]

    async def a_third_acknowledged() -> bool:
        return stream.acknowledged >= PINGS // 3

    await eventually(a_third_acknowledged, timeout_s=120, what="a third of the stream acknowledged")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    killed_at = time.monotonic()
    second = start_replica(infra, "ingest", port=int(first.url.rsplit(":", 1)[1]), env=GROUPS)
    ingest_process.append(second)

    async def ready_again() -> bool:
        assert second.process.poll() is None, f"the restarted ingest exited with {second.process.returncode}"
        try:
            async with httpx.AsyncClient(base_url=second.url, timeout=2) as c:
                return (await c.get("/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready_again, timeout_s=90, what="ingest ready again")
    recovered_s = time.monotonic() - killed_at
    await asyncio.wait_for(asyncio.gather(*clients), timeout=300)
    streamed_s = time.monotonic() - began

    units = set(fleet.unit_ids)
    seen: set[tuple[str, str]] = set()
    records = 0
    deadline = time.monotonic() + 120
    while len(seen) < PINGS and time.monotonic() < deadline:
        for batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
            for record in batch:
                value = orjson.loads(record.value or b"{}")
                if value.get("unit_id") in units and datetime.fromisoformat(value["ts"]) >= start:
                    seen.add((value["unit_id"], value["ts"]))
                    records += 1
    await consumer.stop()

    async def stored() -> int | None:
        count = await db.fetchval(
            "SELECT count(*) FROM positions WHERE unit_id = ANY($1) AND ts >= $2", fleet.unit_ids, start
        )
        return int(count) if count >= PINGS else None

    rows = await eventually(stored, timeout_s=120, what="every acknowledged ping in history")
    print(
        f"\ningest SIGKILLed after {PINGS // 3:,}+ of {PINGS:,} pings: ready again in {recovered_s:.1f} s; "
        f"stream done in {streamed_s:.1f} s; {stream.resent} batches sent again {stream.refused}; "
        f"{records:,} records on {POSITIONS.name} for {len(seen):,} distinct pings; {rows:,} history rows"
    )
    assert stream.acknowledged == PINGS
    assert len(seen) == PINGS  # every acknowledged ping is on the topic (some twice: at least once)
    assert rows == PINGS  # and in history exactly once, by its natural key (unit, ts)
