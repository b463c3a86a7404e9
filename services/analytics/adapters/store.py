"""Analytics tables: call events stored idempotently, per-call facts derived in SQL, reports as one query each."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import asyncpg

from services.analytics.domain.coverage import CoverageHour
from services.analytics.domain.latency import UNASSIGNED, GroupFigures
from shared.contract.schemas import CallEventMessage, CoverageSample
from shared.percentiles import Spread


class GroupBy(StrEnum):
    PLATFORM = "platform"
    ZONE_CLASS = "zone_class"
    UNIT_KIND = "unit_kind"
    DAY = "day"


_KEYS = {
    GroupBy.PLATFORM: "f.platform_id",
    GroupBy.ZONE_CLASS: "f.zone_class",
    GroupBy.UNIT_KIND: f"CASE WHEN f.first_unit_id IS NULL THEN '{UNASSIGNED}' ELSE coalesce(u.kind, 'unknown') END",
    GroupBy.DAY: "to_char(f.received_at AT TIME ZONE $3, 'YYYY-MM-DD')",
}

_REFRESH_FACTS = f"""
INSERT INTO call_facts AS cf (call_id, received_at, dispatched_at, arrived_at, closed_at, zone_class, target_s,
                              first_unit_id, platform_id, dispatch_s, travel_s, response_s, handling_s)
SELECT c.call_id, e.received, e.dispatched, e.arrived, e.closed, c.zone_class, c.target_s,
       coalesce(e.on_scene_unit, e.assigned_unit),
       coalesce(e.on_scene_platform, e.assigned_platform, '{UNASSIGNED}'),
       extract(epoch FROM e.dispatched - e.received), extract(epoch FROM e.arrived - e.dispatched),
       extract(epoch FROM e.arrived - e.received), extract(epoch FROM e.closed - e.received)
FROM analytics_calls c
JOIN (
    SELECT call_id,
           min(ts) FILTER (WHERE event = 'created') AS received,
           min(ts) FILTER (WHERE event = 'assigned') AS dispatched,
           min(ts) FILTER (WHERE event = 'on_scene') AS arrived,
           min(ts) FILTER (WHERE event = 'closed') AS closed,
           (array_agg(nullif(unit_id, '') ORDER BY ts, unit_id) FILTER (WHERE event = 'on_scene'))[1] AS on_scene_unit,
           (array_agg(platform_id ORDER BY ts, unit_id) FILTER (WHERE event = 'on_scene'))[1] AS on_scene_platform,
           (array_agg(nullif(unit_id, '') ORDER BY ts, unit_id) FILTER (WHERE event = 'assigned'))[1] AS assigned_unit,
           (array_agg(platform_id ORDER BY ts, unit_id) FILTER (WHERE event = 'assigned'))[1] AS assigned_platform
    FROM analytics_call_events WHERE call_id = ANY($1) GROUP BY call_id
) e USING (call_id)
ON CONFLICT (call_id) DO UPDATE SET
    received_at = excluded.received_at, dispatched_at = excluded.dispatched_at, arrived_at = excluded.arrived_at,
    closed_at = excluded.closed_at, zone_class = excluded.zone_class, target_s = excluded.target_s,
    first_unit_id = excluded.first_unit_id, platform_id = excluded.platform_id, dispatch_s = excluded.dispatch_s,
    travel_s = excluded.travel_s, response_s = excluded.response_s, handling_s = excluded.handling_s
"""


def _spread(column: str) -> str:
    # One sort per column serves both percentiles.
    arrived = "FILTER (WHERE f.arrived_at IS NOT NULL)"
    return (
        f"avg(f.{column}) {arrived}, "
        f"percentile_cont(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY f.{column}) {arrived}, max(f.{column}) {arrived}"
    )


def report_sql(group_by: GroupBy) -> str:
    join = "LEFT JOIN units u ON u.id = f.first_unit_id" if group_by is GroupBy.UNIT_KIND else ""
    window = "f.received_at >= $1 AND f.received_at < $2" + (
        " AND $3::text IS NOT NULL" if group_by is not GroupBy.DAY else ""
    )
    return f"""
SELECT {_KEYS[group_by]} AS key, count(*) AS calls, count(*) FILTER (WHERE f.arrived_at IS NULL) AS not_arrived,
       {_spread("dispatch_s")}, {_spread("travel_s")}, {_spread("response_s")},
       100.0 * count(*) FILTER (WHERE f.response_s <= f.target_s)
             / nullif(count(*) FILTER (WHERE f.arrived_at IS NOT NULL), 0) AS target_met_pct
