"""Dispatcher: nearest-5 latency, position updates into the index, the highest rate of POST /v1/calls within p99 50 ms.

Anchors measured in the same run on the same fleets and queries:
- brute force with numpy (haversine over every available unit, then argpartition);
- PostGIS KNN: `ORDER BY geog <-> point LIMIT 5` on a GiST index over geography, through asyncpg with a prepared
  statement (the exact reference of DESIGN.md);
- for the calls path, a bare FastAPI + asyncpg endpoint inserting one row per request (`bench/calls.py`).
The answers of all three are compared; the H3 walk must agree with both.
"""

from __future__ import annotations

import asyncio
import gc
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import h3.api.basic_int as h3
import numpy as np

from bench.environment import BenchInfra, bench_infra, rss_mb, service_process
from services.dispatcher.domain.h3_index import ByDistance
from services.dispatcher.domain.live_map import LiveMap, Position, UnitFilter
from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind
from shared.contract.schemas import UnitStatus
from shared.infra.embedded.ports import reserve_port
from shared.infra.registry_store import import_registry
from shared.settings import CommonSettings
from shared.web.service import tune_collector

CENTRE = (27.24, 111.47)
SPREAD_DEG = 0.25  # a 55 km x 50 km city region
K = 5
BUSY_SHARE = 0.3
WARMUP = 1_000
TOKEN = "bench-dispatcher"


@dataclass(frozen=True)
class Fleet:
    ids: list[str]
    lat: np.ndarray
    lon: np.ndarray
    available: np.ndarray


def make_fleet(n: int, rng: random.Random) -> Fleet:
    lat = np.array([CENTRE[0] + rng.uniform(-SPREAD_DEG, SPREAD_DEG) for _ in range(n)])
    lon = np.array([CENTRE[1] + rng.uniform(-SPREAD_DEG, SPREAD_DEG) for _ in range(n)])
    available = np.array([rng.random() >= BUSY_SHARE for _ in range(n)])
    return Fleet([f"B-{i:06d}" for i in range(n)], lat, lon, available)


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def live_map_of(fleet: Fleet, now: datetime) -> LiveMap:
    live = LiveMap()
    for unit_id in fleet.ids:
        live.upsert_unit(unit_id=unit_id, platform_id="BENCH", kind=UnitKind.PATROL_CAR, callsign="0", terminal_id=None)
    live.reindex_for_fleet()
    for i, unit_id in enumerate(fleet.ids):
        live.apply_position(unit_id, Position(now, float(fleet.lat[i]), float(fleet.lon[i])))
        if not fleet.available[i]:
            live.apply_status(unit_id, UnitStatus.DISPATCHED, "C", now)
    return live


def h3_walk(fleet: Fleet, queries: list[tuple[float, float]]) -> tuple[list[float], list[list[str]], int]:
    now = datetime.now(UTC)
    live = live_map_of(fleet, now)
    gc.freeze()  # as the dispatcher does after loading its live map
    unit_filter, ranking = UnitFilter(), ByDistance()
    timings, answers = [], []
    for lat, lon in queries:
        started = time.perf_counter()
        found = live.nearest(lat=lat, lon=lon, k=K, now=now, unit_filter=unit_filter, ranking=ranking)
        timings.append(time.perf_counter() - started)
        answers.append([f.entry.unit_id for f in found])
    return timings, answers, live.resolution


def numpy_brute_force(fleet: Fleet, queries: list[tuple[float, float]]) -> tuple[list[float], list[list[str]]]:
    index = np.nonzero(fleet.available)[0]
    phi = np.radians(fleet.lat[index])
    lam = np.radians(fleet.lon[index])
    cos_phi = np.cos(phi)
    timings, answers = [], []
    for lat, lon in queries:
        started = time.perf_counter()
        q_phi, q_lam = math.radians(lat), math.radians(lon)
        a = np.sin((phi - q_phi) / 2) ** 2 + math.cos(q_phi) * cos_phi * np.sin((lam - q_lam) / 2) ** 2
        best = np.argpartition(a, K)[:K]
        best = best[np.argsort(a[best])]
        timings.append(time.perf_counter() - started)
        answers.append([fleet.ids[index[i]] for i in best])
    return timings, answers


