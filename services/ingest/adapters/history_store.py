"""Telemetry history in PostgreSQL: COPY into a staging table, then one idempotent INSERT ... ON CONFLICT.

Tables are partitioned by UTC day of event time; a partition is created the first time a day is written.
`unit_latest_positions` follows the newest fixed position per unit by event time, never moved back by a late ping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

import asyncpg

from shared.contract.schemas import PositionRecord, VideoRecord
from shared.infra.postgres import Connection

_POSITION_COLUMNS = (
    "unit_id",
    "ts",
    "lat",
    "lon",
    "speed_kmh",
    "heading_deg",
    "altitude_m",
    "gnss",
    "satellites",
    "hdop",
    "seq",
    "fix",
    "platform_id",
    "h3",
    "source",
    "received_at",
)
_VIDEO_COLUMNS = (
    "unit_id",
    "ts",
    "channel",
    "state",
    "bitrate_kbps",
    "fps",
    "resolution",
    "codec",
    "network",
    "signal_dbm",
    "platform_id",
    "source",
    "received_at",
)


def _position_row(r: PositionRecord) -> tuple[object, ...]:
    return (
        r.unit_id,
        r.ts,
        r.lat,
        r.lon,
        r.speed_kmh,
        r.heading_deg,
        r.altitude_m,
        None if r.gnss is None else r.gnss.value,
        r.satellites,
        r.hdop,
        r.seq,
        r.fix,
        r.platform_id,
        r.h3,
        r.source.value,
        r.received_at,
    )


def _video_row(r: VideoRecord) -> tuple[object, ...]:
    return (
        r.unit_id,
        r.ts,
        r.channel,
        r.state.value,
        r.bitrate_kbps,
        r.fps,
        r.resolution,
        r.codec,
        r.network,
        r.signal_dbm,
        r.platform_id,
        r.source.value,
        r.received_at,
    )


def _inserted(status: str) -> int:
    return int(status.rsplit(" ", 1)[1])


_INSERT_POSITIONS = (
    f"INSERT INTO positions ({', '.join(_POSITION_COLUMNS)}) SELECT {', '.join(_POSITION_COLUMNS)} "
    "FROM stage_positions ON CONFLICT (unit_id, ts) DO NOTHING"
)
_INSERT_VIDEOS = (
    f"INSERT INTO video_pings ({', '.join(_VIDEO_COLUMNS)}) SELECT {', '.join(_VIDEO_COLUMNS)} "
    "FROM stage_video ON CONFLICT (unit_id, ts, channel) DO NOTHING"
)
"""Built once from the column constants above: no value ever enters these statements."""

HistoryTable = Literal["positions", "video_pings"]


def partition_ddl(table: HistoryTable, day: date) -> str:
    """The partition of `table` for one UTC day. DDL takes no parameters; its only inputs are a table name from
    this module's own literal type and a date, never text from outside."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    end = start + timedelta(days=1)
    return (
        f"CREATE TABLE IF NOT EXISTS {table}_{day:%Y%m%d} PARTITION OF {table} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
    )


class HistoryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._partitions: set[tuple[str, date]] = set()

    async def write(self, positions: Sequence[PositionRecord], videos: Sequence[VideoRecord]) -> tuple[int, int]:
        """Store a batch in one transaction; returns rows newly inserted (duplicates are skipped)."""
        async with self._pool.acquire() as conn:
            await self._ensure_partitions(conn, "positions", (r.ts for r in positions))
            await self._ensure_partitions(conn, "video_pings", (r.ts for r in videos))
            async with conn.transaction():
                new_positions = await self._write_positions(conn, positions) if positions else 0
                new_videos = await self._write_videos(conn, videos) if videos else 0
        return new_positions, new_videos

    async def _write_positions(self, conn: Connection, records: Sequence[PositionRecord]) -> int:
        await conn.execute("CREATE TEMP TABLE stage_positions (LIKE positions INCLUDING DEFAULTS) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "stage_positions", records=[_position_row(r) for r in records], columns=_POSITION_COLUMNS
        )
        status = await conn.execute(_INSERT_POSITIONS)
        await conn.execute(
            "INSERT INTO unit_latest_positions AS latest "
            "(unit_id, ts, lat, lon, speed_kmh, heading_deg, platform_id, h3, received_at) "
            "SELECT DISTINCT ON (unit_id) unit_id, ts, lat, lon, speed_kmh, heading_deg, platform_id, h3, received_at "
            "FROM stage_positions WHERE fix ORDER BY unit_id, ts DESC "
            "ON CONFLICT (unit_id) DO UPDATE SET ts = excluded.ts, lat = excluded.lat, lon = excluded.lon, "
            "speed_kmh = excluded.speed_kmh, heading_deg = excluded.heading_deg, "
            "platform_id = excluded.platform_id, h3 = excluded.h3, received_at = excluded.received_at "
            "WHERE excluded.ts > latest.ts"
        )
        return _inserted(status)

    async def _write_videos(self, conn: Connection, records: Sequence[VideoRecord]) -> int:
        await conn.execute("CREATE TEMP TABLE stage_video (LIKE video_pings INCLUDING DEFAULTS) ON COMMIT DROP")
        await conn.copy_records_to_table(
            "stage_video", records=[_video_row(r) for r in records], columns=_VIDEO_COLUMNS
        )
        status = await conn.execute(_INSERT_VIDEOS)
        return _inserted(status)

    async def _ensure_partitions(self, conn: Connection, table: HistoryTable, stamps: Iterable[datetime]) -> None:
        days = {ts.astimezone(UTC).date() for ts in stamps}
        for day in sorted(days):
            if (table, day) in self._partitions:
                continue
            # Another writer may create the same day between our IF NOT EXISTS check and our CREATE.
            with contextlib.suppress(asyncpg.DuplicateTableError):
                await conn.execute(partition_ddl(table, day))
            self._partitions.add((table, day))
