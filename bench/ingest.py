"""Ingest throughput: HTTP batches of 500 and the raw-topic path, each beside a bare aiokafka producer.

The anchor is the ceiling a Python service on this machine can reach: an AIOKafkaProducer (acks=all, idempotent,
linger 5 ms) sending the same ping bytes to the same broker, with no validation and no HTTP. Ingest runs as its
own process (`kuaijing serve ingest`), as in production; the load generator shares the machine's two cores.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from bench.environment import BenchInfra, bench_infra, rss_mb, service_process
from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind
from shared.contract.topics import POSITIONS, TELEMETRY_RAW
from shared.infra.embedded.ports import reserve_port
from shared.infra.postgres import connect
from shared.infra.registry_store import import_registry

UNITS = 1_000
"""Units that ping: the throughput figures' fleet."""
REGISTERED = 100_000
"""Units in the registry, all in ingest's unit directory: its RSS is printed at a city-and-more fleet's size."""
BATCH = 500
ROUNDS = 3
"""Each path and its anchor run this many times, alternating; the medians are compared (two shared cores and the
broker make one run of a few seconds vary by a tenth either way)."""
HTTP_CLIENTS = 16
"""Senders posting at once, each waiting for its 202 (which waits for Kafka's acks=all) before its next body: a
throughput figure is taken at saturation, as the anchor's is. With 4, each request's round trip bounded the rate and
ingest was idle a third of the time (py-spy, 2026-12-01): 0.75-0.85 of the anchor where 16 gave 0.99-1.05."""
TOKEN = "bench-terminal"


def make_pings(count: int, unit_ids: list[str]) -> list[bytes]:
    start = datetime.now(UTC) - timedelta(hours=6)
    return [
        orjson.dumps(
            {
                "kind": "position", "unit_id": unit_ids[i % len(unit_ids)],
                "ts": (start + timedelta(milliseconds=i)).isoformat(), "lat": 27.2 + (i % 997) * 1e-4,
                "lon": 111.4 + (i % 991) * 1e-4, "speed_kmh": 35.0, "heading_deg": 90.0, "gnss": "BDS+GPS",
                "satellites": 14, "hdop": 0.9, "seq": i,
            }
        )
        for i in range(count)
    ]  # fmt: skip


async def register_units(database: str) -> list[str]:
    """Registers `REGISTERED` units; returns the ids of the first `UNITS`, the ones that ping."""
    platform = Platform(id="BENCH", name="Bench platform", kind=PlatformKind.PATROL, lat=27.2, lon=111.4)
    units = [
        Unit(id=f"B-{i:06d}", platform_id="BENCH", kind=UnitKind.PATROL_CAR, callsign=str(i)) for i in range(REGISTERED)
    ]
    conn = await connect(database)
    try:
        await import_registry(conn, RegistryImport(platforms=[platform], units=units))
    finally:
        await conn.close()
    return [u.id for u in units[:UNITS]]


async def bare_producer(kafka: str, topic: str, pings: list[bytes]) -> float:
    """Pings/s of an AIOKafkaProducer alone sending these bytes (the anchor)."""
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
    )
    try:
        await producer.start()
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=orjson.loads(value)["unit_id"].encode()) for value in pings]
        await asyncio.gather(*futures)
        return len(pings) / (time.perf_counter() - started)
    finally:
        await producer.stop()


async def http_path(url: str, pings: list[bytes]) -> float:
    bodies = [b"[" + b",".join(pings[i : i + BATCH]) + b"]" for i in range(0, len(pings), BATCH)]
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    accepted = 0

    async def client() -> None:
        nonlocal accepted
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as http:
            while not queue.empty():
                response = await http.post("/v1/telemetry", content=queue.get_nowait())
                response.raise_for_status()
                accepted += response.json()["accepted"]

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(HTTP_CLIENTS)))
    elapsed = time.perf_counter() - started
    if accepted != len(pings):
        raise RuntimeError(f"HTTP path accepted {accepted} of {len(pings)}")
    return len(pings) / elapsed


