"""Long-running background loops owned by a lifespan: restarted with backoff on failure, cancelled on exit."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
_HEALTHY_S = 60.0


class Supervisor:
    def __init__(self) -> None:
        self._tasks: list[asyncio.Task[None]] = []

    def spawn(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run `loop` until cancelled; an exception is logged and the loop started again after a backoff."""
        self._tasks.append(asyncio.create_task(self._supervise(name, loop), name=name))

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        failures = 0
        while True:
            started = time.monotonic()
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if time.monotonic() - started > _HEALTHY_S:
                    failures = 0  # it ran well for a while: this is a new failure, not the same one again
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
                failures += 1
                log.exception("%s failed (%s in a row); restarting in %.1f s", name, failures, delay)
                await asyncio.sleep(delay)

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """Cancel every loop and wait for them to unwind, but never longer than `timeout_s`: a client stuck in a
        broker call must not keep the process from exiting on SIGTERM."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=timeout_s)
            for task in stuck:
                log.warning("%s did not stop within %.0f s; leaving it", task.get_name(), timeout_s)
            for task in self._tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    log.warning("%s ended with %r", task.get_name(), task.exception())
        self._tasks.clear()
