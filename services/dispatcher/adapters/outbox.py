"""The outbox relay: publishes committed dispatch changes to Kafka in commit order, then forgets them.

A request commits its change and its outbox rows together and kicks the relay; the relay also sweeps every second,
so a change committed just before a crash is published after the restart. Publishing twice is possible (a crash
between the acknowledgement and the delete); consumers treat call events and statuses idempotently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from shared.contract.topics import Producer

log = logging.getLogger(__name__)

_BATCH = 1_000
_SWEEP_S = 1.0


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, producer: Producer) -> None:
        self._pool = pool
        self._producer = producer
        self._wake = asyncio.Event()

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), _SWEEP_S)
            self._wake.clear()
            while await self.publish_pending() == _BATCH:
                pass

    async def publish_pending(self) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, value FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", _BATCH
            )
            if not rows:
                return 0
            sends = [await self._producer.send(r["topic"], r["value"], key=r["key"]) for r in rows]
            await asyncio.gather(*sends)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1)", [r["id"] for r in rows])
        return len(rows)