FROM call_facts f {join}
WHERE {window}
GROUP BY 1 ORDER BY 1
"""


def _figures(row: Sequence[Any]) -> GroupFigures:
    def number(value: Any) -> float | None:
        return None if value is None else float(value)

    def spread(offset: int) -> Spread:
        mean, percentiles, maximum = row[offset : offset + 3]
        p50, p90 = percentiles if percentiles is not None else (None, None)
        return Spread(number(mean), number(p50), number(p90), number(maximum))

    return GroupFigures(
        key=row[0],
        calls=row[1],
        not_arrived=row[2],
        dispatch_s=spread(3),
        travel_s=spread(6),
        response_s=spread(9),
        target_met_pct=number(row[12]),
    )


class AnalyticsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def record(self, events: Sequence[CallEventMessage]) -> int:
        """Store a batch of call events and refresh the facts of the calls they touch; returns new events."""
        if not events:
            return 0
        calls = {e.call_id: e for e in events}
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO analytics_calls (call_id, lat, lon, zone_class, target_s, category, priority) "
                "SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[], $5::int[], $6::text[], "
                "$7::int2[]) ON CONFLICT (call_id) DO NOTHING",
                list(calls),
                [e.lat for e in calls.values()],
                [e.lon for e in calls.values()],
                [e.zone_class for e in calls.values()],
                [e.target_s for e in calls.values()],
                [e.category for e in calls.values()],
                [e.priority for e in calls.values()],
            )
            status = await conn.execute(
                "INSERT INTO analytics_call_events (call_id, event, unit_id, ts, source, platform_id) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::text[]) "
                "ON CONFLICT DO NOTHING",
                [e.call_id for e in events],
                [e.event.value for e in events],
                [e.unit_id or "" for e in events],
                [e.ts for e in events],
                [None if e.source is None else e.source.value for e in events],
                [e.platform_id for e in events],
            )
            await conn.execute(_REFRESH_FACTS, list(calls))
        return int(status.rsplit(" ", 1)[1])

    async def record_coverage(self, samples: Sequence[CoverageSample]) -> None:
        """Coverage samples from `kuaijing.coverage`, once per class and instant."""
        if samples:
            await self._pool.executemany(
                "INSERT INTO analytics_coverage (ts, zone_class, target_s, cells, covered) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                [(s.ts, s.zone_class, s.target_s, s.cells, s.covered) for s in samples],
            )

    async def coverage_hours(self, *, start: datetime, end: datetime) -> list[CoverageHour]:
        """Each class's mean share covered per hour of samples (UTC hours), oldest first."""
        rows = await self._pool.fetch(
            "SELECT date_trunc('hour', ts) AS hour, zone_class, target_s, avg(covered::float8 / cells) AS share "
            "FROM analytics_coverage WHERE cells > 0 AND ts >= $1 AND ts < $2 "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2",
            start,
            end,
        )
        return [CoverageHour(r["hour"], r["zone_class"], r["target_s"], r["share"]) for r in rows]

    async def platform_names(self) -> dict[str, str]:
        """The registry's names, so the dashboard shows "邵阳快警平台 5", not "SY-05"."""
        return {r["id"]: r["name"] for r in await self._pool.fetch("SELECT id, name FROM platforms")}

    async def report(self, group_by: GroupBy, *, start: datetime, end: datetime, tz: str) -> list[GroupFigures]:
        rows = await self._pool.fetch(report_sql(group_by), start, end, tz)
        return [_figures(tuple(r.values())) for r in rows]

    async def daily(self, *, start: datetime, end: datetime) -> list[asyncpg.Record]:
        result: list[asyncpg.Record] = await self._pool.fetch(
            "SELECT platform_id AS key, count(*) AS calls, count(arrived_at) AS arrived, "
            "count(closed_at) AS closed, avg(handling_s) AS mean_handling_s, "
            "avg(response_s) AS mean_response_s, "
            "100.0 * count(*) FILTER (WHERE response_s <= target_s) / nullif(count(arrived_at), 0) AS target_met_pct "
            "FROM call_facts WHERE received_at >= $1 AND received_at < $2 GROUP BY ROLLUP (platform_id) "
            "ORDER BY platform_id NULLS LAST",
            start,
            end,
        )
        return result