async def postgis_knn(
    database: str, fleet: Fleet, queries: list[tuple[float, float]]
) -> tuple[list[float], list[list[str]]]:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        await conn.execute("DROP TABLE IF EXISTS bench_units")
        await conn.execute(
            "CREATE TABLE bench_units (id text PRIMARY KEY, status text NOT NULL, lat float8, lon float8, "
            "geog geography(Point, 4326))"
        )
        await conn.copy_records_to_table(
            "bench_units",
            records=[
                (
                    fleet.ids[i],
                    "available" if fleet.available[i] else "dispatched",
                    float(fleet.lat[i]),
                    float(fleet.lon[i]),
                )
                for i in range(len(fleet.ids))
            ],
            columns=["id", "status", "lat", "lon"],
        )
        await conn.execute("UPDATE bench_units SET geog = ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography")
        await conn.execute("CREATE INDEX ON bench_units USING gist (geog)")
        await conn.execute("ANALYZE bench_units")
        knn = await conn.prepare(
            "SELECT id FROM bench_units WHERE status = 'available' "
            "ORDER BY geog <-> ST_SetSRID(ST_MakePoint($2, $1), 4326)::geography LIMIT 5"
        )
        timings, answers = [], []
        for lat, lon in queries:
            started = time.perf_counter()
            rows = await knn.fetch(lat, lon)
            timings.append(time.perf_counter() - started)
            answers.append([r["id"] for r in rows])
        return timings, answers
    finally:
        await conn.close()


def same_sets(a: list[list[str]], b: list[list[str]]) -> int:
    return sum(1 for x, y in zip(a, b, strict=True) if set(x) != set(y))


UPDATE_BLOCK = 5_000


def position_updates(fleet: Fleet, updates: int, rng: random.Random, *, driving: bool) -> tuple[float, float]:
    """Updates/s into the live map, and the anchor's for the same moves: the least a map that asks H3 for every
    update's cell pays, the cell (`latlng_to_cell` at the map's resolution) and the position stored in a dict.

    The moves either jump up to 200 m around each unit's home, or (`driving`) go 10-20 m on from the unit's last
    position, as a vehicle pinging once a second does. The live map asks H3 only when a unit leaves its cell's sure
    disk. The two are timed in alternating blocks, so both see the same machine, collector and caches. The anchor
    allocates a tuple per update, so the collector's thresholds move it: this process runs at the dispatcher's own
    (`run`), at which it went about three times as fast as at Python's defaults."""
    now = datetime.now(UTC)
    live = live_map_of(fleet, now)
    where = {unit_id: (float(fleet.lat[i]), float(fleet.lon[i])) for i, unit_id in enumerate(fleet.ids)}
    moves = []
    for i in range(updates):
        unit = rng.randrange(len(fleet.ids))
        unit_id = fleet.ids[unit]
        if driving:
            lat, lon = where[unit_id]
            step_m, heading = rng.uniform(10.0, 20.0), rng.uniform(0.0, 2 * math.pi)
            lat += step_m * math.cos(heading) / 111_195.0
            lon += step_m * math.sin(heading) / (111_195.0 * math.cos(math.radians(lat)))
            where[unit_id] = (lat, lon)
        else:
            lat = float(fleet.lat[unit]) + rng.uniform(-0.002, 0.002)
            lon = float(fleet.lon[unit]) + rng.uniform(-0.002, 0.002)
        moves.append((unit_id, Position(now + timedelta(milliseconds=i + 1), lat, lon)))
    resolution = live.resolution
    floor: dict[str, tuple[int, Position]] = {}

    def the_map(block: list[tuple[str, Position]]) -> float:
        started = time.perf_counter()
        for unit_id, position in block:
            live.apply_position(unit_id, position)
        return time.perf_counter() - started

    def the_anchor(block: list[tuple[str, Position]]) -> float:
        started = time.perf_counter()
        for unit_id, position in block:
            floor[unit_id] = (h3.latlng_to_cell(position.lat, position.lon, resolution), position)
        return time.perf_counter() - started

    spent = {the_map: 0.0, the_anchor: 0.0}
    for n, at in enumerate(range(0, updates, UPDATE_BLOCK)):
        block = moves[at : at + UPDATE_BLOCK]
        for timed in (the_map, the_anchor) if n % 2 == 0 else (the_anchor, the_map):
            spent[timed] += timed(block)
    return updates / spent[the_map], updates / spent[the_anchor]


