"""`python -m bench soak [--minutes N] [--quick]`: the whole stack under a mixed load, as a busy night would load it.

Load, stated: 5,000 units over HTTP through 50 relays (each posts its 100 units' pings every 2 s: 2,500 pings/s),
1,000 JT/T 808 terminals over TCP (a 0x0200 every 10 s each: 100 pings/s), a 110 call a second (auto-assigned, the
unit cleared 20 s later), and a response-time report every 10 s. Every client resends what was not acknowledged.

Printed every minute (every 15 s with `--quick`): pings/s acknowledged, ingest's acknowledgement p99 (HTTP 202 and
JT/T 808 0x8001), ping-to-live-map p99 (from ingest's 202 until the dispatcher's SSE feed shows that ping, for a
probe of 100 units), POST /v1/calls and report p99, consumer lag per group, RSS per process. The last third of the
run raises the HTTP rate by half every line (a line every 20 s there, 5 s with `--quick`) until the lag grows or
acknowledgements fall behind. At the end: pings lost (acknowledged but not in history) and the highest rate
sustained, beside a bare producer measured in the same run. Process sizes come from /proc (Linux).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.environment import BenchInfra, bench_infra, rss_mb, service_process
from bench.ingest import bare_producer, make_pings
from shared import jt808
from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind
from shared.contract.topics import POSITIONS
from shared.infra.embedded.ports import reserve_port
from shared.infra.postgres import connect
from shared.infra.registry_store import import_registry
from shared.jt808 import MessageId, Result

HTTP_UNITS, RELAYS, PING_EVERY_S = 5_000, 50, 2.0
TERMINALS, TERMINAL_EVERY_S = 1_000, 10.0
CALL_EVERY_S, CLEAR_AFTER_S, REPORT_EVERY_S = 1.0, 20.0, 10.0
PROBES = 100
RAMP_FACTOR = 1.5
TOKENS = {"terminal": "soak-terminal", "dispatcher": "soak-dispatcher", "viewer": "soak-viewer"}


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@dataclass
class Window:
    """What happened since the last line was printed."""

    began: float = field(default_factory=time.monotonic)
    pings: int = 0
    http_ack_s: list[float] = field(default_factory=list)
    jt808_ack_s: list[float] = field(default_factory=list)
    live_s: list[float] = field(default_factory=list)
    call_s: list[float] = field(default_factory=list)
    report_s: list[float] = field(default_factory=list)
    refused: int = 0


@dataclass
class Memory:
    """Each process's RSS (MB) at every line of the steady phase, and the pings acknowledged by its last line: a
    service that leaks grows from line to line under the same load."""

    steady: dict[str, list[float]] = field(default_factory=dict)
    pings: int = 0

    def note(self, name: str, mb: float) -> None:
        self.steady.setdefault(name, []).append(mb)

    def table(self) -> list[str]:
        lines = [f"{'process':<12}{'first MB':>10}{'last MB':>10}{'growth':>18}"]
        for name, values in self.steady.items():
            first, last = values[0], values[-1]
            lines.append(
                f"{name:<12}{first:>10,.0f}{last:>10,.0f}{last - first:>+10,.0f} MB {(last - first) / first:>+6.1%}"
            )
        return lines


@dataclass
class Soak:
    ingest: str
    jt808_port: int
    dispatcher: str
    analytics: str
    http_units: list[str]
    terminals: list[tuple[str, str]]
    interval_s: float = PING_EVERY_S
    window: Window = field(default_factory=Window)
    acknowledged: int = 0
    memory: Memory = field(default_factory=Memory)
    acked_at: dict[tuple[str, int], float] = field(default_factory=dict)
    stopping: bool = False

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[role]}"}

    async def relay(self, units: list[str], rng: random.Random) -> None:
        """Posts its units' pings every `interval_s` (which the ramp shortens), resending a batch until 202."""
        probes = set(self.http_units[:PROBES])
        async with httpx.AsyncClient(base_url=self.ingest, headers=self.headers("terminal"), timeout=30) as client:
            await asyncio.sleep(rng.uniform(0, self.interval_s))
            while not self.stopping:
                started = time.monotonic()
                now = datetime.now(UTC)
                ms = int(now.timestamp() * 1000)
                body = orjson.dumps([
                    {"kind": "position", "unit_id": u, "ts": now.isoformat(), "lat": 27.15 + rng.random() * 0.2,
                     "lon": 111.35 + rng.random() * 0.2, "speed_kmh": 30.0}
                    for u in units
                ])  # fmt: skip
                while not self.stopping:
                    sent = time.monotonic()
                    with contextlib.suppress(httpx.HTTPError):
                        if (await client.post("/v1/telemetry", content=body)).status_code == 202:
                            acked = time.monotonic()
                            self.window.http_ack_s.append(acked - sent)
                            self.window.pings += len(units)
                            self.acknowledged += len(units)
                            for u in probes.intersection(units):
                                self.acked_at[(u, ms)] = acked
                            break
                    self.window.refused += 1
                    await asyncio.sleep(0.5)
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))

    async def terminal(self, phone: str, rng: random.Random) -> None:
        """Registers, authenticates and reports every `TERMINAL_EVERY_S`, reconnecting when the connection fails."""
        await asyncio.sleep(rng.uniform(0, TERMINAL_EVERY_S))
        code = ""
        while not self.stopping:
            try:
                async with _Link(self.jt808_port, phone) as link:
                    if not code:
                        registration = jt808.Registration(43, 501, "KJ", "KJ-S1", "S0001", 1, "湘E00000")
                        answer = await link.ask(MessageId.REGISTER, jt808.encode_registration(registration, wide=False))
                        code = answer.body[3:].decode()
                    auth = jt808.encode_authentication(jt808.Authentication(code), wide=False)
                    if await link.result(MessageId.AUTHENTICATE, auth) != Result.SUCCESS:
                        code = ""
                        raise ConnectionError("authentication refused")
                    while not self.stopping:
                        started = time.monotonic()
                        body = jt808.encode_location(_location(datetime.now(UTC), rng))
                        if await link.result(MessageId.LOCATION, body) == Result.SUCCESS:
                            self.window.jt808_ack_s.append(time.monotonic() - started)
                            self.window.pings += 1
                            self.acknowledged += 1
                        await asyncio.sleep(max(0.0, TERMINAL_EVERY_S - (time.monotonic() - started)))
            except (OSError, TimeoutError, jt808.Jt808Error):
                self.window.refused += 1
                await asyncio.sleep(1)

    async def live_map(self) -> None:
        """Follows the dispatcher's SSE feed and times each probe ping from its 202 to its `position` event."""
        probes = tuple(self.http_units[:PROBES])
        async with (
            httpx.AsyncClient(base_url=self.dispatcher, headers=self.headers("viewer"), timeout=None) as client,
            client.stream("GET", "/v1/events") as stream,
        ):
            async for line in stream.aiter_lines():
                if self.stopping:
                    return
                if not line.startswith("data:") or '"unit_id":"H-' not in line:
                    continue
                data = orjson.loads(line[5:])
                if data.get("unit_id") not in probes or "ts" not in data:
                    continue
                key = (data["unit_id"], int(datetime.fromisoformat(data["ts"]).timestamp() * 1000))
                acked = self.acked_at.pop(key, None)
                if acked is not None:
                    self.window.live_s.append(max(0.0, time.monotonic() - acked))

    async def calls(self, rng: random.Random) -> None:
        """A call a second, auto-assigned; its unit is cleared `CLEAR_AFTER_S` later (pending clears end with it)."""
        clearing: set[asyncio.Task[None]] = set()
        async with httpx.AsyncClient(base_url=self.dispatcher, headers=self.headers("dispatcher"), timeout=30) as c:
            try:
                for n in itertools.count():
                    started = time.monotonic()
                    call_id = f"S-{n}"
                    body = {"call_id": call_id, "lat": 27.15 + rng.random() * 0.2,
                            "lon": 111.35 + rng.random() * 0.2, "category": "theft", "priority": 2,
                            "auto_assign": True}  # fmt: skip
                    with contextlib.suppress(httpx.HTTPError):
                        response = await c.post("/v1/calls", json=body)
                        if response.status_code not in (200, 201):
                            self.window.refused += 1
                        else:
                            self.window.call_s.append(time.monotonic() - started)
                            if unit := response.json()["assigned_unit_id"]:
                                task = asyncio.create_task(self.clear(c, unit, call_id))
                                clearing.add(task)
                                task.add_done_callback(clearing.discard)
                    await asyncio.sleep(max(0.0, CALL_EVERY_S - (time.monotonic() - started)))
            finally:
                for task in list(clearing):
                    task.cancel()
                await asyncio.gather(*clearing, return_exceptions=True)

    async def clear(self, client: httpx.AsyncClient, unit: str, call_id: str) -> None:
        await asyncio.sleep(CLEAR_AFTER_S)
        with contextlib.suppress(httpx.HTTPError):
            await client.post(f"/v1/units/{unit}/status", json={"status": "available", "call_id": call_id})

    async def reports(self) -> None:
        async with httpx.AsyncClient(base_url=self.analytics, headers=self.headers("viewer"), timeout=30) as c:
            while not self.stopping:
                started = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get("/v1/reports/response-times")).status_code == 200:
                        self.window.report_s.append(time.monotonic() - started)
                await asyncio.sleep(max(0.0, REPORT_EVERY_S - (time.monotonic() - started)))


