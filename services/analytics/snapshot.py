"""The newest result of an expensive computation, shared by every reader and taken again when it grows old.

Ten wall screens refreshing the dashboard would otherwise run its percentile queries over a week of calls ten times
over. A reader gets the newest snapshot at once; when it is older than `max_age_s`, the reader also starts one new
computation in the background (never two at a time), and the readers after it get the new one. Only readers before
the first snapshot wait, all on the same computation, and share its error if it fails; a computation that has not
ended within `timeout_s` fails (a query stuck in PostgreSQL), so the next reader starts another. A snapshot is exact
for the instant it was taken: the dashboard prints that instant.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Taken(Generic[T]):
    at: float
    value: T


class Snapshot(Generic[T]):
    def __init__(
        self,
        compute: Callable[[], Awaitable[T]],
        *,
        max_age_s: float,
        timeout_s: float,
        name: str,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self._compute = compute
        self._max_age_s = max_age_s
        self._timeout_s = timeout_s
        self._name = name
        self._clock = clock
        self._observe = observe
        self._latest: _Taken[T] | None = None
        self._taking: asyncio.Task[T] | None = None

    def age_s(self) -> float | None:
        """Seconds since the newest snapshot was begun; None before the first."""
        return None if self._latest is None else self._clock() - self._latest.at

    async def get(self) -> T:
        latest = self._latest
        if (latest is None or self._clock() - latest.at >= self._max_age_s) and self._taking is None:
            self._taking = asyncio.create_task(self._take(), name=f"snapshot {self._name}")
            self._taking.add_done_callback(self._taken)
        if latest is not None:
            return latest.value
        assert self._taking is not None
        # Shielded: a reader that gives up (its client went away) does not cancel the others' computation.
        return await asyncio.shield(self._taking)

    async def aclose(self) -> None:
        """Cancel a computation under way (on shutdown)."""
        if self._taking is not None:
            self._taking.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._taking

    async def _take(self) -> T:
        began = self._clock()
        async with asyncio.timeout(self._timeout_s):
            value = await self._compute()
        if self._observe is not None:
            self._observe(self._clock() - began)
        self._latest = _Taken(began, value)
        return value

    def _taken(self, task: asyncio.Task[T]) -> None:
        self._taking = None
        if not task.cancelled() and (error := task.exception()) is not None:
            # Readers keep the previous snapshot (its instant is on the page) and the next reader tries again.
            log.warning("%s: taking a new snapshot failed: %r", self._name, error)
