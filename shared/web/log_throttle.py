"""A logging filter that keeps a library's retry storm readable: while the broker is down, aiokafka logs an error per
retry per client (hundreds a second across the services), burying the lines that say what actually happened.

For loggers under the given prefixes, per logger and message template, the first `burst` records of each
`window_s` pass; the rest are counted, and the next record that passes says how many were held back. Installed on
the handlers, since a logger's own filters do not see its children's records."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class Throttle(logging.Filter):
    def __init__(
        self,
        prefixes: tuple[str, ...],
        *,
        burst: int = 5,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self._prefixes, self._burst, self._window_s, self._clock = prefixes, burst, window_s, clock
        self._windows: dict[tuple[str, str], tuple[float, int, int]] = {}
        """(logger, template) -> (window start, records passed in it, records held back since the last passed)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        start, passed, held = self._windows.get(key, (now, 0, 0))
        if now - start >= self._window_s:
            start, passed = now, 0
        if passed >= self._burst:
            self._windows[key] = (start, passed, held + 1)
            return False
        self._windows[key] = (start, passed + 1, 0)
        if held:
            record.msg = f"{record.msg} [{held} similar messages held back]"
        return True


def throttle_libraries(*prefixes: str) -> None:
    """A `Throttle` for loggers under `prefixes` on every handler of the root logger (once)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Throttle) for f in handler.filters):
            handler.addFilter(Throttle(prefixes))