async def forget_calls(database: str) -> None:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("TRUNCATE calls, outbox CASCADE")
    finally:
        await conn.close()


async def seed_for_service(database: str, fleet: Fleet) -> tuple[float, float]:
    """Registers the fleet through the registry import and seeds its positions; returns the import's seconds and,
    as its anchor, the seconds of one COPY of the same unit rows into a bare table of the same shape."""
    platform = Platform(id="BENCH", name="Bench", kind=PlatformKind.PATROL, lat=CENTRE[0], lon=CENTRE[1])
    units = [Unit(id=u, platform_id="BENCH", kind=UnitKind.PATROL_CAR, callsign="0") for u in fleet.ids]
    conn = await asyncpg.connect(database)
    try:
        began = time.perf_counter()
        await import_registry(conn, RegistryImport(platforms=[platform], units=units))
        imported = time.perf_counter() - began
        await conn.execute("CREATE TEMP TABLE bench_units (LIKE units INCLUDING DEFAULTS)")
        began = time.perf_counter()
        await conn.copy_records_to_table(
            "bench_units",
            records=[(u.id, u.platform_id, u.kind.value, u.callsign, None, 480) for u in units],
            columns=["id", "platform_id", "kind", "callsign", "terminal_id", "terminal_utc_offset_min"],
        )
        copied = time.perf_counter() - began
        now = datetime.now(UTC) + timedelta(minutes=10)  # stays fresh for the length of the run
        await conn.execute("DELETE FROM unit_latest_positions WHERE unit_id = ANY($1)", fleet.ids)
        await conn.copy_records_to_table(
            "unit_latest_positions",
            records=[
                (u, now, float(fleet.lat[i]), float(fleet.lon[i]), None, None, "BENCH", "0", now)
                for i, u in enumerate(fleet.ids)
            ],
            columns=["unit_id", "ts", "lat", "lon", "speed_kmh", "heading_deg", "platform_id", "h3", "received_at"],
        )
    finally:
        await conn.close()
    return imported, copied


