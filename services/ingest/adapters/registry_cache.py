"""A process-local snapshot of the unit registry that follows changes without a restart.

It polls the one-row `registry_revision` (moved by a trigger on every registry write) and reloads only when the
revision moved, so a unit registered through any service becomes known here within one poll interval.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from shared.contract.registry import UnitDirectory
from shared.infra.registry_store import load_unit_directory, registry_revision

log = logging.getLogger(__name__)


class UnitDirectoryCache:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._directory = UnitDirectory.empty()

    def current(self) -> UnitDirectory:
        return self._directory

    async def refresh(self) -> bool:
        """Reload when the registry moved on; True when it did."""
        async with self._pool.acquire() as conn:
            if await registry_revision(conn) == self._directory.revision:
                return False
            directory = await load_unit_directory(conn)
        self._directory = directory
        log.info("unit registry revision %s loaded: %s units", directory.revision, len(directory.by_unit))
        return True

    async def follow(self, poll_s: float) -> None:
        while True:
            await asyncio.sleep(poll_s)
            await self.refresh()
