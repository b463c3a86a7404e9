"""Fan-out of live changes to console subscribers (`GET /v1/events`).

Each subscriber has a bounded queue; one that cannot keep up is dropped (its stream ends and the console
reconnects) rather than slowing the dispatcher down. Positions are thinned to at most one per unit per second.
An event's data is made only when someone listens: most dispatchers on a busy night have no console attached to them,
and building a call event's JSON twice for nobody (once from the decision, once from the topic) cost a call more
than the auth check (README, "The calls path, session 18").
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class LiveEvent:
    kind: str
    data: dict[str, Any]


_CLOSED = LiveEvent("closed", {})


Data = Callable[[], dict[str, Any]]
"""Makes an event's data, asked only when the event is delivered."""


class EventHub:
    def __init__(
        self,
        *,
        position_interval_s: float = 1.0,
        queue_size: int = 2_000,
        recent_limit: int = 50_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._subscribers: set[asyncio.Queue[LiveEvent]] = set()
        self._position_interval_s = position_interval_s
        self._queue_size = queue_size
        self._clock = clock
        self._last_position: dict[str, float] = {}
        self._recent: OrderedDict[Hashable, None] = OrderedDict()
        self._recent_limit = recent_limit

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[LiveEvent]]:
        queue: asyncio.Queue[LiveEvent] = asyncio.Queue(self._queue_size)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    def publish(self, kind: str, data: Data, *, once: Hashable | None = None) -> None:
        """`once` names an event that may be heard twice (this replica's own call event, then the same one from the
        topic): among the last `recent_limit` such names, each is published once."""
        if once is not None:
            if once in self._recent:
                return
            self._recent[once] = None
            if len(self._recent) > self._recent_limit:
                self._recent.popitem(last=False)
        if not self._subscribers:
            return
        event = LiveEvent(kind, data())
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                queue.get_nowait()
                queue.put_nowait(_CLOSED)

    def position(self, unit_id: str, data: Data) -> None:
        if not self._subscribers:
            return
        now = self._clock()
        if now - self._last_position.get(unit_id, float("-inf")) < self._position_interval_s:
            return
        self._last_position[unit_id] = now
        self.publish("position", data)


def is_closing(event: LiveEvent) -> bool:
    return event is _CLOSED
