"""`python -m bench console`: the command-centre console in headless Chromium with 2,000 units on the map, each
moving once a second (2,000 position events a second on the live feed), at wall-screen size (1920x1080).

Figure: the browser's frame times (intervals between animation frames, read from the page) while the units move.
Anchor, measured in the same run on the same page: the frame times with the same 2,000 units standing still and
the map, with the canvases of what moves over it, repainted every frame (what the renderer itself costs on this
machine: the floor any live map pays for a repaint, as it does whenever its view changes). Also printed: the page
idle. A frame over 50 ms is a stutter a dispatcher sees.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer
from playwright.async_api import Page, async_playwright

from bench.environment import BenchInfra, bench_infra, service_process
from shared.contract.codec import encode
from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind
from shared.contract.schemas import PositionRecord, Source
from shared.contract.topics import POSITIONS
from shared.geo import h3_cell
from shared.infra.embedded.ports import reserve_port
from shared.infra.registry_store import import_registry

UNITS = 2_000
CENTRE = (27.2418, 111.4672)
CHROMIUM = Path("/usr/bin/chromium")
CITY = Path(__file__).resolve().parents[1] / "services" / "simulator" / "cities" / "shaoyang.json"
TOKEN = "bench-dispatcher"
KINDS = (UnitKind.COMMAND_CAR, UnitKind.PATROL_CAR, UnitKind.PATROL_CAR, *(UnitKind.MOTORCYCLE,) * 4)


async def register(database: str, rng: random.Random) -> dict[str, tuple[float, float]]:
    """286 platforms of seven (a command car, two patrol cars, four motorcycles) spread over the city; the units'
    first places."""
    platforms: list[Platform] = []
    units: list[Unit] = []
    places: dict[str, tuple[float, float]] = {}
    for p in range(math.ceil(UNITS / len(KINDS))):
        lat, lon = CENTRE[0] + rng.uniform(-0.09, 0.09), CENTRE[1] + rng.uniform(-0.1, 0.1)
        platforms.append(
            Platform(id=f"BP-{p:03d}", name=f"平台 {p}", kind=PlatformKind.FAST_RESPONSE, lat=lat, lon=lon)
        )
        for k, kind in enumerate(KINDS):
            unit_id = f"BU-{p:03d}-{k}"
            if len(units) < UNITS:
                units.append(Unit(id=unit_id, platform_id=f"BP-{p:03d}", kind=kind, callsign=f"{p:03d}{k}"))
                places[unit_id] = (lat + rng.uniform(-0.01, 0.01), lon + rng.uniform(-0.01, 0.01))
    conn = await asyncpg.connect(database)
    try:
        await import_registry(conn, RegistryImport(platforms=platforms, units=units))
    finally:
        await conn.close()
    return places


async def move(kafka: str, places: dict[str, tuple[float, float]], stop: asyncio.Event) -> None:
    """Every unit one fix a second, a few metres on from the last, onto `kuaijing.positions`."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, linger_ms=20)
    heading = {unit: random.uniform(0, 360) for unit in places}
    try:
        await producer.start()
        while not stop.is_set():
            second = time.monotonic()
            now = datetime.now(UTC)
            for unit, (lat, lon) in places.items():
                heading[unit] = (heading[unit] + random.uniform(-20, 20)) % 360
                lat += 0.00008 * math.cos(math.radians(heading[unit]))
                lon += 0.00009 * math.sin(math.radians(heading[unit]))
                places[unit] = (lat, lon)
                record = PositionRecord(
                    unit_id=unit, ts=now, lat=lat, lon=lon, speed_kmh=32.0, heading_deg=round(heading[unit], 1),
                    platform_id=f"BP-{unit[3:6]}", h3=h3_cell(lat, lon), source=Source.HTTP,
                    received_at=now,
                )  # fmt: skip
                await producer.send(POSITIONS.name, encode(record), key=unit.encode())
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - second)))
    finally:
        await producer.stop()