class _Link:
    """One terminal's TCP connection: a frame out, the platform's answer back."""

    def __init__(self, port: int, phone: str) -> None:
        self.port, self.phone, self.serial = port, phone, 0
        self.splitter = jt808.FrameSplitter()

    async def __aenter__(self) -> _Link:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def ask(self, message_id: int, body: bytes) -> jt808.Frame:
        self.serial = (self.serial + 1) & 0xFFFF
        for frame in jt808.encode_frames(message_id, body, phone=self.phone, serial=self.serial):
            self.writer.write(frame)
        await self.writer.drain()
        while True:
            data = await asyncio.wait_for(self.reader.read(4096), 30)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            if frames := self.splitter.feed(data):
                return jt808.parse_frame(frames[-1])

    async def result(self, message_id: int, body: bytes) -> int:
        return jt808.decode_general_response((await self.ask(message_id, body)).body).result


def _location(ts: datetime, rng: random.Random) -> jt808.Location:
    status = jt808.ACC_ON | jt808.POSITIONED | jt808.GPS_USED | jt808.BEIDOU_USED
    local = ts.astimezone(jt808.GMT8).replace(tzinfo=None, microsecond=0)
    lat, lon = 27.15 + rng.random() * 0.2, 111.35 + rng.random() * 0.2
    return jt808.Location(0, status, lat, lon, 50, 30.0, 90, local, {0x31: b"\x0c"})


