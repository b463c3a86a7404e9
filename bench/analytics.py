"""Analytics: the per-platform response-time report over 1,000,000 calls, beside one plain SQL query.

The anchor is the query a DBA would write by hand over the same `call_facts` table and window: per platform, the
count and `percentile_cont` p50/p90 plus mean and max of dispatch, travel and response times of arrived calls.
The report (`AnalyticsStore.report`, what `GET /v1/reports/response-times` runs) adds never-reached counts and
target compliance. Both run several times, alternating; the medians are compared.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from bench.environment import bench_infra
from services.analytics.adapters.store import AnalyticsStore, GroupBy
from shared.infra.postgres import open_pool

PLATFORMS = 33  # Shaoyang's count of fast-response platforms
TARGETS = {"key_area": 60, "central_urban": 180, "other_urban": 300, "rural": 900}
ANCHOR = """
SELECT platform_id, count(*),
       avg(dispatch_s), percentile_cont(0.5) WITHIN GROUP (ORDER BY dispatch_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY dispatch_s), max(dispatch_s),
       avg(travel_s), percentile_cont(0.5) WITHIN GROUP (ORDER BY travel_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY travel_s), max(travel_s),
       avg(response_s), percentile_cont(0.5) WITHIN GROUP (ORDER BY response_s),
       percentile_cont(0.9) WITHIN GROUP (ORDER BY response_s), max(response_s)
FROM call_facts
WHERE received_at >= $1 AND received_at < $2 AND arrived_at IS NOT NULL
GROUP BY platform_id
"""


def facts(first: int, count: int, start: datetime, rng: random.Random) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    span = 30 * 24 * 3600
    zones = list(TARGETS)
    for i in range(first, first + count):
        received = start + timedelta(seconds=rng.uniform(0, span))
        zone = rng.choice(zones)
        dispatch = rng.uniform(5, 90)
        arrived = rng.random() > 0.03
        travel = rng.lognormvariate(5.0, 0.6) if arrived else None
        response = dispatch + travel if travel is not None else None
        rows.append(
            (
                f"F-{i:07d}", received, received + timedelta(seconds=dispatch),
                None if response is None else received + timedelta(seconds=response),
                None if response is None else received + timedelta(seconds=response + 1500),
                zone, TARGETS[zone], f"U-{i % 400}", f"P-{i % PLATFORMS:02d}", dispatch, travel, response,
                None if response is None else response + 1500,
            )
        )  # fmt: skip
    return rows


async def measure(database: str, count: int, rounds: int) -> tuple[list[float], list[float]]:
    start = datetime(2026, 10, 1, tzinfo=UTC)
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("TRUNCATE call_facts")
        rng = random.Random(1)
        for offset in range(0, count, 100_000):
            await conn.copy_records_to_table(
                "call_facts",
                records=facts(offset, min(100_000, count - offset), start, rng),
                columns=[
                    "call_id", "received_at", "dispatched_at", "arrived_at", "closed_at", "zone_class", "target_s",
                    "first_unit_id", "platform_id", "dispatch_s", "travel_s", "response_s", "handling_s",
                ],
            )  # fmt: skip
            print(f"  loaded {offset + 100_000:,} calls", flush=True)
        await conn.execute("VACUUM ANALYZE call_facts")
    finally:
        await conn.close()
    end = start + timedelta(days=30)
    report_times, anchor_times = [], []
    async with open_pool(database, max_size=2) as pool:
        store = AnalyticsStore(pool)
        groups = await store.report(GroupBy.PLATFORM, start=start, end=end, tz="Asia/Shanghai")  # warm the cache
        assert len(groups) == PLATFORMS
        assert sum(g.calls for g in groups) == count
        for _ in range(rounds):
            began = time.perf_counter()
            await store.report(GroupBy.PLATFORM, start=start, end=end, tz="Asia/Shanghai")
            report_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            await pool.fetch(ANCHOR, start, end)
            anchor_times.append(time.perf_counter() - began)
    return report_times, anchor_times


def run(*, quick: bool) -> None:
    count = 100_000 if quick else 1_000_000
    rounds = 3 if quick else 5
    with bench_infra() as infra:
        print(
            f"bench analytics: per-platform report over {count:,} calls in a 30-day window, {rounds} rounds", flush=True
        )
        report, anchor = asyncio.run(measure(infra.database, count, rounds))
    r, a = statistics.median(report), statistics.median(anchor)
    print()
    print(f"{'query':<44}{'median s':>10}{'min s':>8}{'max s':>8}")
    print(f"{'report (GET /v1/reports/response-times)':<44}{r:>10.3f}{min(report):>8.3f}{max(report):>8.3f}")
    print(f"{'anchor: plain SQL with percentile_cont':<44}{a:>10.3f}{min(anchor):>8.3f}{max(anchor):>8.3f}")
    print(f"report / anchor: {r / a:.2f} (below 1 means the report is faster)")