async def frames(page: Page, seconds: float) -> tuple[list[float], int]:
    """Frame intervals (ms) over `seconds`, and the feed events the page received meanwhile."""
    events = await page.evaluate("window.kuaijing.events")
    await page.evaluate("window.kuaijing.frames.length = 0")
    await page.wait_for_timeout(seconds * 1_000)
    stamps: list[float] = await page.evaluate("window.kuaijing.frames.slice()")
    received = await page.evaluate("window.kuaijing.events") - events
    return [b - a for a, b in itertools.pairwise(stamps)], received


def summary(intervals: list[float]) -> tuple[float, float, float, int]:
    ordered = sorted(intervals)
    p95 = ordered[int(0.95 * (len(ordered) - 1))]
    return statistics.fmean(ordered), p95, ordered[-1], sum(1 for i in ordered if i > 50)


async def measure(infra: BenchInfra, url: str, seconds: float) -> None:
    places = await register(infra.database, random.Random(20261130))
    stop = asyncio.Event()
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1920, "height": 1080})
        # One round of fixes so every unit is on the map, then the feed goes quiet for the anchor.
        mover = asyncio.create_task(move(infra.kafka, places, stop))
        await asyncio.sleep(1.5)
        stop.set()
        await mover
        await page.goto(f"{url}/console/")
        await page.fill("#token", TOKEN)
        await page.click("#login button[type=submit]")
        await page.wait_for_function(f"window.kuaijing.live && window.kuaijing.unitsDrawn >= {UNITS}", timeout=60_000)
        await page.wait_for_timeout(2_000)
        idle, quiet = await frames(page, seconds)
        await page.evaluate("window.kuaijing.repaintEveryFrame = true")
        still, _ = await frames(page, seconds)
        await page.evaluate("window.kuaijing.repaintEveryFrame = false")
        stop.clear()
        mover = asyncio.create_task(move(infra.kafka, places, stop))
        await page.wait_for_timeout(3_000)
        moving, received = await frames(page, seconds)
        stop.set()
        await mover
        drawn = await page.evaluate("window.kuaijing.unitsDrawn")
        await browser.close()
    (a_mean, a_p95, a_max, a_long), (f_mean, f_p95, f_max, f_long) = summary(still), summary(moving)
    i_mean, i_p95, i_max, i_long = summary(idle)
    print()
    print(f"console, 1920x1080, {drawn:,} units drawn, {received / seconds:,.0f} feed events/s while moving "
          f"({quiet / seconds:,.0f} while still); {seconds:.0f} s each")  # fmt: skip
    print(f"{'':<28}{'mean ms':>9}{'p95 ms':>9}{'max ms':>9}{'frames > 50 ms':>16}")
    print(f"{'page idle':<28}{i_mean:>9.1f}{i_p95:>9.1f}{i_max:>9.1f}{i_long:>16}")
    print(f"{'anchor: repaint every frame':<28}{a_mean:>9.1f}{a_p95:>9.1f}{a_max:>9.1f}{a_long:>16}")
    print(f"{'2,000 units moving 1/s':<28}{f_mean:>9.1f}{f_p95:>9.1f}{f_max:>9.1f}{f_long:>16}")
    print(f"ratio moving/anchor: mean {f_mean / a_mean:.2f}x, p95 {f_p95 / a_p95:.2f}x (below 1: cheaper than "
          "repainting every frame)")  # fmt: skip


def run(*, quick: bool) -> None:
    print(f"bench console: {UNITS:,} units moving once a second, the console at 1920x1080", flush=True)
    with bench_infra() as infra:
        port = reserve_port()
        env = {"KUAIJING_API_TOKENS": f"dispatcher:{TOKEN}", "KUAIJING_CITY_FILE": str(CITY)}
        with service_process(infra, "dispatcher", port, **env) as dispatcher:
            asyncio.run(measure(infra, dispatcher.url, seconds=5 if quick else 15))
