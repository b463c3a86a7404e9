"""Analytics: the response-time report and the dashboard over 1,000,000 calls, each beside an anchor.

The calls are spread over the last seven days, the dashboard's window.
1. The report. Its anchor is the query a DBA would write by hand over the same `call_facts` table and window: per
   platform, the count and `percentile_cont` p50/p90 plus mean and max of dispatch, travel and response times of
   arrived calls. The report (`AnalyticsStore.report`, what `GET /v1/reports/response-times` runs) adds
   never-reached counts and target compliance. Both run several times, alternating; the medians are compared.
2. The dashboard as ten wall screens load it, against the analytics service running as its own process: each
   screen asks for `GET /` every 2 s (a real one every 30 s: the load is compressed fifteen times), and two
   consoles ask for the default report (the last 24 hours by platform) every 5 s. Latency counts from the instant a
   request was due. The anchor is what one request cost before the shared snapshot: one computation of the page
   (its queries and the HTML), in this process, over the same calls.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from bench.environment import BenchInfra, bench_infra, rss_mb, service_process
from services.analytics.adapters.store import AnalyticsStore, GroupBy
from services.analytics.api import dashboard_page
from shared.infra.embedded.ports import reserve_port
from shared.infra.postgres import open_pool
from shared.percentiles import percentile

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


TOKEN = "bench-viewer"
TZ = "Asia/Shanghai"
SCREENS, SCREEN_EVERY_S = 10, 2.0
CONSOLES, CONSOLE_EVERY_S = 2, 5.0


def facts(first: int, count: int, start: datetime, span: float, rng: random.Random) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
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


async def load(database: str, count: int, start: datetime, span: float) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("TRUNCATE call_facts")
        rng = random.Random(1)
        for offset in range(0, count, 100_000):
            await conn.copy_records_to_table(
                "call_facts",
                records=facts(offset, min(100_000, count - offset), start, span, rng),
                columns=[
                    "call_id", "received_at", "dispatched_at", "arrived_at", "closed_at", "zone_class", "target_s",
                    "first_unit_id", "platform_id", "dispatch_s", "travel_s", "response_s", "handling_s",
                ],
            )  # fmt: skip
            print(f"  loaded {min(offset + 100_000, count):,} calls", flush=True)
        await conn.execute("VACUUM ANALYZE call_facts")
    finally:
        await conn.close()


async def report_rounds(
    database: str, count: int, start: datetime, end: datetime, rounds: int
) -> tuple[list[float], list[float], list[float]]:
    """The report and its anchor, alternating; then one computation of the dashboard page per round."""
    report_times, anchor_times, page_times = [], [], []
    async with open_pool(database, max_size=8) as pool:
        store = AnalyticsStore(pool)
        groups = await store.report(GroupBy.PLATFORM, start=start, end=end, tz=TZ)  # warm the cache
        assert len(groups) == PLATFORMS
        assert sum(g.calls for g in groups) == count
        for _ in range(rounds):
            began = time.perf_counter()
            await store.report(GroupBy.PLATFORM, start=start, end=end, tz=TZ)
            report_times.append(time.perf_counter() - began)
            began = time.perf_counter()
            await pool.fetch(ANCHOR, start, end)
            anchor_times.append(time.perf_counter() - began)
        for _ in range(rounds):
            began = time.perf_counter()
            await dashboard_page(store, TZ)
            page_times.append(time.perf_counter() - began)
    return report_times, anchor_times, page_times


async def readers(url: str, seconds: float) -> tuple[list[float], list[float], int]:
    """Ten screens and two consoles for `seconds`; latencies of the dashboard and of the report, and failures."""
    dashboard: list[float] = []
    report: list[float] = []
    failed = 0
    headers = {"Authorization": f"Bearer {TOKEN}"}

    async def reader(path: str, every_s: float, offset_s: float, into: list[float], client: httpx.AsyncClient) -> None:
        nonlocal failed
        began = time.perf_counter()
        due = began + offset_s
        while due < began + seconds:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            response = await client.get(path)
            into.append(time.perf_counter() - due)
            failed += response.status_code != 200
            due += every_s

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        await client.get("/")  # the first snapshot, which the first screens of a fresh replica wait for
        await asyncio.gather(
            *(reader("/", SCREEN_EVERY_S, i * SCREEN_EVERY_S / SCREENS, dashboard, client) for i in range(SCREENS)),
            *(
                reader("/v1/reports/response-times", CONSOLE_EVERY_S, i * CONSOLE_EVERY_S / CONSOLES, report, client)
                for i in range(CONSOLES)
            ),
        )
    return dashboard, report, failed


def snapshots_taken(url: str) -> int:
    metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    line = next(x for x in metrics.splitlines() if x.startswith("kuaijing_analytics_dashboard_snapshot_seconds_count"))
    return int(float(line.rsplit(" ", 1)[1]))


def screens(infra: BenchInfra, seconds: float) -> tuple[list[float], list[float], int, int, float]:
    with service_process(infra, "analytics", reserve_port(), KUAIJING_API_TOKENS=f"viewer:{TOKEN}") as process:
        dashboard, report, failed = asyncio.run(readers(process.url, seconds))
        return dashboard, report, failed, snapshots_taken(process.url), rss_mb(process.pid)


def quantile(values: list[float], fraction: float) -> float:
    value = percentile(values, fraction)
    assert value is not None, "no requests measured"
    return value


def run(*, quick: bool) -> None:
    count = 100_000 if quick else 1_000_000
    rounds = 3 if quick else 5
    seconds = 20.0 if quick else 60.0
    now = datetime.now(UTC)
    start, span = now - timedelta(days=7) + timedelta(minutes=5), 7 * 24 * 3600 - 600.0
    end = start + timedelta(seconds=span)
    with bench_infra() as infra:
        print(f"bench analytics: {count:,} calls over the last 7 days, {PLATFORMS} platforms", flush=True)
        asyncio.run(load(infra.database, count, start, span))
        print(
            f"  the report and its anchor, {rounds} rounds each; the dashboard page computed {rounds} times", flush=True
        )
        report, anchor, page = asyncio.run(report_rounds(infra.database, count, start, end, rounds))
        print(
            f"  {SCREENS} screens (GET / every {SCREEN_EVERY_S:.0f} s) and {CONSOLES} consoles (the report every "
            f"{CONSOLE_EVERY_S:.0f} s) for {seconds:.0f} s ...",
            flush=True,
        )
        dashboard, consoles, failed, taken, rss = screens(infra, seconds)
    r, a = statistics.median(report), statistics.median(anchor)
    print()
    print(f"{'query':<44}{'median s':>10}{'min s':>8}{'max s':>8}")
    print(f"{'report (GET /v1/reports/response-times)':<44}{r:>10.3f}{min(report):>8.3f}{max(report):>8.3f}")
    print(f"{'anchor: plain SQL with percentile_cont':<44}{a:>10.3f}{min(anchor):>8.3f}{max(anchor):>8.3f}")
    print(f"report / anchor: {r / a:.2f} (below 1 means the report is faster)")
    once = statistics.median(page)
    p99 = quantile(dashboard, 0.99)
    print()
    print(
        f"dashboard (GET /), {SCREENS} screens, {len(dashboard)} requests: p50 {quantile(dashboard, 0.5) * 1e3:.1f} "
        f"ms, p99 {p99 * 1e3:.1f} ms, max {max(dashboard) * 1e3:.1f} ms; {failed} failed; {taken} snapshots taken"
    )
    print(f"anchor: one computation of the page, no snapshot: median {once * 1e3:.0f} ms (min {min(page) * 1e3:.0f})")
    print(f"dashboard p99 / anchor: {p99 / once:.3f} (goal: p99 under 200 ms)")
    print(
        f"report under the same load, {len(consoles)} requests: p50 {quantile(consoles, 0.5) * 1e3:.0f} ms, "
        f"p99 {quantile(consoles, 0.99) * 1e3:.0f} ms"
    )
    print(f"analytics RSS after the screens: {rss:.0f} MB")
