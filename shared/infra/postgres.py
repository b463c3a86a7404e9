"""PostgreSQL pool and the numbered-SQL migration runner every service applies at start-up."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.errors import InfrastructureError

log = logging.getLogger(__name__)

Connection = asyncpg.Connection | PoolConnectionProxy

UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
)
"""What asyncpg raises while PostgreSQL is down, restarting or failing over (refused connections, connections
lost, "the database system is starting up"): the client should try again, not report a bug."""
"""A connection of our own or one borrowed from a pool: the stores accept either."""

_MIGRATION_NAME = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_MIGRATION_LOCK = 0x6B75616A  # "kuaj": one advisory lock so concurrent services migrate one at a time


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("shared.infra.migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise InfrastructureError(f"two migrations share a number: {versions}")
    return found


async def apply_migrations(conn: Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply pending migrations in order, each in its own transaction, and record them; returns those applied."""
    pending_all = bundled_migrations() if migrations is None else migrations
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        applied = []
        for migration in pending_all:
            if migration.version in done:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("applied migration %03d_%s", migration.version, migration.name)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def migrate(dsn: str) -> list[int]:
    conn = await connect(dsn)
    try:
        return await apply_migrations(conn)
    finally:
        await conn.close()


async def connect(dsn: str) -> asyncpg.Connection:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(dsn, timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise InfrastructureError(f"cannot reach PostgreSQL at {dsn}: {e}") from e
    return conn


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Returning a connection to the pool: asyncpg still rolls back a transaction left open; the rest of its default
    reset (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) is one more round trip per request for session state this
    code never leaves behind: the session-level advisory locks it takes (migrations, the outbox relay) are released in
    a `finally`, and the outbox relay's LISTEN and TCP keepalive SETs are undone the same way; no cursors."""


@asynccontextmanager
async def open_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, timeout=10, reset=_no_session_state)
    except (OSError, asyncpg.PostgresError) as e:
        raise InfrastructureError(f"cannot reach PostgreSQL at {dsn}: {e}") from e
    try:
        yield pool
    finally:
        await pool.close()
