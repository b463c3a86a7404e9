"""JT/T 808: frames decoded per second in process, and location frames per second from 1,000 concurrent TCP
terminals through the gateway into Kafka.

Anchors measured in the same run: for decoding, the JSON path a ping takes over HTTP or the raw topic, to the same
point (the candidate and the record's own fields: orjson, then the compiled JSON reader since session 11), and the
pydantic path it took before (orjson + validation of the same ping); end to end, a bare AIOKafkaProducer sending the
same number of pings to the same broker.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

import orjson
from pydantic import TypeAdapter

from bench.environment import bench_infra, service
from bench.ingest import bare_producer, make_pings
from services.ingest.domain._json_ping import position_record as compiled_position_record
from services.ingest.intake import Candidate
from services.ingest.terminal_frames import location_candidates
from shared import jt808
from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind, UnitRef
from shared.contract.schemas import Ping
from shared.contract.topics import POSITIONS
from shared.infra.embedded.ports import reserve_port
from shared.infra.postgres import connect
from shared.infra.registry_store import import_registry
from shared.jt808 import MessageId, Result

TERMINALS = 1_000
ROUNDS = 3
"""The gateway and its anchor run this many times, alternating, and the medians are compared: one run of a few
seconds on two shared cores varied from 0.44 to 0.56 of its anchor with the same code (2026-12-01)."""
DECODE_PASSES = 3
DECODE_BLOCK = 5_000
WINDOW = 16
"""Location frames a terminal keeps unacknowledged (blind-area catch-up sends back to back)."""


def location_frame(phone: str, serial: int, ts: datetime, rng: random.Random) -> bytes:
    status = jt808.ACC_ON | jt808.POSITIONED | jt808.GPS_USED | jt808.BEIDOU_USED
    local = ts.astimezone(jt808.GMT8).replace(tzinfo=None, microsecond=0)
    location = jt808.Location(
        0,
        status,
        27.2 + rng.random() * 0.1,
        111.4 + rng.random() * 0.1,
        60,
        42.5,
        rng.randrange(360),
        local,
        {0x01: b"\x00\x00\x10\x00", 0x30: b"\x1c", 0x31: b"\x0e"},
    )
    [frame] = jt808.encode_frames(MessageId.LOCATION, jt808.encode_location(location), phone=phone, serial=serial)
    return frame


def decode_rates(count: int) -> tuple[float, float, float]:
    """Frames/s of the JT/T 808 decode, the JSON ping as ingest reads it, and the JSON ping through pydantic.

    The three run interleaved in blocks, three passes over the same data, so that a shared machine's slow second
    falls on all three alike (whole runs one after the other varied from 0.6 to 1.6 of each other, 2026-12-01)."""
    rng = random.Random(1)
    now = datetime.now(UTC)
    frames = [location_frame(f"13{i:09d}", i, now, rng) for i in range(count)]
    unit = UnitRef("U", "BENCH", UnitKind.PATROL_CAR, "13000000000")
    pings = make_pings(count, ["U"])
    adapter: TypeAdapter[object] = TypeAdapter(Ping)
    spent = [0.0, 0.0, 0.0]
    for _ in range(DECODE_PASSES):
        for start in range(0, count, DECODE_BLOCK):
            began = time.perf_counter()
            for frame in frames[start : start + DECODE_BLOCK]:  # what the gateway and the raw consumer do
                location_candidates(jt808.parse_frame(frame), frame, unit=unit)
            decoded = time.perf_counter()
            for ping in pings[start : start + DECODE_BLOCK]:  # what HTTP and the raw consumer do, to the same point
                candidate = Candidate(value=orjson.loads(ping), payload=ping, key=b"U")
                compiled_position_record(candidate.value)
            read = time.perf_counter()
            for ping in pings[start : start + DECODE_BLOCK]:
                adapter.validate_python(orjson.loads(ping))
            validated = time.perf_counter()
            spent[0] += decoded - began
            spent[1] += read - decoded
            spent[2] += validated - read
    frames_done = count * DECODE_PASSES
    return frames_done / spent[0], frames_done / spent[1], frames_done / spent[2]


async def register_terminals(database: str) -> list[str]:
    phones = [f"1390{i:07d}" for i in range(TERMINALS)]
    platform = Platform(id="BENCH", name="Bench", kind=PlatformKind.PATROL, lat=27.2, lon=111.4)
    units = [
        Unit(id=f"T-{i:05d}", platform_id="BENCH", kind=UnitKind.PATROL_CAR, callsign=str(i), terminal_id=phone)
        for i, phone in enumerate(phones)
    ]
    conn = await connect(database)
    try:
        await import_registry(conn, RegistryImport(platforms=[platform], units=units))
    finally:
        await conn.close()
    return phones


async def terminal(port: int, phone: str, frames: int, started: asyncio.Event) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    splitter = jt808.FrameSplitter()
    inbox: list[bytes] = []

    async def answer() -> jt808.Frame:
        while not inbox:
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("gateway closed the connection")
            inbox.extend(splitter.feed(data))
        return jt808.parse_frame(inbox.pop(0))

    registration = jt808.Registration(43, 501, "KJ", "BENCH", "T", 1, "湘E00000")
    [frame] = jt808.encode_frames(
        MessageId.REGISTER, jt808.encode_registration(registration, wide=False), phone=phone, serial=0
    )
    writer.write(frame)
    code = (await answer()).body[3:].decode()
    [frame] = jt808.encode_frames(MessageId.AUTHENTICATE, code.encode(), phone=phone, serial=1)
    writer.write(frame)
    await answer()
    rng = random.Random(phone)
    base = datetime.now(UTC) - timedelta(hours=1)
    reports = [location_frame(phone, 2 + serial, base + timedelta(seconds=serial), rng) for serial in range(frames)]
    await started.wait()  # frames are encoded before the clock starts: the load generator shares the cores
    # A terminal catching up keeps WINDOW reports unacknowledged; each read's answers let as many more go, in one
    # write. Answers are checked in C (the frame) and by one byte (the result), so that the load generator costs
    # little next to the gateway it measures on the same two cores.
    writer.write(b"".join(reports[:WINDOW]))
    sent, acknowledged, answered = min(WINDOW, frames), 0, 0
    while answered < frames:
        data = await reader.read(65536)
        if not data:
            raise ConnectionError("gateway closed the connection")
        for wire in splitter.feed(data):
            reply = jt808.parse_frame(wire)
            answered += 1
            acknowledged += reply.header.message_id == MessageId.PLATFORM_RESPONSE and reply.body[4] == Result.SUCCESS
        more = min(answered + WINDOW, frames) - sent
        if more > 0:
            writer.write(b"".join(reports[sent : sent + more]))
            sent += more
    writer.close()
    return acknowledged


async def end_to_end(port: int, phones: list[str], per_terminal: int) -> float:
    started = asyncio.Event()
    clients = [asyncio.create_task(terminal(port, phone, per_terminal, started)) for phone in phones]
    await asyncio.sleep(12)  # every terminal connects, registers, authenticates and encodes its reports first
    began = time.perf_counter()
    started.set()
    acknowledged = sum(await asyncio.gather(*clients))
    elapsed = time.perf_counter() - began
    if acknowledged != len(phones) * per_terminal:
        raise RuntimeError(f"{acknowledged} of {len(phones) * per_terminal} locations acknowledged")
    return acknowledged / elapsed


def run(*, quick: bool) -> None:
    decode_count = 20_000 if quick else 200_000
    per_terminal = 5 if quick else 100
    rounds = 1 if quick else ROUNDS
    decoded, json_rate, pydantic_rate = decode_rates(decode_count)
    total = TERMINALS * per_terminal
    rates, anchors = [], []
    with bench_infra() as infra:
        phones = asyncio.run(register_terminals(infra.database))
        pings = make_pings(total, ["T-00000"])
        asyncio.run(bare_producer(infra.kafka, POSITIONS.name, pings))  # untimed: a fresh broker is slower at first
        port = reserve_port()
        env = {
            "KUAIJING_JT808_PORT": str(port),
            "KUAIJING_API_TOKENS": "admin:bench",
            "KUAIJING_RAW_CONSUMER_ENABLED": "false",
            "KUAIJING_HISTORY_WRITER_ENABLED": "false",
        }
        with service(infra, "ingest", reserve_port(), **env):
            for _ in range(rounds):
                anchors.append(asyncio.run(bare_producer(infra.kafka, POSITIONS.name, pings)))
                rates.append(asyncio.run(end_to_end(port, phones, per_terminal)))
    rate, anchor = statistics.median(rates), statistics.median(anchors)
    print()
    print(
        f"decode 0x0200 frame + ping, one core:   {decoded:>10,.0f} frames/s   "
        f"(anchor: JSON ping as ingest reads it, orjson + compiled reader, {json_rate:,.0f}/s, ratio "
        f"{decoded / json_rate:.2f}; JSON ping through pydantic {pydantic_rate:,.0f}/s, ratio "
        f"{decoded / pydantic_rate:.2f}; {DECODE_PASSES} interleaved passes)"
    )
    print(
        f"gateway end to end, {len(phones):,} TCP terminals: {rate:>10,.0f} locations/s "
        f"(anchor: bare AIOKafkaProducer {anchor:,.0f}/s, ratio {rate / anchor:.2f}; medians of {rounds} round(s) of "
        f"{total:,} locations)"
    )
    print(
        "  rounds (gateway/anchor, ratio): "
        + ", ".join(f"{r:,.0f}/{a:,.0f} ({r / a:.2f})" for r, a in zip(rates, anchors, strict=True))
    )