async def register(database: str) -> tuple[list[str], list[tuple[str, str]]]:
    platform = Platform(id="SOAK", name="Soak platform", kind=PlatformKind.FAST_RESPONSE, lat=27.25, lon=111.45)
    http = [
        Unit(id=f"H-{i:05d}", platform_id="SOAK", kind=UnitKind.PATROL_CAR, callsign=f"H{i}") for i in range(HTTP_UNITS)
    ]
    terminals = [
        Unit(
            id=f"T-{i:05d}", platform_id="SOAK", kind=UnitKind.MOTORCYCLE, callsign=f"T{i}",
            terminal_id=f"1390000{i:04d}",
        )
        for i in range(TERMINALS)
    ]  # fmt: skip
    conn = await connect(database)
    try:
        await import_registry(conn, RegistryImport(platforms=[platform], units=[*http, *terminals]))
    finally:
        await conn.close()
    return [u.id for u in http], [(u.id, (u.terminal_id or "").zfill(12)) for u in terminals]


async def scrape_lag(urls: list[str]) -> dict[str, float]:
    """Every `kuaijing_consumer_lag` sample the services expose, summed per group."""
    lag: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5) as c:
        for url in urls:
            with contextlib.suppress(httpx.HTTPError):
                for line in (await c.get(f"{url}/metrics")).text.splitlines():
                    if line.startswith("kuaijing_consumer_lag{"):
                        group = line.split('group="', 1)[1].split('"', 1)[0]
                        lag[group] = lag.get(group, 0.0) + float(line.rsplit(" ", 1)[1])
    return lag


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1000:,.0f} ms"


