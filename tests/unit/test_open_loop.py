"""The rate search of the benchmarks' open-loop load: doubling, then bisecting, keeping the best rate within bound;
a step beyond it by its tail alone (a pause) is run again, and the rate is beyond only when that one is too."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from bench.open_loop import Step, highest_rate, post_each, run_at


def service_serving(
    capacity: float, *, failing_from: float = float("inf")
) -> tuple[list[float], Callable[[float], Awaitable[Step]]]:
    """A fake service: beyond `capacity` a queue grows (median and p99 past the bound); requests fail from
    `failing_from`."""
    asked: list[float] = []

    async def measure(rate: float) -> Step:
        asked.append(rate)
        p50, p99 = (0.002, 0.010) if rate <= capacity else (0.200, 0.500)
        failures = Counter({503: 3}) if rate >= failing_from else Counter()
        return Step(rate, int(rate), p50, p99, failures)

    return asked, measure


async def no_settling(_: float) -> None:
    """The real pause lets a service drain between steps; a fake has nothing to drain."""


async def test_the_rate_doubles_until_beyond_the_bound_then_is_bisected() -> None:
    asked, measure = service_serving(300)
    best = await highest_rate(measure, start=25, p99_bound_s=0.050, refine=3, report=lambda _: None, settle=no_settling)

    assert asked == [25, 50, 100, 200, 400, 300, 350, 325], "a queue (the median beyond the bound too) is not retried"
    assert best is not None
    assert best.rate == 300


async def test_a_failed_request_disqualifies_a_step_whatever_its_latency() -> None:
    asked, measure = service_serving(10_000, failing_from=150)
    best = await highest_rate(measure, start=25, p99_bound_s=0.050, refine=2, report=lambda _: None, settle=no_settling)

    assert asked == [25, 50, 100, 200, 150, 125], "failed requests are not a pause: not retried"
    assert best is not None
    assert best.rate == 125


async def test_no_rate_within_the_bound_is_no_answer() -> None:
    asked, measure = service_serving(1)
    best = await highest_rate(measure, start=25, p99_bound_s=0.050, refine=4, report=lambda _: None, settle=no_settling)

    assert best is None
    assert asked[0] == 25
    assert all(rate < 25 for rate in asked[1:])


async def test_one_pause_beyond_the_bound_does_not_decide_the_search() -> None:
    asked, steady = service_serving(300)
    paused: set[float] = set()

    async def measure(rate: float) -> Step:
        step = await steady(rate)
        if rate == 200 and rate not in paused:  # one collector pause, or the machine's neighbour, in the first try
            paused.add(rate)
            return Step(rate, int(rate), 0.002, 0.058, Counter())
        return step

    best = await highest_rate(measure, start=25, p99_bound_s=0.050, refine=3, report=lambda _: None, settle=no_settling)

    assert asked == [25, 50, 100, 200, 200, 400, 300, 350, 325]
    assert best is not None
    assert best.rate == 300


def test_a_step_names_its_failures_by_status() -> None:
    line = Step(400, 4_000, 0.0021, 0.0805, Counter({503: 2, 0: 1})).line()
    assert "p99    80.5 ms" in line
    assert "3 failed (no connection: 1) (503: 2)" in line


def test_a_step_with_the_servers_cpu_says_it_per_request() -> None:
    step = Step(400, 4_000, 0.0021, 0.0105, Counter(), server_cpu_s=10.8)
    assert step.cpu_ms_per_request == pytest.approx(2.7)
    assert step.line().endswith(", server CPU 2.70 ms a request")
    assert Step(400, 4_000, 0.0021, 0.0105, Counter()).cpu_ms_per_request is None


@contextlib.asynccontextmanager
async def http_server(answer: Callable[[bytes], bytes]) -> AsyncIterator[tuple[str, list[int]]]:
    """A minimal HTTP/1.1 server on kept-alive connections: `answer(request head)` is the status line's tail (b"201
    Created"). Yields its URL and a list that grows by one per connection accepted."""
    accepted: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(asyncio.IncompleteReadError):  # the client closed its connection
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0]))
                writer.write(b"HTTP/1.1 " + answer(head) + b"\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", accepted
    finally:
        server.close()


async def test_the_load_generator_collects_no_garbage_while_it_drives_a_step() -> None:
    """A collection in the load generator would count as the server's latency; after the step it collects again."""
    seen: list[bool] = []

    def answer(_: bytes) -> bytes:
        seen.append(gc.isenabled())
        return b"201 Created"

    async with http_server(answer) as (url, _):
        step = await run_at(url, "/v1/calls", lambda i: b"{}", rate=200, seconds=0.1, headers={})
    assert (step.sent, step.failures.total()) == (20, 0)
    assert seen == [False] * 20
    assert gc.isenabled()


async def test_post_each_posts_once_to_every_path_and_counts_the_answers() -> None:
    """What `bench calls` closes its calls with between steps: every path once, over a few kept-alive connections."""
    paths: list[bytes] = []

    def answer(head: bytes) -> bytes:
        path = head.split(b" ")[1]
        paths.append(path)
        return b"404 Not Found" if path.endswith(b"/none/close") else b"200 OK"

    wanted = [f"/v1/calls/C-{i}/close" for i in range(100)] + ["/v1/calls/none/close"]
    async with http_server(answer) as (url, accepted):
        statuses = await post_each(url, wanted, headers={}, concurrency=4)
    assert statuses == Counter({200: 100, 404: 1})
    assert sorted(paths) == sorted(p.encode() for p in wanted)
    assert len(accepted) <= 4
