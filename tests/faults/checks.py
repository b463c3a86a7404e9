"""What every fault test checks afterwards, against the real topics and tables: acknowledged pings on
`kuaijing.positions` and in history exactly once, committed call events on `kuaijing.calls`, the dispatcher's view
equal to what PostgreSQL committed, and analytics equal to a replay from an empty database."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contract.topics import CALLS, POSITIONS, Topic
from shared.infra.postgres import connect
from tests.faults.stage import Stage
from tests.faults.traffic import Console, Key

Offsets = dict[TopicPartition, int]
CallEventKey = tuple[str, str, str, datetime]
K = TypeVar("K")


async def end_offsets(kafka: str, topic: Topic[Any]) -> Offsets:
    """Where `topic` ends now: a test reads what its traffic added from here, whatever happens to the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def read_since(
    kafka: str,
    offsets: Offsets,
    keep: Callable[[dict[str, Any]], K | None],
    done: Callable[[set[K]], bool],
    *,
    timeout_s: float = 120.0,
) -> tuple[set[K], int]:
    """Distinct keys (`keep(value)`, None to skip) of the records after `offsets`, until `done(keys)` or timeout;
    also how many records carried them (at least once: a resent ping may be there twice)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    keys: set[K] = set()
    records = 0
    try:
        await consumer.start()
        consumer.assign(list(offsets))
        for tp, offset in offsets.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout_s
        while not done(keys) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=20_000)).values():
                for record in batch:
                    key = keep(orjson.loads(record.value or b"{}"))
                    if key is not None:
                        keys.add(key)
                        records += 1
    finally:
        await consumer.stop()
    return keys, records


def ping_key(units: set[str], since: datetime) -> Callable[[dict[str, Any]], Key | None]:
    def key(value: dict[str, Any]) -> Key | None:
        unit = value.get("unit_id")
        if unit not in units:
            return None
        ts = datetime.fromisoformat(value["ts"])
        return (unit, ts) if ts >= since else None

    return key


async def pings_exactly_once(
    stage: Stage, offsets: Offsets, expected: set[Key], start: datetime
) -> tuple[int, int, int]:
    """Asserts every expected ping is on `kuaijing.positions` and in history once; returns (records on the topic,
    distinct pings there, history rows)."""
    units = {unit for unit, _ in expected}
    seen, records = await read_since(stage.infra.kafka, offsets, ping_key(units, start), lambda keys: expected <= keys)
    missing = expected - seen
    assert not missing, f"{len(missing)} acknowledged pings are not on {POSITIONS.name}, e.g. {sorted(missing)[:3]}"
    assert seen == expected, f"{len(seen - expected)} pings on the topic that nobody sent"
    conn = await connect(stage.infra.database)
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = await conn.fetchval(
                "SELECT count(*) FROM positions WHERE unit_id = ANY($1) AND ts >= $2", sorted(units), start
            )
            if rows >= len(expected) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        stored = {
            (r["unit_id"], r["ts"])
            for r in await conn.fetch(
                "SELECT unit_id, ts FROM positions WHERE unit_id = ANY($1) AND ts >= $2", sorted(units), start
            )
        }
    finally:
        await conn.close()
    assert stored == expected, f"history: {len(expected - stored)} missing, {len(stored - expected)} unexpected"
    assert rows == len(expected), f"history holds {rows} rows for {len(expected)} distinct pings"
    return records, len(seen), rows


async def call_events_published(stage: Stage, offsets: Offsets, tag: str) -> int:
    """Every call event PostgreSQL committed for the console's calls is on `kuaijing.calls`; returns how many."""
    prefix = f"F-{tag}-"
    conn = await connect(stage.infra.database)
    try:
        rows = await conn.fetch(
            "SELECT call_id, event, unit_id, ts FROM call_events WHERE starts_with(call_id, $1)", prefix
        )
    finally:
        await conn.close()
    committed: set[CallEventKey] = {(r["call_id"], r["event"], r["unit_id"], r["ts"]) for r in rows}

    def key(value: dict[str, Any]) -> CallEventKey | None:
        if not value.get("call_id", "").startswith(prefix):
            return None
        return value["call_id"], value["event"], value.get("unit_id") or "", datetime.fromisoformat(value["ts"])

    published, _ = await read_since(stage.infra.kafka, offsets, key, lambda keys: committed <= keys)
    missing = committed - published
    assert not missing, f"committed call events not on {CALLS.name}: {sorted(missing, key=str)}"
    assert published == committed, f"on {CALLS.name} but never committed: {sorted(published - committed, key=str)}"
    return len(committed)


