"""Open-loop HTTP load and the search for the highest rate a service serves within a p99 bound.

Requests are sent at fixed instants whatever the service's pace (open loop), and each latency counts from the
instant its request was due, so a service falling behind shows as latency rather than as a slower load. The client
writes raw HTTP/1.1 on kept-alive connections: httpx costs about a millisecond of CPU a request, which on two cores
shared with the service under test would measure the load generator more than the service.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from shared.percentiles import percentile

Body = Callable[[int], bytes]
"""The JSON body of the i-th request of a run."""


@dataclass(frozen=True)
class Step:
    rate: float
    sent: int
    p50_s: float
    p99_s: float
    failures: Counter[int]
    """Answers other than the expected one, by status (0: the connection failed)."""
    server_cpu_s: float | None = None
    """CPU seconds the server process used during the step, when the caller measured them (`bench.calls`)."""

    def within(self, p99_bound_s: float) -> bool:
        return not self.failures and self.p99_s < p99_bound_s

    def paused(self, p99_bound_s: float) -> bool:
        """Beyond the bound by its tail alone (every answer right, the median within): what one pause looks like; a
        queue or an overload moves the median or fails requests too."""
        return not self.failures and self.p50_s < p99_bound_s <= self.p99_s

    def line(self) -> str:
        return (
            f"{self.rate:>7,.0f}/s: p50 {self.p50_s * 1e3:6.1f} ms, p99 {self.p99_s * 1e3:7.1f} ms, "
            f"{self.sent:,} sent, {self.failures.total()} failed"
            + "".join(f" ({status or 'no connection'}: {n})" for status, n in sorted(self.failures.items()))
            + ("" if self.cpu_ms_per_request is None else f", server CPU {self.cpu_ms_per_request:.2f} ms a request")
        )

    @property
    def cpu_ms_per_request(self) -> float | None:
        return None if self.server_cpu_s is None or not self.sent else self.server_cpu_s * 1e3 / self.sent


class _Connections:
    """Kept-alive connections to one server, opened as needed up to `limit`; a request waits for a free one."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self._host, self._port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._slots = asyncio.Semaphore(limit)

    async def exchange(self, request: bytes) -> int:
        """Send one request, read the whole response, return its status (0 when the connection failed). A kept-alive
        connection the server has closed meanwhile (uvicorn closes one idle for 5 s) is replaced, as HTTP clients do."""
        async with self._slots:
            while self._idle:
                status = await self._on(*self._idle.pop(), request)
                if status is not None:
                    return status
            return await self._on(*await asyncio.open_connection(self._host, self._port), request) or 0

    async def _on(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int | None:
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(_content_length(head))
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return None
        self._idle.append((reader, writer))
        return int(head[9:12])

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _post(host: str, path: str, head: str, payload: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{head}"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


def _headers(headers: dict[str, str]) -> str:
    return "".join(f"{k}: {v}\r\n" for k, v in headers.items())


async def post_each(
    url: str, paths: Sequence[str], *, headers: dict[str, str], payload: bytes = b"{}", concurrency: int = 32
) -> Counter[int]:
    """POST `payload` to each path as fast as `concurrency` connections go, untimed: what a bench does between its
    steps (`bench.calls` closes the calls a step opened). Counts the answers by status (0: no connection)."""
    host, _, port = url.removeprefix("http://").partition(":")
    head = _headers(headers)
    connections = _Connections(host, int(port), limit=concurrency)
    statuses: Counter[int] = Counter()

    async def one(path: str) -> None:
        statuses[await connections.exchange(_post(host, path, head, payload))] += 1

    try:
        await asyncio.gather(*(one(path) for path in paths))
    finally:
        connections.close()
    return statuses


async def run_at(
    url: str, path: str, body: Body, *, rate: float, seconds: float, headers: dict[str, str], created: int = 201
) -> Step:
    """POST `body(i)` to `path` at `rate` a second for `seconds`; every answer other than `created` is a failure."""
    host, _, port = url.removeprefix("http://").partition(":")
    head = _headers(headers)
    connections = _Connections(host, int(port), limit=256)
    latencies: list[float] = []
    failures: Counter[int] = Counter()

    async def one(due: float, payload: bytes) -> None:
        status = await connections.exchange(_post(host, path, head, payload))
        latencies.append(time.perf_counter() - due)
        if status != created:
            failures[status] += 1

    count = max(1, int(rate * seconds))
    bodies = [body(i) for i in range(count)]
    # The load generator's own collections would count as the server's latency: every request is a task kept until
    # the step ends, and its full collections took up to 142 ms in a search (session 20). None run during a step.
    collecting = gc.isenabled()
    gc.disable()
    try:
        tasks = []
        start = time.perf_counter() + 0.05
        for i, payload in enumerate(bodies):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, payload)))
        await asyncio.gather(*tasks)
    finally:
        connections.close()
        if collecting:
            gc.enable()
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    assert p50 is not None, "at least one request is sent"
    assert p99 is not None
    return Step(rate, len(latencies), p50, p99, failures)


async def highest_rate(
    measure: Callable[[float], Awaitable[Step]],
    *,
    start: float,
    p99_bound_s: float,
    refine: int,
    report: Callable[[Step], None],
    settle: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> Step | None:
    """Double the rate from `start` until p99 reaches the bound (or a request fails), then bisect `refine` times
    between the last rate within it and the first beyond; returns the best step within the bound. `settle(seconds)`
    pauses between steps. A step beyond the bound by its tail alone (`Step.paused`) is run again once the backlog has
    drained, and the rate counts as beyond only if that fails too: on a shared 2-core machine one pause of a few
    tens of milliseconds in a step puts its p99 over, and one step decides a search (the calls anchor's knee read
    900/s, then 188/s, in two runs an hour apart, the second failing 200/s by one pause: p50 5.6 ms, p99 58 ms)."""
    best: Step | None = None
    rate = start
    while True:
        step = await _measured(measure, rate, p99_bound_s, settle, report)
        if not step.within(p99_bound_s):
            break
        best, rate = step, rate * 2
    low, high = (best.rate if best else 0.0), rate
    for _ in range(refine):
        middle = (low + high) / 2
        if best is None and middle < start / 8:
            break
        step = await _measured(measure, middle, p99_bound_s, settle, report)
        if step.within(p99_bound_s):
            best, low = step, middle
        else:
            high = middle
    return best


async def _measured(
    measure: Callable[[float], Awaitable[Step]],
    rate: float,
    p99_bound_s: float,
    settle: Callable[[float], Awaitable[None]],
    report: Callable[[Step], None],
) -> Step:
    """A step at `rate`, and a second one when the first looks paused; each reported; the last returned."""
    for _ in range(2):
        began = time.perf_counter()
        step = await measure(rate)
        report(step)
        # A step within the bound leaves little behind; one beyond it leaves a backlog (queued requests, records
        # still to publish and consume) that would count against the next step: wait as long as it ran.
        await settle(1.0 if step.within(p99_bound_s) else time.perf_counter() - began)
        if not step.paused(p99_bound_s):
            break
    return step
