"""Schema migrations and the registry import command against the real PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind
from shared.infra.postgres import Migration, apply_migrations, bundled_migrations
from shared.infra.registry_store import import_registry, registry_revision
from shared.settings import CommonSettings

pytestmark = pytest.mark.integration


async def test_migrations_are_recorded_once_and_reapplying_is_a_no_op(db: asyncpg.Connection) -> None:
    assert await apply_migrations(db) == []
    recorded = await db.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"]) for r in recorded] == [(m.version, m.name) for m in bundled_migrations()]


async def test_a_failing_migration_leaves_nothing_half_applied(db: asyncpg.Connection) -> None:
    table = f"half_{uuid.uuid4().hex[:8]}"
    broken = Migration(9000 + int(uuid.uuid4().hex[:3], 16), "broken", f"CREATE TABLE {table} (x int); SELEC oops;")
    with pytest.raises(asyncpg.PostgresSyntaxError):
        await apply_migrations(db, [*bundled_migrations(), broken])
    assert await db.fetchval("SELECT to_regclass($1)", table) is None
    assert await db.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1", broken.version) is None


def run_cli(settings: CommonSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUAIJING_KAFKA_BOOTSTRAP": settings.kafka, "KUAIJING_DATABASE_URL": settings.database}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_registry_import_upserts_platforms_units_and_zones(
    settings: CommonSettings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:8]
    document: dict[str, Any] = {
        "platforms": [{"id": f"P-{tag}", "name": "Daxiang platform", "kind": "patrol", "lat": 27.23, "lon": 111.46}],
        "units": [
            {"id": f"U-{tag}", "platform_id": f"P-{tag}", "kind": "motorcycle", "callsign": "2095",
             "terminal_id": "0" + str(10**11 + int(tag, 16))},
        ],
        "zones": [{"id": f"Z-{tag}", "class": "central_urban", "geometry": {"type": "Polygon", "coordinates": [
            [[111.4, 27.2], [111.5, 27.2], [111.5, 27.3], [111.4, 27.2]]]}}],
    }  # fmt: skip
    path = tmp_path / "registry.json"
    path.write_bytes(orjson.dumps(document))
    first = run_cli(settings, "registry", "import", str(path))
    assert first.returncode == 0, first.stderr
    assert "imported 1 platforms, 1 units, 1 zones" in first.stdout
    document["units"][0]["callsign"] = "2096"
    path.write_bytes(orjson.dumps(document))
    assert run_cli(settings, "registry", "import", str(path)).returncode == 0
    unit = await db.fetchrow("SELECT callsign, terminal_id, kind FROM units WHERE id = $1", f"U-{tag}")
    assert unit is not None
    assert unit["callsign"] == "2096"
    assert not unit["terminal_id"].startswith("0")
    assert await db.fetchval("SELECT class FROM zones WHERE id = $1", f"Z-{tag}") == "central_urban"


def test_registry_import_explains_a_bad_file(settings: CommonSettings, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"units": [{"id": "U", "platform_id": "P", "kind": "tank", "callsign": "1"}]}')
    result = run_cli(settings, "registry", "import", str(path))
    assert result.returncode == 1
    assert "units.0.kind" in result.stderr
    missing = run_cli(settings, "registry", "import", str(tmp_path / "nope.json"))
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


def test_registry_import_explains_what_the_database_refuses(settings: CommonSettings, tmp_path: Path) -> None:
    path = tmp_path / "orphan.json"
    path.write_text(
        '{"units": [{"id": "orphan", "platform_id": "no-such-platform", "kind": "motorcycle", "callsign": "1"}]}'
    )
    result = run_cli(settings, "registry", "import", str(path))
    assert result.returncode == 1
    assert "no-such-platform" in result.stderr
    assert "Traceback" not in result.stderr


async def test_an_import_is_one_statement_per_table_whatever_its_size(db: asyncpg.Connection) -> None:
    """The revision trigger fires per statement: 2,000 units imported row by row moved it 2,000 times (and made
    100,000 units quadratic); one statement per table moves it as much for 2,000 units as for one."""
    tag = uuid.uuid4().hex[:8]
    platform = Platform(id=f"P-{tag}", name="Bulk", kind=PlatformKind.PATROL, lat=27.2, lon=111.4)
    units = [
        Unit(id=f"U-{tag}-{i}", platform_id=platform.id, kind=UnitKind.MOTORCYCLE, callsign=f"{i}") for i in range(2000)
    ]
    units.append(units[0].model_copy(update={"callsign": "last-wins"}))

    async def revisions_moved(document: RegistryImport) -> int:
        before = await registry_revision(db)
        await import_registry(db, document)
        return await registry_revision(db) - before

    small = await revisions_moved(RegistryImport(platforms=[platform], units=units[:1]))
    assert await revisions_moved(RegistryImport(platforms=[platform], units=units)) == small
    assert await db.fetchval("SELECT count(*) FROM units WHERE platform_id = $1", platform.id) == 2000
    assert await db.fetchval("SELECT callsign FROM units WHERE id = $1", units[0].id) == "last-wins"
