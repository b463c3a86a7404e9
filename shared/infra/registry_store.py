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
    async with conn.transaction():
        if document.platforms:
            await conn.executemany(
                "INSERT INTO platforms (id, name, kind, lat, lon) VALUES ($1, $2, $3, $4, $5) "
                "ON CONFLICT (id) DO UPDATE SET name = excluded.name, kind = excluded.kind, lat = excluded.lat, "
                "lon = excluded.lon, updated_at = now()",
                [(p.id, p.name, p.kind.value, p.lat, p.lon) for p in document.platforms],
            )
        if document.units:
            await conn.executemany(
                "INSERT INTO units (id, platform_id, kind, callsign, terminal_id, terminal_utc_offset_min) "
                "VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (id) DO UPDATE SET platform_id = excluded.platform_id, kind = excluded.kind, "
                "callsign = excluded.callsign, terminal_id = excluded.terminal_id, "
                "terminal_utc_offset_min = excluded.terminal_utc_offset_min, updated_at = now()",
                [
                    (u.id, u.platform_id, u.kind.value, u.callsign, u.terminal_id, u.terminal_utc_offset_min)
                    for u in document.units
                ],
            )
        if document.zones:
            await conn.executemany(
                "INSERT INTO zones (id, class, geometry) VALUES ($1, $2, $3::jsonb) "
                "ON CONFLICT (id) DO UPDATE SET class = excluded.class, geometry = excluded.geometry, "
                "updated_at = now()",
                [(z.id, z.class_.value, orjson.dumps(z.geometry_json()).decode()) for z in document.zones],
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
