"""New calls written together: the calls that arrive while one write is in flight share the next statement.

A new call that changes no unit (recommended, not assigned) needs no lock and no check, only its rows: the call, its
events and their outbox records. Written one statement per call, a busy night pays a round trip, a transaction and
a commit for each; here a call arriving when the writer is idle is written at once, alone, and the calls arriving
meanwhile are written by the next statement, together, so the rate a dispatcher sustains grows with its load instead
of queueing behind commits. Each call's outcome (created, or its call_id taken) is its own; a statement that fails
refused for what a call holds is retried call by call, so one bad call never fails the calls beside it; one that
fails for the database itself fails its calls at once, without trying each again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import asyncpg

from services.dispatcher.domain.calls import Call, CallEvent
from services.dispatcher.messages import call_event_message
from shared.contract.topics import CALLS

_MAX_BATCH = 200

_WRITE = f"""
WITH new_call AS (
    INSERT INTO calls (call_id, received_at, lat, lon, category, priority, address, note, zone_class, target_s)
    SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::float8[], $4::float8[], $5::text[], $6::int[],
        $7::text[], $8::text[], $9::text[], $10::int[])
    ON CONFLICT (call_id) DO NOTHING RETURNING call_id
), event AS (
    SELECT e.* FROM unnest($11::text[], $12::text[], $13::text[], $14::timestamptz[], $15::text[], $16::text[],
        $17::bytea[]) WITH ORDINALITY AS e(call_id, event, unit_id, ts, source, platform_id, message, n)
    WHERE e.call_id IN (SELECT call_id FROM new_call)
), recorded AS (
    INSERT INTO call_events (call_id, event, unit_id, ts, source, platform_id)
    SELECT call_id, event, unit_id, ts, source, platform_id FROM event ON CONFLICT DO NOTHING
), published AS (
    INSERT INTO outbox (topic, key, value)
    SELECT '{CALLS.name}', convert_to(call_id, 'UTF8'), message FROM event ORDER BY n
)
SELECT coalesce(array_agg(call_id), '{{}}') FROM new_call
"""
"""New calls with their events and outbox records (in the order of the calls, then of their events), one statement:
one transaction. Returns the call_ids it created; the others existed already."""


@dataclass(frozen=True, slots=True)
class _Pending:
    call: Call
    events: tuple[CallEvent, ...]
    outcome: asyncio.Future[bool]


class NewCallWriter:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: list[_Pending] = []
        self._writing: asyncio.Task[None] | None = None

    async def write(self, call: Call, events: tuple[CallEvent, ...]) -> bool:
        """Write a new call and its events; False (nothing written) when its call_id exists already."""
        outcome: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(call, events, outcome))
        if self._writing is None or self._writing.done():
            self._writing = asyncio.create_task(self._write_pending())
        return await outcome

    async def _write_pending(self) -> None:
        while self._pending:
            batch: list[_Pending] = []
            held: list[_Pending] = []
            seen: set[str] = set()
            for pending in self._pending:
                # Two requests for one call_id go in different statements: the second then finds it taken.
                taken = len(batch) == _MAX_BATCH or pending.call.call_id in seen
                (held if taken else batch).append(pending)
                seen.add(pending.call.call_id)
            self._pending = held
            await self._settle(batch)

    async def _settle(self, batch: list[_Pending]) -> None:
        try:
            created = await self._statement(batch)
        except (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError) as error:
            # Refused for what a call holds: find which, so the calls beside it are written.
            if len(batch) > 1:
                for pending in batch:
                    await self._settle([pending])
                return
            _fail(batch, error)
            return
        except Exception as error:  # the database itself (gone, timed out): every call in the statement fails at once
            _fail(batch, error)
            return
        for pending in batch:
            if not pending.outcome.done():  # its request may have been cancelled (client gone)
                pending.outcome.set_result(pending.call.call_id in created)

    async def _statement(self, batch: list[_Pending]) -> set[str]:
        calls = [p.call for p in batch]
        events = [(p.call, e) for p in batch for e in p.events]
        created: list[str] = await self._pool.fetchval(
            _WRITE,
            [c.call_id for c in calls],
            [c.received_at for c in calls],
            [c.lat for c in calls],
            [c.lon for c in calls],
            [c.category for c in calls],
            [c.priority for c in calls],
            [c.address for c in calls],
            [c.note for c in calls],
            [c.zone_class.value for c in calls],
            [c.target_s for c in calls],
            [e.call_id for _, e in events],
            [e.event.value for _, e in events],
            [e.unit_id or "" for _, e in events],
            [e.ts for _, e in events],
            [None if e.source is None else e.source.value for _, e in events],
            [e.platform_id for _, e in events],
            [CALLS.encode(call_event_message(c, e)) for c, e in events],
        )
        return set(created)


def _fail(batch: list[_Pending], error: Exception) -> None:
    for pending in batch:
        if not pending.outcome.done():
            pending.outcome.set_exception(error)