async def committed(kafka: str, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    try:
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        except KafkaError:
            return 0  # the group has not joined yet
        return sum(max(0, meta.offset) for tp, meta in offsets.items() if tp.topic == TELEMETRY_RAW.name)
    finally:
        await admin.close()


async def raw_path_rate(kafka: str, group: str, total: int) -> float:
    """Pings/s from the group's first commit to its last, so start-up and group join are not counted."""
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        done = await committed(kafka, group)
        now = time.perf_counter()
        if done and first is None:
            first = (now, done)
        if done >= total and first is not None:
            if now == first[0]:
                raise RuntimeError("everything was committed in one batch; raise the volume")
            return (total - first[1]) / (now - first[0])
        await asyncio.sleep(0.05)
    raise RuntimeError("raw path did not finish in 600 s")


def run(*, quick: bool) -> None:
    count = 20_000 if quick else 200_000
    rounds = 1 if quick else ROUNDS
    with bench_infra() as infra:
        unit_ids = asyncio.run(register_units(infra.database))
        pings = make_pings(count, unit_ids)
        print(
            f"bench ingest: {count:,} position pings over {UNITS:,} units ({REGISTERED:,} registered), HTTP "
            f"batches of {BATCH} from {HTTP_CLIENTS} senders; after a warm-up, {rounds} round(s) of each path beside "
            "its anchor",
            flush=True,
        )
        # Untimed: a fresh broker is slower for its first hundred thousand records (its JIT, new segments).
        asyncio.run(bare_producer(infra.kafka, POSITIONS.name, pings))
        http, http_anchor, raw, raw_anchor = [], [], [], []
        for _ in range(rounds):
            http_anchor.append(asyncio.run(bare_producer(infra.kafka, POSITIONS.name, pings)))
            rate, http_rss = measure_http(infra, pings)
            http.append(rate)
        for _ in range(rounds):
            raw_anchor.append(asyncio.run(bare_producer(infra.kafka, TELEMETRY_RAW.name, pings)))
            rate, raw_rss = measure_raw(infra, count)
            raw.append(rate)
    print()
    print(f"{'path (median of rounds)':<34}{'pings/s':>12}{'anchor pings/s':>18}{'ratio':>8}   rounds (ratio)")
    for name, rates, anchors in (
        ("HTTP POST /v1/telemetry (x500)", http, http_anchor),
        ("kuaijing.telemetry.raw consumer", raw, raw_anchor),
    ):
        rate, anchor = statistics.median(rates), statistics.median(anchors)
        each = ", ".join(f"{r:,.0f}/{a:,.0f} ({r / a:.2f})" for r, a in zip(rates, anchors, strict=True))
        print(f"{name:<34}{rate:>12,.0f}{anchor:>18,.0f}{rate / anchor:>8.2f}   {each}")
    print("anchor: bare AIOKafkaProducer (acks=all, idempotent) sending the same bytes to the same broker")
    print(
        f"ingest RSS after its {count:,} pings, {REGISTERED:,} units in its directory: {http_rss:,.0f} MB (HTTP), "
        f"{raw_rss:,.0f} MB (raw topic)"
    )


def measure_http(infra: BenchInfra, pings: list[bytes]) -> tuple[float, float]:
    """Pings/s over HTTP, and the ingest process's RSS (MB) once they are in."""
    env = {"KUAIJING_API_TOKENS": f"terminal:{TOKEN}", "KUAIJING_RAW_CONSUMER_ENABLED": "false",
           "KUAIJING_HISTORY_WRITER_ENABLED": "false"}  # fmt: skip
    with service_process(infra, "ingest", reserve_port(), **env) as process:
        return asyncio.run(http_path(process.url, pings)), rss_mb(process.pid)


def measure_raw(infra: BenchInfra, total: int) -> tuple[float, float]:
    """Pings/s through the raw-topic consumer, and the ingest process's RSS (MB) once they are through."""
    group = f"bench-raw-{uuid.uuid4().hex[:8]}"
    env = {"KUAIJING_API_TOKENS": f"terminal:{TOKEN}", "KUAIJING_RAW_GROUP": group,
           "KUAIJING_HISTORY_WRITER_ENABLED": "false"}  # fmt: skip
    with service_process(infra, "ingest", reserve_port(), **env) as process:
        return asyncio.run(raw_path_rate(infra.kafka, group, total)), rss_mb(process.pid)
