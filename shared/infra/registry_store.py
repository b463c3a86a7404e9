"""Registry rows in PostgreSQL: bulk upsert of an import document and the unit directory ingest caches."""

from __future__ import annotations

import asyncpg
import orjson

from shared.contract.registry import RegistryImport, UnitDirectory, UnitKind, UnitRef
from shared.errors import ConflictError
from shared.infra.postgres import Connection


async def import_registry(conn: Connection, document: RegistryImport) -> dict[str, int]:
    """Upsert everything in one transaction, platforms first so units can refer to them; a document the database
    refuses (a unit of an unknown platform, a terminal already on another unit) raises `ConflictError`."""
    try:
        return await _import(conn, document)
    except asyncpg.IntegrityConstraintViolationError as e:
        detail = f" ({e.detail})" if getattr(e, "detail", None) else ""
        raise ConflictError(field="registry", error=f"{e.message}{detail}") from e


async def _import(conn: Connection, document: RegistryImport) -> dict[str, int]:
    """One statement per table, whatever the size of the document: each row-by-row statement would also fire the
    revision trigger, and a long chain of updates to its one row made large imports quadratic. Within a document
    the last entry of an id wins, as it would row by row."""
    platforms = list({p.id: p for p in document.platforms}.values())
    units = list({u.id: u for u in document.units}.values())
    zones = list({z.id: z for z in document.zones}.values())
    async with conn.transaction():
        if platforms:
            await conn.execute(
                "INSERT INTO platforms (id, name, kind, lat, lon) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::float8[]) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, lat = excluded.lat, "
                "lon = excluded.lon, updated_at = now()",
                [p.id for p in platforms],
                [p.name for p in platforms],
                [p.kind.value for p in platforms],
                [p.lat for p in platforms],
                [p.lon for p in platforms],
            )
        if units:
            await conn.execute(
                "INSERT INTO units (id, platform_id, kind, callsign, terminal_id, terminal_utc_offset_min) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[]) "
                "ON CONFLICT (id) DO UPDATE SET platform_id = excluded.platform_id, kind = excluded.kind, "
                "callsign = excluded.callsign, terminal_id = excluded.terminal_id, "
                "terminal_utc_offset_min = excluded.terminal_utc_offset_min, updated_at = now()",
                [u.id for u in units],
                [u.platform_id for u in units],
                [u.kind.value for u in units],
                [u.callsign for u in units],
                [u.terminal_id for u in units],
                [u.terminal_utc_offset_min for u in units],
            )
        if zones:
            await conn.execute(
                "INSERT INTO zones (id, class, geometry) "
                "SELECT i, c, g::jsonb FROM unnest($1::text[], $2::text[], $3::text[]) AS t(i, c, g) "
                "ON CONFLICT (id) DO UPDATE SET class = excluded.class, geometry = excluded.geometry, "
                "updated_at = now()",
                [z.id for z in zones],
                [z.class_.value for z in zones],
                [orjson.dumps(z.geometry_json()).decode() for z in zones],
            )
    return {"platforms": len(document.platforms), "units": len(document.units), "zones": len(document.zones)}


async def registry_revision(conn: Connection | asyncpg.Pool) -> int:
    revision: int = await conn.fetchval("SELECT revision FROM registry_revision")
    return revision


async def load_unit_directory(conn: Connection) -> UnitDirectory:
    """Read revision and units in one snapshot so the revision names exactly what was read."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        revision = await registry_revision(conn)
        rows = await conn.fetch("SELECT id, platform_id, kind, terminal_id, terminal_utc_offset_min FROM units")
    return UnitDirectory.of(
        revision,
        [
            UnitRef(r["id"], r["platform_id"], UnitKind(r["kind"]), r["terminal_id"], r["terminal_utc_offset_min"])
            for r in rows
        ],
    )