def run(*, quick: bool) -> None:
    # The dispatcher's own collector settings, for every method timed in this process: at Python's default a young
    # collection lands inside one query in some thirty, and the p99 of a 20 µs query would measure the collector.
    tune_collector(CommonSettings.model_fields["gc_young_threshold"].default)
    rng = random.Random(20261123)
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    query_count = 2_000 if quick else 10_000
    # Every method first answers WARMUP other random calls, untimed: the steady state of a running service, with
    # PostgreSQL's buffers, the walk's ring geometry and the CPU caches as a busy night leaves them.
    queries = [
        (CENTRE[0] + rng.uniform(-SPREAD_DEG, SPREAD_DEG), CENTRE[1] + rng.uniform(-SPREAD_DEG, SPREAD_DEG))
        for _ in range(WARMUP + query_count)
    ]
    with bench_infra() as infra:
        print(
            f"bench dispatcher: nearest-{K} available, {query_count:,} random calls, {BUSY_SHARE:.0%} of units busy",
            flush=True,
        )
        rows = []
        fleets = {}
        for n in sizes:
            fleet = fleets[n] = make_fleet(n, rng)
            walk_t, walk_a, resolution = h3_walk(fleet, queries)
            numpy_t, numpy_a = numpy_brute_force(fleet, queries)
            gis_t, gis_a = asyncio.run(postgis_knn(infra.database, fleet, queries))
            walk_t, numpy_t, gis_t = walk_t[WARMUP:], numpy_t[WARMUP:], gis_t[WARMUP:]
            walk_a, numpy_a, gis_a = walk_a[WARMUP:], numpy_a[WARMUP:], gis_a[WARMUP:]
            rows.append((n, resolution, percentiles(walk_t), percentiles(numpy_t), percentiles(gis_t),
                         same_sets(walk_a, numpy_a), same_sets(walk_a, gis_a)))  # fmt: skip
            print(f"  {n:,} units measured", flush=True)
        update_count = 200_000 if not quick else 50_000
        jumps = position_updates(fleets[sizes[-1]], update_count, rng, driving=False)
        drives = position_updates(fleets[sizes[-1]], update_count, rng, driving=True)
        # The fleets above fill this process's heap; a collection pausing the load generator would count as latency.
        gc.collect()
        gc.freeze()
        from bench.calls import measure_calls, summary  # it takes its fleets from this module

        calls, calls_anchor = measure_calls(infra, fleets[10_000], rng, quick=quick)
        startup, startup_rss = measure_startup(infra, fleets[sizes[-1]])

    us = 1e6
    print()
    print(f"{'units':>8} {'res':>4} {'H3 p50/p99 µs':>16} {'numpy p50/p99 µs':>18} {'PostGIS p50/p99 µs':>20} "
          f"{'vs numpy':>9} {'vs PostGIS':>11} {'differ numpy/PostGIS':>21}")  # fmt: skip
    for n, res, walk, brute, gis, diff_numpy, diff_gis in rows:
        print(
            f"{n:>8,} {res:>4} {walk[0] * us:>7.0f} /{walk[1] * us:>6.0f} {brute[0] * us:>9.0f} /{brute[1] * us:>6.0f} "
            f"{gis[0] * us:>11.0f} /{gis[1] * us:>6.0f} {brute[1] / walk[1]:>8.1f}x {gis[1] / walk[1]:>10.1f}x "
            f"{diff_numpy:>10} / {diff_gis}"
        )
    print("ratios compare p99 latencies; 'differ' counts queries whose answer set differs from the anchor's")
    for moves, (updates, updates_floor) in (("jumps of up to 200 m", jumps), ("driving 10-20 m a ping", drives)):
        print(
            f"position updates into the index, {moves}: {updates:,.0f} updates/s ({sizes[-1]:,} units); anchor, H3 "
            f"cell + dict store per update: {updates_floor:,.0f}/s; ratio {updates / updates_floor:.2f}"
        )
    print(
        f"dispatcher start to ready with {sizes[-1]:,} units on the map (process start, rebuild, tail): "
        f"{startup:.1f} s; RSS then {startup_rss:,.0f} MB"
    )
    print(summary(calls, calls_anchor))


def measure_startup(infra: BenchInfra, fleet: Fleet) -> tuple[float, float]:
    """Seconds from starting the dispatcher process until /readyz answers, with the whole fleet to rebuild, and its
    RSS (MB) then. The calls the calls search left open are deleted first: a dispatcher loads every open call at
    start, and until session 17 the figure included the 100,000 or so the search leaves."""
    asyncio.run(forget_calls(infra.database))
    imported, copied = asyncio.run(seed_for_service(infra.database, fleet))
    print(
        f"registry import of {len(fleet.ids):,} units: {imported:.2f} s; anchor, one COPY of the same rows into a bare "
        f"table: {copied:.2f} s; ratio {imported / copied:.1f}",
        flush=True,
    )
    began = time.perf_counter()
    with service_process(infra, "dispatcher", reserve_port(), KUAIJING_API_TOKENS=f"dispatcher:{TOKEN}") as process:
        return time.perf_counter() - began, rss_mb(process.pid)
