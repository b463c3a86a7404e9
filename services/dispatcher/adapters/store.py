"""Dispatch state in PostgreSQL. Every decision commits with its outbox records in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from services.dispatcher.adapters.new_calls import NewCallWriter
from services.dispatcher.domain.calls import Call, CallEvent, CallStatus, Decision, StatusChange
from services.dispatcher.domain.coverage import CoverageHour, CoverageSnapshot
from services.dispatcher.domain.live_map import Position
from services.dispatcher.domain.speed_profiles import Fix, Trip
from services.dispatcher.domain.zones import ZoneDefinition
from services.dispatcher.messages import call_event_message, unit_status_message
from services.dispatcher.ports import Believed, StaleStateError, StoredUnit
from shared.contract.registry import Platform, RegistryImport, Unit, UnitKind, Zone, ZoneClass
from shared.contract.schemas import AdviceMessage, CallEventKind, CoverageSample, EventSource, UnitStatus
from shared.contract.topics import ADVICE, CALLS, COVERAGE, UNIT_STATUS
from shared.infra.postgres import Connection
from shared.infra.registry_store import import_registry, registry_revision


class PostgresDispatchStore:
    """`ports.DispatchStore` on PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._new_calls = NewCallWriter(pool)

    # registry

    async def import_registry(self, document: RegistryImport) -> dict[str, int]:
        async with self._pool.acquire() as conn:
            return await import_registry(conn, document)

    async def registry_revision(self) -> int:
        return await registry_revision(self._pool)

    async def platforms(self, platform_id: str | None = None) -> list[Platform]:
        rows = await self._pool.fetch(
            "SELECT id, name, kind, lat, lon FROM platforms WHERE $1::text IS NULL OR id = $1 ORDER BY id", platform_id
        )
        return [Platform.model_validate(dict(r)) for r in rows]

    async def zones(self, zone_id: str | None = None) -> list[Zone]:
        rows = await self._pool.fetch(
            "SELECT id, class, geometry FROM zones WHERE $1::text IS NULL OR id = $1 ORDER BY id", zone_id
        )
        return [
            Zone.model_validate({"id": r["id"], "class": r["class"], "geometry": orjson.loads(r["geometry"])})
            for r in rows
        ]

    async def zone_definitions(self) -> list[ZoneDefinition]:
        return [ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in await self.zones()]

    async def units(self) -> list[StoredUnit]:
        rows = await self._pool.fetch(
            "SELECT u.id, u.platform_id, u.kind, u.callsign, u.terminal_id, u.terminal_utc_offset_min, "
            "s.status, s.since, s.call_id, "
            "p.ts, p.lat, p.lon, p.speed_kmh, p.heading_deg "
            "FROM units u LEFT JOIN unit_status s ON s.unit_id = u.id "
            "LEFT JOIN unit_latest_positions p ON p.unit_id = u.id"
        )
        return [
            StoredUnit(
                unit=Unit(
                    id=r["id"],
                    platform_id=r["platform_id"],
                    kind=UnitKind(r["kind"]),
                    callsign=r["callsign"],
                    terminal_id=r["terminal_id"],
                    terminal_utc_offset_min=r["terminal_utc_offset_min"],
                ),
                status=UnitStatus(r["status"]) if r["status"] else UnitStatus.AVAILABLE,
                status_since=r["since"],
                call_id=r["call_id"],
                position=None
                if r["ts"] is None
                else Position(r["ts"], r["lat"], r["lon"], r["speed_kmh"], r["heading_deg"]),
            )
            for r in rows
        ]

    # calls

    async def create_call(self, call: Call, decision: Decision, believed: Believed) -> bool:
        """Insert the call with its decision; False (and nothing written) when the call_id already exists.

        A call that changes no unit (the usual new call: recommended, not assigned) is written with the calls
        arriving beside it (`NewCallWriter`); one that assigns a unit is checked and written in its own transaction."""
        if believed.statuses or believed.open_calls or decision.statuses:
            return await self._create_checked_call(call, decision, believed)
        return await self._new_calls.write(call, decision.events)

    async def _create_checked_call(self, call: Call, decision: Decision, believed: Believed) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO calls (call_id, received_at, lat, lon, category, priority, address, note, zone_class, "
                "target_s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (call_id) DO NOTHING "
                "RETURNING true",
                *_call_row(call),
            )
            if not inserted:
                return False
            await _check(conn, believed)
            await self._record(conn, {call.call_id: call}, decision)
            return True

    async def record(self, calls: dict[str, Call], decision: Decision, believed: Believed) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await _check(conn, believed)
            await self._record(conn, calls, decision)

    async def unit_statuses(self, unit_ids: list[str]) -> list[StatusChange]:
        rows = await self._pool.fetch(
            "SELECT unit_id, status, call_id, since FROM unit_status WHERE unit_id = ANY($1)", unit_ids
        )
        return [StatusChange(r["unit_id"], UnitStatus(r["status"]), r["call_id"], r["since"]) for r in rows]

    async def _record(self, conn: Connection, calls: dict[str, Call], decision: Decision) -> None:
        outbox: list[tuple[str, bytes, bytes]] = []
        for event in decision.events:
            call = calls[event.call_id]
            await conn.execute(
                "INSERT INTO call_events (call_id, event, unit_id, ts, source, platform_id) "
                "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                event.call_id,
                event.event.value,
                event.unit_id or "",
                event.ts,
                None if event.source is None else event.source.value,
                event.platform_id,
            )
            if event.event is CallEventKind.CLOSED:
                await conn.execute("UPDATE calls SET status = 'closed' WHERE call_id = $1", event.call_id)
            outbox.append((CALLS.name, event.call_id.encode(), CALLS.encode(call_event_message(call, event))))
        for change in decision.statuses:
            await conn.execute(
                "INSERT INTO unit_status (unit_id, status, call_id, since) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (unit_id) DO UPDATE SET status = excluded.status, call_id = excluded.call_id, "
                "since = excluded.since WHERE unit_status.since <= excluded.since",
                change.unit_id,
                change.status.value,
                change.call_id,
                change.ts,
            )
            message = unit_status_message(change)
            outbox.append((UNIT_STATUS.name, change.unit_id.encode(), UNIT_STATUS.encode(message)))
        if outbox:
            await conn.executemany("INSERT INTO outbox (topic, key, value) VALUES ($1, $2, $3)", outbox)

    async def open_calls(self) -> list[Call]:
        rows = await self._pool.fetch("SELECT * FROM calls WHERE status = 'open'")
        return await self._with_timelines(rows)

    async def call(self, call_id: str) -> Call | None:
        rows = await self._pool.fetch("SELECT * FROM calls WHERE call_id = $1", call_id)
        calls = await self._with_timelines(rows)
        return calls[0] if calls else None

    async def calls(
        self, *, status: CallStatus | None, received_from: datetime | None, received_to: datetime | None, limit: int
    ) -> list[Call]:
        rows = await self._pool.fetch(
            "SELECT * FROM calls WHERE ($1::text IS NULL OR status = $1) AND ($2::timestamptz IS NULL OR "
            "received_at >= $2) AND ($3::timestamptz IS NULL OR received_at < $3) ORDER BY received_at DESC LIMIT $4",
            None if status is None else status.value,
            received_from,
            received_to,
            limit,
        )
        return await self._with_timelines(rows)

    async def record_coverage(self, snapshot: CoverageSnapshot) -> None:
        """Zone and class rows; each class row this replica is first to keep goes to `kuaijing.coverage` too."""
        zones = [
            (snapshot.at, zone_class.value, zone_id, c.target_s, c.cells, c.covered)
            for zone_id, (zone_class, c) in snapshot.zones.items()
        ]
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(_INSERT_COVERAGE, zones)
            outbox = []
            for zone_class, c in snapshot.classes.items():
                kept = await conn.fetchval(
                    _KEEP_COVERAGE, snapshot.at, zone_class.value, "", c.target_s, c.cells, c.covered
                )
                if kept:
                    sample = CoverageSample(
                        ts=snapshot.at, zone_class=zone_class.value, target_s=c.target_s, cells=c.cells,
                        covered=c.covered,
                    )  # fmt: skip
                    outbox.append((COVERAGE.name, zone_class.value.encode(), COVERAGE.encode(sample)))
            await conn.executemany("INSERT INTO outbox (topic, key, value) VALUES ($1, $2, $3)", outbox)

    async def coverage_history(self, *, since: datetime, until: datetime) -> list[CoverageHour]:
        rows = await self._pool.fetch(
            "SELECT date_trunc('hour', ts) AS hour, zone_class, count(*) AS samples, "
            "avg(covered::float8 / cells) AS mean_share, min(covered::float8 / cells) AS min_share "
            "FROM coverage_samples WHERE zone_id = '' AND cells > 0 AND ts >= $1 AND ts < $2 "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            since,
            until,
        )
        return [
            CoverageHour(r["hour"], ZoneClass(r["zone_class"]), r["samples"], r["mean_share"], r["min_share"])
            for r in rows
        ]

    async def record_advice(self, messages: list[AdviceMessage]) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO advice (advice_id, ts, unit_id, message) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (advice_id) DO NOTHING",
                [(m.advice_id, m.ts, m.unit_id, m.model_dump_json()) for m in messages],
            )
            await conn.executemany(
                "INSERT INTO outbox (topic, key, value) VALUES ($1, $2, $3)",
                [(ADVICE.name, m.unit_id.encode(), ADVICE.encode(m)) for m in messages],
            )

    async def advice(self, *, since: datetime) -> list[AdviceMessage]:
        rows = await self._pool.fetch("SELECT message FROM advice WHERE ts >= $1 ORDER BY ts DESC", since)
        return [AdviceMessage.model_validate_json(r["message"]) for r in rows]

    async def completed_trips(self, *, since: datetime) -> list[Trip]:
        rows = await self._pool.fetch(_COMPLETED_TRIPS, since)
        return [
            Trip(
                call_id=r["call_id"],
                unit_id=r["unit_id"],
                kind=UnitKind(r["kind"]),
                destination=(r["call_lat"], r["call_lon"]),
                fixes=[Fix(ts, lat, lon) for ts, lat, lon in zip(r["ts"], r["lats"], r["lons"], strict=True)],
                arrived_at=r["arrived_at"],
            )
            for r in rows
        ]

    async def _with_timelines(self, rows: Sequence[Any]) -> list[Call]:
        if not rows:
            return []
        calls = {r["call_id"]: _call_from_row(r) for r in rows}
        events = await self._pool.fetch(
            "SELECT call_id, event, unit_id, ts, source, platform_id FROM call_events WHERE call_id = ANY($1) "
            "ORDER BY ts, recorded_at",
            list(calls),
        )
        for e in events:
            calls[e["call_id"]].apply(
                CallEvent(
                    call_id=e["call_id"],
                    event=CallEventKind(e["event"]),
                    ts=e["ts"],
                    unit_id=e["unit_id"] or None,
                    source=None if e["source"] is None else EventSource(e["source"]),
                    platform_id=e["platform_id"],
                )
            )
        return list(calls.values())


