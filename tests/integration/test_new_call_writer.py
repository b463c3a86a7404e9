"""New calls written together on the real PostgreSQL: calls arriving while a write is in flight share the next
statement, each keeps its own outcome, and one bad call fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.dispatcher.adapters.new_calls import NewCallWriter
from services.dispatcher.domain import calls as rules
from services.dispatcher.domain.calls import Call
from shared.contract.registry import ZoneClass
from shared.contract.topics import CALLS
from tests.conftest import Infra
from tests.harness import fresh_database

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 30, 20, 0, tzinfo=UTC)


def call(call_id: str, *, priority: int = 2, minute: int = 0) -> Call:
    return Call(
        call_id=call_id, received_at=T0 + timedelta(minutes=minute), lat=27.24, lon=111.47, category="theft",
        priority=priority, zone_class=ZoneClass.OTHER_URBAN, target_s=300,
    )  # fmt: skip


class CountingPool:
    """The pool, counting the statements the writer sends."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool, self.statements = pool, 0

    async def fetchval(self, query: str, *args: object) -> object:
        self.statements += 1
        return await self._pool.fetchval(query, *args)


async def write(writer: NewCallWriter, new: Call) -> bool:
    return await writer.write(new, rules.created(new).events)


@pytest.fixture
async def pool(infra: Infra) -> AsyncIterator[asyncpg.Pool]:
    database = await fresh_database(infra.database, "newcalls")
    pool = await asyncpg.create_pool(database, min_size=1, max_size=4)
    yield pool
    await pool.close()


async def test_calls_arriving_together_share_statements_and_each_keeps_its_outcome(pool: asyncpg.Pool) -> None:
    counted = CountingPool(pool)
    writer = NewCallWriter(counted)  # type: ignore[arg-type]
    assert await write(writer, call("W-000"))
    assert counted.statements == 1, "a call finding the writer idle is written at once, alone"
    outcomes = await asyncio.gather(
        *(write(writer, call(f"W-{i:03d}", minute=i)) for i in range(1, 41)),
        write(writer, call("W-000")),  # taken before
        write(writer, call("W-007")),  # the same call twice in one burst
    )

    assert outcomes[:40] == [True] * 40
    assert outcomes[40] is False
    assert outcomes[41] is False, "the second W-007 finds the first one's row"
    assert counted.statements <= 4, "a burst of 42 is written by the statement in flight's successors, not one each"
    rows = await pool.fetch("SELECT call_id, priority FROM calls ORDER BY call_id")
    assert [r["call_id"] for r in rows] == [f"W-{i:03d}" for i in range(41)]
    events = await pool.fetch("SELECT call_id, event, ts FROM call_events ORDER BY call_id")
    assert [(e["call_id"], e["event"]) for e in events] == [(f"W-{i:03d}", "created") for i in range(41)]
    assert events[5]["ts"] == T0 + timedelta(minutes=5)
    published = await pool.fetch("SELECT topic, key, value FROM outbox ORDER BY id")
    assert len(published) == 41, "one record per created event, none for the calls that existed"
    assert {r["topic"] for r in published} == {CALLS.name}
    message = CALLS.decode(published[3]["value"])
    assert published[3]["key"] == message.call_id.encode()
    assert message.event == "created"
    keys = [r["key"].decode() for r in published[1:]]
    assert sorted(keys) == keys, "outbox rows follow the order the calls arrived in"


async def test_a_call_the_database_refuses_fails_alone(pool: asyncpg.Pool) -> None:
    writer = NewCallWriter(pool)
    outcomes = await asyncio.gather(
        *(write(writer, call(f"B-{i}")) for i in range(3)),
        write(writer, call("B-bad", priority=9)),  # the table's CHECK refuses it
        *(write(writer, call(f"B-{i}")) for i in range(3, 6)),
        return_exceptions=True,
    )

    assert outcomes[:3] == [True] * 3
    assert isinstance(outcomes[3], asyncpg.CheckViolationError)
    assert outcomes[4:] == [True] * 3
    stored = await pool.fetchval("SELECT array_agg(call_id ORDER BY call_id) FROM calls")
    assert stored == [f"B-{i}" for i in range(6)]
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 6


class GonePool:
    """A pool whose database is gone: every statement fails to connect."""

    def __init__(self) -> None:
        self.statements = 0

    async def fetchval(self, query: str, *args: object) -> object:
        self.statements += 1
        await asyncio.sleep(0.01)
        raise ConnectionRefusedError("connection refused")


async def test_calls_beside_a_gone_database_fail_together_without_trying_each_again() -> None:
    gone = GonePool()
    writer = NewCallWriter(gone)  # type: ignore[arg-type]
    outcomes = await asyncio.gather(*(write(writer, call(f"G-{i}")) for i in range(10)), return_exceptions=True)

    assert all(isinstance(o, ConnectionRefusedError) for o in outcomes)
    assert gone.statements <= 2, "the first call alone, then the nine that waited, together"