async def dispatcher_agrees(stage: Stage, console: Console) -> dict[str, str]:
    """The dispatcher's open calls and unit statuses are what PostgreSQL committed and what the console did;
    returns the units' statuses."""
    async with stage.replicas["dispatcher"].client("viewer") as c:
        open_calls = {
            call["call_id"]
            for call in (await c.get("/v1/calls", params={"status": "open", "limit": 5000})).json()
            if call["call_id"] in console.calls
        }
        units = {
            u["id"]: (u["status"], u["call_id"])
            for u in (await c.get("/v1/units")).json()
            if u["id"] in console.crew.unit_ids
        }
    conn = await connect(stage.infra.database)
    try:
        stored_open = {
            r["call_id"]
            for r in await conn.fetch(
                "SELECT call_id FROM calls WHERE status = 'open' AND call_id = ANY($1)", list(console.calls)
            )
        }
        stored_units = {
            r["unit_id"]: (r["status"], r["call_id"])
            for r in await conn.fetch(
                "SELECT unit_id, status, call_id FROM unit_status WHERE unit_id = ANY($1)", console.crew.unit_ids
            )
        }
    finally:
        await conn.close()
    expected_open = {c.call_id for c in console.calls.values() if not c.cleared}
    expected_units: dict[str, tuple[str, str | None]] = {u: ("available", None) for u in console.crew.unit_ids}
    for call in console.calls.values():
        if call.unit_id is not None and not call.cleared:
            expected_units[call.unit_id] = ("on_scene" if call.arrived else "dispatched", call.call_id)
    assert open_calls == stored_open == expected_open, (open_calls, stored_open, expected_open)
    stored_units = {u: stored_units.get(u, ("available", None)) for u in console.crew.unit_ids}
    assert units == stored_units == expected_units, (units, stored_units, expected_units)
    return {u: status for u, (status, _) in units.items()}


async def analytics_equals_a_replay(stage: Stage) -> int:
    """Analytics' reports over every call on the stage equal those of a fresh analytics replaying `kuaijing.calls`
    into an empty database; returns the number of calls reported."""
    group = stage.groups["analytics"]
    await stage.caught_up("analytics", group, CALLS.name)
    replay_group = f"replay-{uuid.uuid4().hex[:8]}"
    database = await stage.fresh_database()
    replay = stage.start(
        "analytics-replay", env={"KUAIJING_DATABASE_URL": database, "KUAIJING_ANALYTICS_GROUP": replay_group}
    )
    try:
        await stage.ready("analytics-replay", since=time.monotonic())
        await stage.caught_up("analytics-replay", replay_group, CALLS.name)
        now = datetime.now(UTC)
        window = {"from": (now - timedelta(days=90)).isoformat(), "to": (now + timedelta(days=1)).isoformat()}
        reports: list[list[dict[str, Any]]] = []
        for name in ("analytics", "analytics-replay"):
            async with stage.replicas[name].client("viewer") as c:
                reports.append(
                    [
                        (await c.get("/v1/reports/response-times", params=window | {"group_by": by})).json()
                        for by in ("platform", "zone_class")
                    ]
                )
    finally:
        replay.process.send_signal(signal.SIGTERM)
        replay.process.wait(timeout=30)
        del stage.replicas["analytics-replay"]
    assert reports[0] == reports[1], f"analytics differs from a replay:\n{reports[0]}\n{reports[1]}"
    return sum(int(g["calls"]) for g in reports[0][0]["groups"])
