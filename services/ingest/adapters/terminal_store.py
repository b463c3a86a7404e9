"""Auth codes of JT/T 808 terminals in PostgreSQL: issued on registration (0x8100), checked on authentication."""

from __future__ import annotations

import secrets

import asyncpg


class TerminalStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def register(self, terminal_id: str) -> str:
        """A fresh auth code for the terminal; the previous one stops working."""
        code = secrets.token_hex(8)
        await self._pool.execute(
            "INSERT INTO jt808_terminals (terminal_id, auth_code) VALUES ($1, $2) "
            "ON CONFLICT (terminal_id) DO UPDATE SET auth_code = excluded.auth_code, registered_at = now()",
            terminal_id,
            code,
        )
        return code

    async def authenticates(self, terminal_id: str, code: str) -> bool:
        stored = await self._pool.fetchval("SELECT auth_code FROM jt808_terminals WHERE terminal_id = $1", terminal_id)
        return stored is not None and secrets.compare_digest(stored, code)
