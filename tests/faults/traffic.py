"""Traffic for the fault tests, from clients that behave as real ones do: whatever was not acknowledged is sent
again, over HTTP (a 202), JT/T 808 over TCP (a 0x8001 success for the frame's serial) and the raw Kafka topic (the
broker's acknowledgement with acks=all), and a console that creates calls by id, so that a resend is answered
with the call already made."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared import jt808
from shared.contract.topics import TELEMETRY_RAW
from shared.jt808 import MessageId, RegisterResult, Result
from tests.conftest import TOKENS, Fleet

JT808_BATCH = 25
"""Locations per 0x0704 frame: 25 keep the body under the 1,023 bytes a frame carries unsplit."""
HTTP_BATCH = 500
HTTP_CLIENTS = 4
RAW_CHUNK = 2_000
RESEND_AFTER_S = 0.2

Key = tuple[str, datetime]
"""A ping's natural key: its unit and its event time."""


@dataclass
class Tally:
    acknowledged: int = 0
    resent: int = 0
    refused: Counter[str] = field(default_factory=Counter)

    def refuse(self, outcome: str) -> None:
        self.resent += 1
        self.refused[outcome] += 1


@dataclass(frozen=True)
class Ping:
    unit_id: str
    ts: datetime
    lat: float
    lon: float

    def json(self) -> dict[str, object]:
        return {
            "kind": "position",
            "unit_id": self.unit_id,
            "ts": self.ts.isoformat(),
            "lat": self.lat,
            "lon": self.lon,
        }


class _RefusedError(Exception):
    """The gateway answered something other than success: the frame is sent again."""


class PingStream:
    """At least `pings` distinct pings, a third of the fleet's units over each transport, one ping per unit per
    second of event time from `start` on."""

    def __init__(
        self, fleet: Fleet, *, pings: int, start: datetime, ingest_url: str, jt808_port: int, kafka: str
    ) -> None:
        self.ingest_url, self.jt808_port, self.kafka = ingest_url, jt808_port, kafka
        per_unit = math.ceil(pings / len(fleet.unit_ids))
        self.by_unit = {
            unit: [
                Ping(unit, start + timedelta(seconds=i), 27.2 + (i % 1000) / 100_000, 111.4 + u / 1000)
                for i in range(per_unit)
            ]
            for u, unit in enumerate(fleet.unit_ids)
        }
        third = len(fleet.unit_ids) // 3
        self.http_units = fleet.unit_ids[:third]
        self.jt808_terminals = list(
            zip(fleet.unit_ids[third : 2 * third], fleet.terminal_ids[third : 2 * third], strict=True)
        )
        self.raw_units = fleet.unit_ids[2 * third :]
        self.expected: set[Key] = {(p.unit_id, p.ts) for ps in self.by_unit.values() for p in ps}
        self.tallies = {"http": Tally(), "jt808": Tally(), "kafka": Tally()}

    @property
    def acknowledged(self) -> int:
        return sum(t.acknowledged for t in self.tallies.values())

    def summary(self) -> str:
        return "; ".join(
            f"{name} {t.acknowledged:,} acknowledged, {t.resent} resent {dict(t.refused)}"
            for name, t in self.tallies.items()
        )

    async def run(self) -> None:
        http = [p for i in range(len(self.by_unit[self.http_units[0]])) for p in self._at(self.http_units, i)]
        batches = [http[i : i + HTTP_BATCH] for i in range(0, len(http), HTTP_BATCH)]
        raw = [p for unit in self.raw_units for p in self.by_unit[unit]]
        await asyncio.gather(
            *(self._http(batches[c::HTTP_CLIENTS]) for c in range(HTTP_CLIENTS)),
            *(self._terminal(unit, phone) for unit, phone in self.jt808_terminals),
            self._raw(raw),
        )

    def _at(self, units: list[str], i: int) -> list[Ping]:
        return [self.by_unit[u][i] for u in units]

    async def _http(self, work: list[list[Ping]]) -> None:
        tally = self.tallies["http"]
        headers = {"Authorization": f"Bearer {TOKENS['terminal']}", "Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=self.ingest_url, headers=headers, timeout=10) as client:
            while work:
                try:
                    response = await client.post("/v1/telemetry", content=orjson.dumps([p.json() for p in work[-1]]))
                    outcome = str(response.status_code)
                except httpx.HTTPError as e:
                    outcome = type(e).__name__
                assert outcome != "500", f"ingest answered 500: {response.text}"
                if outcome == "202":
                    tally.acknowledged += len(work.pop())
                    continue
                tally.refuse(outcome)
                await asyncio.sleep(RESEND_AFTER_S)

    async def _terminal(self, unit: str, phone: str) -> None:
        """Registers once, authenticates on every connection, uploads in 0x0704 batches (0x0200 for a last single
        fix); a connection lost, a timeout or a failure answer mean: reconnect and send the frame again."""
        tally = self.tallies["jt808"]
        pings = self.by_unit[unit]
        frames = [pings[i : i + JT808_BATCH] for i in range(0, len(pings), JT808_BATCH)]
        code: str | None = None
        sent = 0
        while sent < len(frames):
            try:
                async with Terminal(self.jt808_port, phone) as terminal:
                    if code is None:
                        code = await terminal.register()
                    if await terminal.authenticate(code) != Result.SUCCESS:
                        code = None
                        raise _RefusedError("authentication")
                    while sent < len(frames):
                        if await terminal.report(frames[sent]) != Result.SUCCESS:
                            raise _RefusedError("report")
                        tally.acknowledged += len(frames[sent])
                        sent += 1
            except (OSError, TimeoutError, asyncio.IncompleteReadError, _RefusedError, jt808.Jt808Error) as e:
                tally.refuse(type(e).__name__)
                await asyncio.sleep(RESEND_AFTER_S)

    async def _raw(self, pings: list[Ping]) -> None:
        tally = self.tallies["kafka"]
        pending = pings
        while pending:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.kafka, acks="all", enable_idempotence=True, linger_ms=5, request_timeout_ms=5000
            )
            try:
                await producer.start()
                while pending:
                    chunk, futures = pending[:RAW_CHUNK], []
                    try:
                        for p in chunk:
                            value = orjson.dumps(p.json())
                            futures.append(await producer.send(TELEMETRY_RAW.name, value, key=p.unit_id.encode()))
                    finally:
                        results = await asyncio.gather(*futures, return_exceptions=True)
                        failed = [p for p, r in zip(chunk, results, strict=False) if isinstance(r, BaseException)]
                        failed += chunk[len(futures) :]
                        tally.acknowledged += len(chunk) - len(failed)
                        pending = failed + pending[len(chunk) :]
                    if failed:
                        raise _RefusedError(f"{len(failed)} not acknowledged")
            except (KafkaError, _RefusedError) as e:
                tally.refuse(type(e).__name__)
                await asyncio.sleep(RESEND_AFTER_S)
            finally:
                await producer.stop()


