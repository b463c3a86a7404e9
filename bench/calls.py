"""The calls path: the highest rate at which POST /v1/calls keeps p99 under 50 ms, beside its anchor in the same run.

The anchor is a bare FastAPI endpoint validating the same body and inserting one row per request with asyncpg
(`bench/calls_anchor.py`), its own uvicorn process as the dispatcher is. Both are driven open loop by the same
light client (`bench/open_loop.py`), each first warmed up for 90 s below its knee, untimed; then the rate doubles
from 25/s until p99 reaches the bound or a request fails, then is bisected; a step beyond the bound by its tail alone
(a pause) is run again before the rate counts as beyond. After the warm-up and after each step the dispatcher's
calls are closed, untimed (`POST /v1/calls/{id}/close`), as a night closes its calls; the anchor keeps nothing open.
`bench dispatcher` runs this too; `python -m bench calls` runs it alone (no PostGIS needed).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import replace
from functools import partial

import orjson

from bench.dispatcher import CENTRE, SPREAD_DEG, TOKEN, Fleet, make_fleet, seed_for_service
from bench.environment import BenchInfra, anchor_process, bench_infra, cpu_s, service_process
from bench.open_loop import Body, Step, highest_rate, post_each, run_at
from shared.infra.embedded.ports import reserve_port

CALLS_P99_BOUND_S = 0.050
UNITS = 10_000
WARM_UP_RATE = 200
"""Calls a second while a server warms up: below both servers' knees on the development machine."""


def run(*, quick: bool) -> None:
    rng = random.Random(20261130)
    with bench_infra() as infra:
        calls, anchor = measure_calls(infra, make_fleet(UNITS, rng), rng, quick=quick)
    print()
    print(summary(calls, anchor))


def call_body(rng: random.Random, made: list[str] | None = None) -> Body:
    """A new call at a random place of the region, its own call_id each time (kept in `made` when given)."""

    def body(_: int) -> bytes:
        call_id = f"B-{uuid.uuid4().hex}"
        if made is not None:
            made.append(call_id)
        return orjson.dumps(
            {
                "call_id": call_id,
                "lat": CENTRE[0] + rng.uniform(-SPREAD_DEG, SPREAD_DEG),
                "lon": CENTRE[1] + rng.uniform(-SPREAD_DEG, SPREAD_DEG),
                "category": "bench",
                "priority": 2,
            }
        )

    return body


async def highest_calls_rate(
    url: str, pid: int, rng: random.Random, *, seconds: float, refine: int, warm_up_s: float, closes: bool
) -> Step | None:
    """The highest rate of POST /v1/calls at which p99 stays under the bound, every answer a 201. Each step also
    tells the CPU the server process (`pid`) spent a request: its own work, not PostgreSQL's or Kafka's, and the
    figure that bounds the rate of a one-threaded server.

    Each server is first driven for `warm_up_s` below its knee, untimed: the bench starts its Kafka broker fresh, and
    a broker's JVM compiles its hot code during its first minute or two of traffic, taking CPU from the two cores the
    servers share (6-7 CPU-seconds per 20 s at 300 calls/s at first, about 2.5 after 90 s; README, "The calls path,
    session 17"). Only the dispatcher uses the broker, so without a warm-up its search ran against a broker still
    compiling while its anchor's did not. The ingest bench warms its broker the same way."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    made: list[str] = []
    body = call_body(rng, made)

    async def close_made() -> None:
        """Close the calls made so far, untimed. A night closes its calls as it goes (tens are open at a time, not
        tens of thousands); calls left open for good were what the dispatcher's collector walked in every pause
        (README, "The calls path, session 21"). Then it waits as long again: what the closing left behind (the
        relay publishing, the tail reading back) would otherwise count against the next step, as a step's backlog
        would (the first step after the warm-up's closing had a p99 of 100 ms at 25/s in two runs of two)."""
        if closes and made:
            began = time.perf_counter()
            statuses = await post_each(url, [f"/v1/calls/{call_id}/close" for call_id in made], headers=headers)
            if set(statuses) != {200}:
                print(f"    closing {len(made):,} calls was answered {dict(statuses)}", flush=True)
            await asyncio.sleep(time.perf_counter() - began)
        made.clear()

    warm = await run_at(url, "/v1/calls", body, rate=WARM_UP_RATE, seconds=warm_up_s, headers=headers)
    print(f"    warm-up, untimed: {warm.line()}", flush=True)
    await close_made()

    async def measure(rate: float) -> Step:
        used = cpu_s(pid)
        step = await run_at(url, "/v1/calls", body, rate=rate, seconds=seconds, headers=headers)
        step = replace(step, server_cpu_s=cpu_s(pid) - used)
        await close_made()
        return step

    return await highest_rate(
        measure, start=25, p99_bound_s=CALLS_P99_BOUND_S, refine=refine, report=lambda s: print(f"    {s.line()}")
    )


def measure_calls(
    infra: BenchInfra, fleet: Fleet, rng: random.Random, *, quick: bool
) -> tuple[Step | None, Step | None]:
    """The calls path's highest rate within the p99 bound, the anchor's first, then the dispatcher's (10,000 units on
    its map), each server its own process on the same PostgreSQL."""
    seconds, refine, warm_up_s = (2.0, 1, 2.0) if quick else (10.0, 3, 90.0)
    search = partial(highest_calls_rate, rng=rng, seconds=seconds, refine=refine, warm_up_s=warm_up_s)
    print(f"  POST /v1/calls, highest rate with p99 under {CALLS_P99_BOUND_S * 1e3:.0f} ms (open loop, {seconds:.0f} s "
          "a step):", flush=True)  # fmt: skip
    print("  anchor, bare FastAPI + asyncpg, one insert and commit a request:", flush=True)
    with anchor_process(infra, "bench.calls_anchor", reserve_port()) as anchor:
        anchor_best = asyncio.run(search(anchor.url, anchor.pid, closes=False))
    asyncio.run(seed_for_service(infra.database, fleet))
    print(f"  dispatcher, {len(fleet.ids):,} units on the map:", flush=True)
    with service_process(infra, "dispatcher", reserve_port(), KUAIJING_API_TOKENS=f"dispatcher:{TOKEN}") as server:
        dispatcher_best = asyncio.run(search(server.url, server.pid, closes=True))
    return dispatcher_best, anchor_best


def rate_of(step: Step | None) -> str:
    if step is None:
        return "none"
    cpu = "" if step.cpu_ms_per_request is None else f", server CPU {step.cpu_ms_per_request:.2f} ms a request"
    return f"{step.rate:,.0f}/s (p50 {step.p50_s * 1e3:.1f} ms, p99 {step.p99_s * 1e3:.1f} ms{cpu})"


def ratio_of(step: Step | None, anchor: Step | None) -> str:
    return "n/a" if step is None or anchor is None else f"{step.rate / anchor.rate:.2f}"


def summary(calls: Step | None, anchor: Step | None) -> str:
    return (
        f"POST /v1/calls, highest rate with p99 under {CALLS_P99_BOUND_S * 1e3:.0f} ms: {rate_of(calls)}; anchor "
        f"(bare FastAPI + asyncpg insert) {rate_of(anchor)}; ratio {ratio_of(calls, anchor)} (target >= 0.5)"
    )