async def drive(soak: Soak, pids: dict[str, int | None], *, seconds: float, every_s: float) -> float:
    """Runs the load for `seconds`, then ramps; returns the highest HTTP rate sustained."""
    rng = random.Random(20261130)
    groups = [soak.http_units[i::RELAYS] for i in range(RELAYS)]
    tasks = [
        *(asyncio.create_task(soak.relay(g, random.Random(i))) for i, g in enumerate(groups)),
        *(asyncio.create_task(soak.terminal(phone, random.Random(i))) for i, (_, phone) in enumerate(soak.terminals)),
        asyncio.create_task(soak.live_map()),
        asyncio.create_task(soak.calls(rng)),
        asyncio.create_task(soak.reports()),
    ]
    services = [soak.ingest, soak.dispatcher, soak.analytics]
    began = time.monotonic()
    steady_until = began + seconds * 2 / 3
    sustained = 0.0
    step_lag: float | None = None
    fell_behind = False
    try:
        while time.monotonic() - began < seconds:
            await asyncio.sleep(every_s if time.monotonic() < steady_until else every_s / 3)
            window, soak.window = soak.window, Window()
            elapsed = time.monotonic() - window.began
            lag = await scrape_lag(services)
            offered = HTTP_UNITS / soak.interval_s + TERMINALS / TERMINAL_EVERY_S
            rate = window.pings / elapsed
            sizes = {name: rss_mb(pid) for name, pid in pids.items()}
            if window.began < steady_until:  # the ramp starts after the first line past it
                for name, mb in sizes.items():
                    soak.memory.note(name, mb)
                soak.memory.pings = soak.acknowledged
            rss = " ".join(f"{name} {mb:,.0f}" for name, mb in sizes.items())
            print(
                f"[{time.monotonic() - began:5.0f} s] offered {offered:7,.0f}/s  acked {rate:7,.0f} pings/s  "
                f"ack p99 http {_ms(p99(window.http_ack_s))} jt808 {_ms(p99(window.jt808_ack_s))}  "
                f"live-map p99 {_ms(p99(window.live_s))} ({len(window.live_s)} probes)  "
                f"calls {len(window.call_s)} p99 {_ms(p99(window.call_s))}  "
                f"reports {len(window.report_s)} p99 {_ms(p99(window.report_s))}  resent {window.refused}  "
                f"lag {dict(sorted(lag.items()))}  RSS MB {rss}",
                flush=True,
            )
            total_lag = sum(lag.values())
            keeping_up = rate >= 0.9 * offered and (step_lag is None or total_lag <= step_lag + offered)
            if keeping_up:
                sustained = max(sustained, rate)
            if time.monotonic() >= steady_until:
                if not keeping_up:
                    print(f"    lag grew or acknowledgements fell behind at {offered:,.0f}/s offered: ramp ends")
                    fell_behind = True
                    break
                soak.interval_s /= RAMP_FACTOR
            step_lag = total_lag
        if not fell_behind:
            print("    the run ended before the stack fell behind: the highest rate sustained is a floor")
    finally:
        soak.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return sustained


async def lost(infra: BenchInfra, soak: Soak, since: datetime) -> tuple[int, int]:
    """Acknowledged pings missing from history, and history rows beyond the acknowledged ones, once the history
    writer has caught up (rows of pings written but never acknowledged, then resent, are the same row)."""
    conn = await connect(infra.database)
    try:
        previous = -1
        while True:
            rows = int(await conn.fetchval("SELECT count(*) FROM positions WHERE ts >= $1", since))
            if rows == previous:
                break
            previous = rows
            await asyncio.sleep(3)
    finally:
        await conn.close()
    return max(0, soak.acknowledged - rows), max(0, rows - soak.acknowledged)