class Terminal:
    """A JT/T 808 (2013) terminal: one frame at a time, each waiting for the platform's answer to its serial."""

    def __init__(self, port: int, phone: str) -> None:
        self.port, self.phone = port, phone.zfill(12)
        self.serial = 0
        self.splitter = jt808.FrameSplitter()
        self.pending: list[bytes] = []

    async def __aenter__(self) -> Terminal:
        self.reader, self.writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def _request(self, message_id: int, body: bytes) -> jt808.Frame:
        self.serial = (self.serial + 1) & 0xFFFF
        for frame in jt808.encode_frames(message_id, body, phone=self.phone, serial=self.serial):
            self.writer.write(frame)
        await self.writer.drain()
        while True:
            while not self.pending:
                data = await asyncio.wait_for(self.reader.read(4096), timeout=10)
                if not data:
                    raise asyncio.IncompleteReadError(b"", None)
                self.pending += self.splitter.feed(data)
            reply = jt808.parse_frame(self.pending.pop(0))
            if reply.header.message_id == MessageId.REGISTER_RESPONSE or self._answers(reply, message_id):
                return reply

    def _answers(self, reply: jt808.Frame, message_id: int) -> bool:
        if reply.header.message_id != MessageId.PLATFORM_RESPONSE:
            return False
        response = jt808.decode_general_response(reply.body)
        return (response.reply_serial, response.reply_id) == (self.serial, message_id)

    async def register(self) -> str:
        registration = jt808.Registration(43, 501, "KJ", "KJ-T1", "T0001", 1, "湘E12345")
        reply = await self._request(MessageId.REGISTER, jt808.encode_registration(registration, wide=False))
        if reply.body[2] != RegisterResult.SUCCESS:
            raise _RefusedError(f"registration result {reply.body[2]}")
        return reply.body[3:].decode()

    async def authenticate(self, code: str) -> int:
        reply = await self._request(
            MessageId.AUTHENTICATE, jt808.encode_authentication(jt808.Authentication(code), wide=False)
        )
        return jt808.decode_general_response(reply.body).result

    async def report(self, pings: list[Ping]) -> int:
        locations = [location(p.ts, p.lat, p.lon) for p in pings]
        if len(locations) == 1:
            reply = await self._request(MessageId.LOCATION, jt808.encode_location(locations[0]))
        else:
            reply = await self._request(MessageId.BATCH_LOCATION, jt808.encode_batch(locations, location_type=0))
        return jt808.decode_general_response(reply.body).result


