"""The outbox relay of several dispatcher replicas over one real PostgreSQL: one publishes at a time, so a key's
records reach Kafka in commit order, and another takes over when it stops."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from services.dispatcher.adapters import outbox
from services.dispatcher.adapters.outbox import OutboxRelay
from shared.infra.postgres import connect, open_pool
from shared.infra.supervision import Supervisor
from tests.conftest import Infra
from tests.harness import eventually, fresh_database

pytestmark = pytest.mark.integration


class Broker:
    """Stands in for Kafka: records each value once acknowledged, and when it was sent; a relay's acknowledgements
    can be slow."""

    def __init__(self) -> None:
        self.acknowledged: list[int] = []
        self.sent_at: dict[int, float] = {}
        self._pending: set[asyncio.Task[None]] = set()

    def producer(self, delay_s: float) -> Producer:
        return Producer(self, delay_s)

    def later(self, delay_s: float, value: bytes) -> asyncio.Future[None]:
        async def acknowledge() -> None:
            await asyncio.sleep(delay_s)
            self.acknowledged.append(int(value))

        task = asyncio.create_task(acknowledge())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task


class Producer:
    def __init__(self, broker: Broker, delay_s: float) -> None:
        self._broker, self._delay_s = broker, delay_s

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future[None]:
        self._broker.sent_at[int(value)] = time.monotonic()
        return self._broker.later(self._delay_s, value)


async def commit(database: str, values: range) -> None:
    conn = await connect(database)
    try:
        await conn.executemany(
            "INSERT INTO outbox (topic, key, value) VALUES ('kuaijing.calls', 'C-1', $1)",
            [(str(v).encode(),) for v in values],
        )
    finally:
        await conn.close()


async def pending(database: str) -> int:
    conn = await connect(database)
    try:
        count: int = await conn.fetchval("SELECT count(*) FROM outbox")
        return count
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def replica(database: str, broker: Broker, delay_s: float = 0.0) -> AsyncIterator[None]:
    """One dispatcher replica's relay, with a pool of its own, supervised as the service runs it (restarted after a
    failure), until the block ends."""
    async with open_pool(database, max_size=3) as pool:
        supervisor = Supervisor()
        supervisor.spawn("outbox-relay", OutboxRelay(pool, broker.producer(delay_s)).run)
        try:
            yield
        finally:
            await supervisor.aclose()


async def published(database: str) -> None:
    async def nothing_pending() -> bool:
        return await pending(database) == 0

    await eventually(nothing_pending, timeout_s=30, what="the outbox published")


async def test_two_replicas_publish_one_key_in_commit_order(infra: Infra) -> None:
    """The first relay's acknowledgements are slow; were the second relay to take the next batch meanwhile (as both
    did before the lock), its batch would reach Kafka first."""
    database = await fresh_database(infra.database, "outbox")
    await commit(database, range(3_000))
    broker = Broker()
    async with replica(database, broker, delay_s=0.3):
        await asyncio.sleep(0.1)
        async with replica(database, broker):
            await published(database)
    assert broker.acknowledged == list(range(3_000))


async def test_a_standby_publishes_nothing_and_takes_over_when_the_publishing_replica_stops(infra: Infra) -> None:
    database = await fresh_database(infra.database, "outbox")
    first, standby = Broker(), Broker()
    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(replica(database, first))
        await asyncio.sleep(0.2)
        async with replica(database, standby):
            await commit(database, range(10))
            await published(database)
            assert (first.acknowledged, standby.acknowledged) == (list(range(10)), [])
            await running.aclose()  # the first replica stops: its lock is freed
            await commit(database, range(10, 20))
            await published(database)
    assert standby.acknowledged == list(range(10, 20))


async def test_rows_committed_by_another_replica_wake_the_relay_at_once(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no sweep to fall back on, only PostgreSQL's notification on commit can tell the relay of rows that
    another replica's requests committed (they kick only their own replica's relay)."""
    monkeypatch.setattr(outbox, "_SWEEP_S", 3600.0)
    database = await fresh_database(infra.database, "outbox")
    broker = Broker()
    async with replica(database, broker):
        await asyncio.sleep(0.5)
        await commit(database, range(5))
        await published(database)
        await commit(database, range(5, 8))
        await published(database)
    assert broker.acknowledged == list(range(8))


async def test_a_quiet_relay_publishes_a_commit_at_once_and_a_busy_one_gathers_the_commits_that_follow(
    infra: Infra, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each commit wakes the relay; after a batch with rows, the commits of the next `_GATHER_S` go out together."""
    monkeypatch.setattr(outbox, "_GATHER_S", 3.0)
    database = await fresh_database(infra.database, "outbox")
    broker = Broker()
    async with replica(database, broker):
        await asyncio.sleep(0.5)  # listening; nothing published yet, so the first commit finds the relay quiet
        committed = time.monotonic()
        await commit(database, range(1))
        await published(database)
        for value in range(1, 6):
            await commit(database, range(value, value + 1))
        await published(database)
    assert broker.acknowledged == list(range(6))
    assert broker.sent_at[0] - committed < 2.0, "a quiet relay waits for nothing"
    following = [broker.sent_at[v] for v in range(1, 6)]
    assert max(following) - min(following) < 1.0, "the five commits that followed went out in one batch"
    assert min(following) - broker.sent_at[0] >= 2.9, "and not before the gathering time was over"


async def test_when_the_publishing_replica_s_session_dies_a_standby_takes_over(infra: Infra) -> None:
    """What a SIGKILL does to the relay: its PostgreSQL session ends (here its backend is terminated), so its lock is
    freed with it, and a standby publishes what was committed after."""
    database = await fresh_database(infra.database, "outbox")
    first, standby = Broker(), Broker()
    async with replica(database, first):
        await asyncio.sleep(0.2)
        async with replica(database, standby):
            await commit(database, range(5))
            await published(database)
            conn = await connect(database)
            try:
                killed = await conn.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            finally:
                await conn.close()
            assert killed == 1, "one session holds the relay's lock"
            await commit(database, range(5, 10))
            await published(database)
    assert first.acknowledged == list(range(5))
    assert standby.acknowledged == list(range(5, 10))