def _call_row(call: Call) -> tuple[object, ...]:
    return (
        call.call_id,
        call.received_at,
        call.lat,
        call.lon,
        call.category,
        call.priority,
        call.address,
        call.note,
        call.zone_class.value,
        call.target_s,
    )


async def _check(conn: Connection, believed: Believed) -> None:
    """Within the decision's transaction: lock what it changes, then compare with what the deciding replica
    believed; `StaleStateError` when another replica got there first."""
    await _check_units(conn, believed)
    await _check_calls(conn, believed)


async def _check_units(conn: Connection, believed: Believed) -> None:
    """An advisory lock per changed unit (so a unit without a status row yet is locked too), in id order so that
    two decisions never wait on each other in a circle."""
    units = sorted(believed.statuses)
    for unit_id in units:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", unit_id)
    if not units:
        return
    rows = await conn.fetch("SELECT unit_id, status, since FROM unit_status WHERE unit_id = ANY($1)", units)
    held = {r["unit_id"]: (UnitStatus(r["status"]), r["since"]) for r in rows}
    for unit_id, belief in believed.statuses.items():
        if held.get(unit_id, (UnitStatus.AVAILABLE, None)) != belief:
            raise StaleStateError(f"unit {unit_id} was changed by another replica")


async def _check_calls(conn: Connection, believed: Believed) -> None:
    """The call rows locked (a decision that puts a unit on one of them waits for this one), still open, with
    exactly the units on them that the replica believed."""
    if not believed.open_calls:
        return
    call_ids = sorted(believed.open_calls)
    still_open = await conn.fetch(
        "SELECT call_id FROM calls WHERE call_id = ANY($1) AND status = 'open' ORDER BY call_id FOR UPDATE", call_ids
    )
    if len(still_open) != len(call_ids):
        raise StaleStateError("a call was closed by another replica")
    rows = await conn.fetch(
        "SELECT call_id, unit_id FROM unit_status WHERE call_id = ANY($1) AND status = ANY($2)",
        call_ids,
        [s.value for s in _ON_CALL],
    )
    on_calls: dict[str, set[str]] = {call_id: set() for call_id in call_ids}
    for row in rows:
        on_calls[row["call_id"]].add(row["unit_id"])
    if any(on_calls[call_id] != believed_units for call_id, believed_units in believed.open_calls.items()):
        raise StaleStateError("another replica changed the units on a call")