async def on_topic(kafka: str) -> tuple[int, int]:
    """Records on `kuaijing.positions` and distinct (unit, ts) among them: at least once, so some may be twice."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=None, enable_auto_commit=False)
    try:
        await consumer.start()
        partitions = [TopicPartition(POSITIONS.name, p) for p in range(POSITIONS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records, keys = 0, set()
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=50_000)).values():
                for record in batch:
                    value = orjson.loads(record.value or b"{}")
                    records += 1
                    keys.add((value.get("unit_id"), value.get("ts")))
        return records, len(keys)
    finally:
        await consumer.stop()


def run(*, quick: bool, minutes: float | None = None) -> None:
    seconds = 60.0 if quick else (minutes or 10.0) * 60
    every_s = 15.0 if quick else 60.0
    tokens = ",".join(f"{role}:{token}" for role, token in TOKENS.items())
    with bench_infra() as infra:
        http_units, terminals = asyncio.run(register(infra.database))
        jt808_port = reserve_port()
        env = {"KUAIJING_API_TOKENS": tokens, "KUAIJING_REGISTRY_POLL_S": "0.5"}
        with (
            service_process(infra, "ingest", reserve_port(), KUAIJING_JT808_PORT=str(jt808_port), **env) as ingest,
            service_process(infra, "dispatcher", reserve_port(), **env) as dispatcher,
            service_process(infra, "analytics", reserve_port(), **env) as analytics,
        ):
            soak = Soak(ingest.url, jt808_port, dispatcher.url, analytics.url, http_units, terminals)
            pids = {"ingest": ingest.pid, "dispatcher": dispatcher.pid, "analytics": analytics.pid,
                    "kafka": infra.kafka_pid}  # fmt: skip
            print(
                f"bench soak: {seconds:.0f} s; {HTTP_UNITS:,} units over HTTP via {RELAYS} relays every "
                f"{PING_EVERY_S:.0f} s, {TERMINALS:,} JT/T 808 terminals every {TERMINAL_EVERY_S:.0f} s, a call "
                f"every {CALL_EVERY_S:.0f} s, a report every {REPORT_EVERY_S:.0f} s; in the last third the HTTP rate "
                f"x{RAMP_FACTOR} every {every_s / 3:.0f} s",
                flush=True,
            )
            since = datetime.now(UTC) - timedelta(seconds=5)
            sustained = asyncio.run(drive(soak, pids, seconds=seconds, every_s=every_s))
            missing, extra = asyncio.run(lost(infra, soak, since))
        records, distinct = asyncio.run(on_topic(infra.kafka))
        # Measured once the services are gone: the anchor's bare pings would be dead letters to the consumers.
        anchor = asyncio.run(bare_producer(infra.kafka, POSITIONS.name, make_pings(50_000, http_units)))
    print()
    print(
        f"acknowledged pings: {soak.acknowledged:,}; lost (acknowledged, not in history): {missing:,}; rows of pings "
        f"whose acknowledgement the end of the run cut off: {extra:,}"
    )
    print(
        f"{POSITIONS.name}: {records:,} records for {distinct:,} distinct pings ({records - distinct:,} sent twice: "
        "at least once); history: one row per (unit, ts), its primary key"
    )
    print(
        f"RSS over the steady phase, its first line against its last (after {soak.memory.pings:,} pings "
        "acknowledged; same load throughout, so growth here is what a longer night would keep adding):"
    )
    for line in soak.memory.table():
        print(f"  {line}")
    print(f"{'figure':<44}{'pings/s':>10}{'anchor pings/s':>16}{'ratio':>8}")
    figure = "highest rate sustained, lag not growing"
    print(f"{figure:<44}{sustained:>10,.0f}{anchor:>16,.0f}{sustained / anchor:>8.2f}")
    print("anchor: bare AIOKafkaProducer (acks=all, idempotent) sending 50,000 pings to the same broker")
    if missing:
        raise SystemExit(f"{missing} acknowledged pings are not in history")