def location(ts: datetime, lat: float, lon: float) -> jt808.Location:
    status = jt808.ACC_ON | jt808.POSITIONED | jt808.GPS_USED | jt808.BEIDOU_USED
    local = ts.astimezone(jt808.GMT8).replace(tzinfo=None, microsecond=0)
    return jt808.Location(0, status, lat, lon, 52, 36.5, 270, local, {0x31: b"\x0d"})


@dataclass
class CallRecord:
    call_id: str
    lat: float
    lon: float
    unit_id: str | None = None
    arrived: bool = False
    cleared: bool = False


class Console:
    """A dispatcher and the crew it sends: calls are created by id with auto-assignment (resent until answered
    201 or 200), the assigned unit drives to the scene with a GPS ping a second through ingest (the dispatcher
    sees it arrive), and is cleared from the console."""

    def __init__(self, crew: Fleet, *, tag: str, dispatcher_url: str, ingest_url: str, area: int) -> None:
        """`area` numbers the crew's area: consoles in different areas do not send each other's units."""
        self.crew, self.tag = crew, tag
        self.dispatcher_url, self.ingest_url = dispatcher_url, ingest_url
        self.calls: dict[str, CallRecord] = {}
        self.tally = Tally()
        self.home = {u: (27.0 + area * 0.1, 111.0 + i * 0.03) for i, u in enumerate(crew.unit_ids)}

    async def _send(
        self, url: str, path: str, role: str, body: dict[str, object], ok: set[int], *, ok_resent: int = 0
    ) -> httpx.Response:
        """Until the answer is one of `ok` (or `ok_resent` for a resend: the first attempt may have been done
        though its answer was lost): a 503, a reset connection or a timeout mean: send again."""
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        resent = False
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as client:
            while True:
                try:
                    response = await client.post(path, json=body)
                    if response.status_code in ok or (resent and response.status_code == ok_resent):
                        return response
                    assert response.status_code == 503, f"{path}: {response.status_code} {response.text}"
                    self.tally.refuse(str(response.status_code))
                except httpx.HTTPError as e:
                    self.tally.refuse(type(e).__name__)
                resent = True
                await asyncio.sleep(RESEND_AFTER_S)

    async def ping(self, unit: str, lat: float, lon: float) -> None:
        body = {"kind": "position", "unit_id": unit, "ts": datetime.now(UTC).isoformat(), "lat": lat, "lon": lon}
        await self._send(self.ingest_url, "/v1/telemetry", "terminal", body, {202})

    async def report_in(self) -> None:
        """Every crew unit at its home position, fresh."""
        for unit, (lat, lon) in self.home.items():
            await self.ping(unit, lat, lon)

    async def create(self, n: int) -> CallRecord:
        """A call next to the n-th crew unit's home, so that the nearest available unit is known in advance."""
        lat, lon = self.home[self.crew.unit_ids[n]]
        call = CallRecord(f"F-{self.tag}-{n}", lat + 0.01, lon)
        body = {"call_id": call.call_id, "lat": call.lat, "lon": call.lon, "category": "theft", "priority": 1,
                "auto_assign": True}  # fmt: skip
        answer = (await self._send(self.dispatcher_url, "/v1/calls", "dispatcher", body, {200, 201})).json()
        call.unit_id = answer["assigned_unit_id"]
        self.calls[call.call_id] = call
        return call

    async def drive(self, call: CallRecord, *, seconds: float) -> None:
        """The call's unit drives from home to the scene in about `seconds`, a fix a second, then stays there."""
        assert call.unit_id is not None, f"no unit was assigned to {call.call_id}"
        lat0, lon0 = self.home[call.unit_id]
        steps = max(1, int(seconds))
        for step in range(1, steps + 1):
            f = step / steps
            await self.ping(call.unit_id, lat0 + (call.lat - lat0) * f, lon0 + (call.lon - lon0) * f)
            await asyncio.sleep(1)
        call.arrived = True

    async def clear(self, call: CallRecord) -> None:
        assert call.unit_id is not None
        body: dict[str, object] = {"status": "available", "call_id": call.call_id}
        path = f"/v1/units/{call.unit_id}/status"
        await self._send(self.dispatcher_url, path, "dispatcher", body, {200}, ok_resent=409)
        call.cleared = True