_ON_CALL = (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE)


def _call_from_row(r: Any) -> Call:
    return Call(
        call_id=r["call_id"],
        received_at=r["received_at"],
        lat=r["lat"],
        lon=r["lon"],
        category=r["category"],
        priority=r["priority"],
        zone_class=ZoneClass(r["zone_class"]),
        target_s=r["target_s"],
        address=r["address"],
        note=r["note"],
        status=CallStatus(r["status"]),
    )


_INSERT_COVERAGE = (
    "INSERT INTO coverage_samples (ts, zone_class, zone_id, target_s, cells, covered) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
)
_KEEP_COVERAGE = _INSERT_COVERAGE + " RETURNING true"
"""The same, saying whether this call kept the row (another replica may have kept that instant first)."""

_COMPLETED_TRIPS = """
WITH drives AS (
    SELECT a.call_id, a.unit_id, a.ts AS assigned_at, min(s.ts) AS arrived_at
    FROM call_events a
    JOIN call_events s ON s.call_id = a.call_id AND s.unit_id = a.unit_id AND s.event = 'on_scene' AND s.ts >= a.ts
    WHERE a.event = 'assigned' AND a.unit_id <> '' AND a.ts >= $1
    GROUP BY a.call_id, a.unit_id, a.ts
)
SELECT d.call_id, d.unit_id, u.kind, c.lat AS call_lat, c.lon AS call_lon, d.arrived_at,
       array_agg(p.ts ORDER BY p.ts) AS ts, array_agg(p.lat ORDER BY p.ts) AS lats,
       array_agg(p.lon ORDER BY p.ts) AS lons
FROM drives d
JOIN calls c ON c.call_id = d.call_id
JOIN units u ON u.id = d.unit_id
JOIN positions p ON p.unit_id = d.unit_id AND p.fix AND p.ts BETWEEN d.assigned_at AND d.arrived_at
GROUP BY d.call_id, d.unit_id, d.assigned_at, u.kind, c.lat, c.lon, d.arrived_at
ORDER BY d.assigned_at, d.call_id, d.unit_id
"""
"""Each drive to a call that ended on scene: the unit's fixes from its assignment to its arrival."""
