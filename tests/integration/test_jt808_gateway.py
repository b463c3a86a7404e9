"""A terminal written here registers, authenticates, reports and batch-uploads over real TCP to the gateway, and its
positions arrive on the real `kuaijing.positions`; raw frames on `kuaijing.telemetry.raw` take the same path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from types import TracebackType

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.ingest.settings import IngestSettings
from shared import jt808
from shared.contract.schemas import PositionRecord
from shared.contract.topics import DEADLETTER, JT808_CONTENT_TYPE, POSITIONS, TELEMETRY_RAW, VIDEO
from shared.geo import h3_cell
from shared.infra.kafka import running
from shared.jt808 import MessageId, RegisterResult, Result
from shared.settings import CommonSettings
from tests.conftest import Fleet, RunningService
from tests.harness import TopicTail
from tests.integration.test_analytics import metric

pytestmark = pytest.mark.integration

BEIJING_TIME = jt808.GMT8


class Terminal:
    """A minimal JT/T 808 terminal: one request at a time, waiting for the platform's answer."""

    def __init__(self, port: int, phone: str, *, wide: bool = False) -> None:
        self.port, self.phone, self.wide = port, phone, wide
        self.serial = 0
        self.splitter = jt808.FrameSplitter()
        self.pending: list[bytes] = []

    async def __aenter__(self) -> Terminal:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.writer.close()

    async def request(self, message_id: int, body: bytes) -> jt808.Frame:
        self.serial += 1
        for frame in jt808.encode_frames(
            message_id, body, phone=self.phone, serial=self.serial, protocol_version=1 if self.wide else None
        ):
            self.writer.write(frame)
        await self.writer.drain()
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(4096), timeout=15)
            assert data, "the gateway closed the connection"
            self.pending += self.splitter.feed(data)
        return jt808.parse_frame(self.pending.pop(0))

    async def general(self, message_id: int, body: bytes) -> int:
        reply = await self.request(message_id, body)
        assert reply.header.message_id == MessageId.PLATFORM_RESPONSE
        assert reply.header.is_2019 == self.wide, "replies mirror the terminal's header version"
        response = jt808.decode_general_response(reply.body)
        assert (response.reply_serial, response.reply_id) == (self.serial, message_id)
        return response.result

    async def register(self) -> tuple[int, str]:
        registration = jt808.Registration(43, 501, "KJ", "KJ-T1", "T0001", 1, "湘E12345")
        reply = await self.request(MessageId.REGISTER, jt808.encode_registration(registration, wide=self.wide))
        assert reply.header.message_id == MessageId.REGISTER_RESPONSE
        result = reply.body[2]
        return result, reply.body[3:].decode()


def location(
    ts: datetime, lat: float, lon: float, *, speed: float = 36.5, extras: dict[int, bytes] | None = None
) -> jt808.Location:
    status = jt808.ACC_ON | jt808.POSITIONED | jt808.GPS_USED | jt808.BEIDOU_USED
    local = ts.astimezone(BEIJING_TIME).replace(tzinfo=None, microsecond=0)
    return jt808.Location(0, status, lat, lon, 52, speed, 270, local, {0x31: b"\x0d", **(extras or {})})


async def test_a_terminal_registers_authenticates_reports_and_batch_uploads(
    settings: CommonSettings, ingest_settings: IngestSettings, ingest: RunningService, terminals: Fleet
) -> None:
    unit, phone = terminals.unit_ids[0], terminals.terminal_ids[0]
    now = datetime.now(UTC).replace(microsecond=0)
    async with (
        TopicTail(settings.kafka, POSITIONS) as positions,
        TopicTail(settings.kafka, DEADLETTER) as deadletter,
        TopicTail(settings.kafka, VIDEO) as video,
        Terminal(ingest_settings.jt808_port, "0" + phone) as terminal,
    ):
        early = jt808.encode_location(location(now, 27.24, 111.46))
        assert await terminal.general(MessageId.LOCATION, early) == Result.FAILURE
        [letter] = await deadletter.collect(lambda v: v["reason"] == "unauthenticated" and phone in v["error"], 1)
        assert letter["source"] == "jt808"

        result, code = await terminal.register()
        assert result == RegisterResult.SUCCESS
        assert code
        wrong = jt808.encode_authentication(jt808.Authentication("not-the-code"), wide=False)
        assert await terminal.general(MessageId.AUTHENTICATE, wrong) == Result.FAILURE
        auth = jt808.encode_authentication(jt808.Authentication(code), wide=False)
        assert await terminal.general(MessageId.AUTHENTICATE, auth) == Result.SUCCESS
        assert await terminal.general(MessageId.HEARTBEAT, b"") == Result.SUCCESS

        signal_lost = {0x15: (1 << 1).to_bytes(4, "big")}
        report = jt808.encode_location(location(now, 27.2418, 111.4672, extras=signal_lost))
        assert await terminal.general(MessageId.LOCATION, report) == Result.SUCCESS
        plain = jt808.encode_location(location(now - timedelta(minutes=1), 27.2431, 111.4602))
        assert await terminal.general(MessageId.LOCATION, plain) == Result.SUCCESS
        blind = [location(now - timedelta(minutes=m), 27.20 + m / 1000, 111.40) for m in (30, 20)]
        batch = jt808.encode_batch(blind, location_type=1)
        assert await terminal.general(MessageId.BATCH_LOCATION, batch) == Result.SUCCESS
        swapped = jt808.encode_location(location(now, 27.0, 111.0)).replace(
            (27_000_000).to_bytes(4, "big") + (111_000_000).to_bytes(4, "big"),
            (111_000_000).to_bytes(4, "big") + (27_000_000).to_bytes(4, "big"),
        )
        assert await terminal.general(MessageId.LOCATION, swapped) == Result.MESSAGE_ERROR
        assert await terminal.general(0x0F01, b"vendor") == Result.NOT_SUPPORTED

        records = await positions.collect(lambda v: v["unit_id"] == unit, 4)
        [lost] = await video.collect(lambda v: v["unit_id"] == unit, 1)
        [bad] = await deadletter.collect(lambda v: v["reason"] == "out_of_range" and "swapped" in v["error"], 1)
    by_ts = {r["ts"]: r for r in records}
    live = by_ts[now.isoformat().replace("+00:00", "Z")]
    assert (live["lat"], live["lon"], live["speed_kmh"], live["heading_deg"]) == (27.2418, 111.4672, 36.5, 270)
    assert (live["source"], live["gnss"], live["satellites"], live["altitude_m"], live["fix"]) == (
        "jt808",
        "BDS+GPS",
        13,
        52.0,
        True,
    )
    assert live["platform_id"] == terminals.platform_id
    # A plain report (no video items) is written by the compiled decoder straight to its value: the same record.
    written = by_ts[(now - timedelta(minutes=1)).isoformat().replace("+00:00", "Z")]
    assert PositionRecord.model_validate(written).model_dump(mode="json") == written
    assert {k: v for k, v in written.items() if k not in ("ts", "lat", "lon", "h3", "received_at")} == {
        k: v for k, v in live.items() if k not in ("ts", "lat", "lon", "h3", "received_at")
    }
    assert (written["lat"], written["lon"], written["h3"]) == (27.2431, 111.4602, h3_cell(27.2431, 111.4602))
    assert {(now - timedelta(minutes=m)).isoformat().replace("+00:00", "Z") for m in (30, 20)} <= set(by_ts)
    assert (lost["channel"], lost["state"], lost["source"]) == (2, "offline", "jt808")
    assert bad["payload_encoding"] == "base64"
    async with httpx.AsyncClient(base_url=ingest.url) as client:
        metrics = (await client.get("/metrics")).text
    counted = {
        m: metric(metrics, "kuaijing_jt808_frames_total", message=m) for m in ("0x0200", "0x0704", "0x0f01", "0x0100")
    }
    assert counted["0x0200"] >= 4, "every location frame is counted, those of a chunk together"
    assert min(counted["0x0704"], counted["0x0f01"], counted["0x0100"]) >= 1


async def test_a_2019_terminal_is_answered_in_2019_headers(
    settings: CommonSettings, ingest_settings: IngestSettings, ingest: RunningService, terminals: Fleet
) -> None:
    unit, phone = terminals.unit_ids[1], terminals.terminal_ids[1]
    async with (
        TopicTail(settings.kafka, POSITIONS) as positions,
        Terminal(ingest_settings.jt808_port, phone.rjust(20, "0"), wide=True) as terminal,
    ):
        result, code = await terminal.register()
        assert result == RegisterResult.SUCCESS
        auth = jt808.encode_authentication(jt808.Authentication(code, "866496077582164", "1.0"), wide=True)
        assert await terminal.general(MessageId.AUTHENTICATE, auth) == Result.SUCCESS
        assert (
            await terminal.general(MessageId.LOCATION, jt808.encode_location(location(datetime.now(UTC), 27.3, 111.5)))
            == Result.SUCCESS
        )
        await positions.collect(lambda v: v["unit_id"] == unit, 1)


async def test_an_unknown_terminal_is_refused_registration(
    ingest_settings: IngestSettings, ingest: RunningService
) -> None:
    async with Terminal(ingest_settings.jt808_port, "19999999999") as terminal:
        result, code = await terminal.register()
    assert (result, code) == (RegisterResult.TERMINAL_UNKNOWN, "")


async def test_a_silent_terminal_is_disconnected(ingest_settings: IngestSettings, ingest: RunningService) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", ingest_settings.jt808_port)
    try:
        assert await asyncio.wait_for(reader.read(100), timeout=ingest_settings.jt808_idle_timeout_s + 10) == b""
    finally:
        writer.close()


async def test_raw_frames_on_the_raw_topic_take_the_same_path(
    settings: CommonSettings, ingest: RunningService, terminals: Fleet
) -> None:
    unit, phone = terminals.unit_ids[2], terminals.terminal_ids[2]
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    [frame] = jt808.encode_frames(
        MessageId.LOCATION, jt808.encode_location(location(ts, 27.26, 111.49)), phone=phone, serial=9
    )
    [stranger] = jt808.encode_frames(
        MessageId.LOCATION, jt808.encode_location(location(ts, 27.26, 111.49)), phone="18888888888", serial=9
    )
    headers = [("content-type", JT808_CONTENT_TYPE)]
    async with TopicTail(settings.kafka, POSITIONS) as positions, TopicTail(settings.kafka, DEADLETTER) as deadletter:
        async with running(AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all")) as producer:
            await producer.send_and_wait(TELEMETRY_RAW.name, frame, key=phone.encode(), headers=headers)
            await producer.send_and_wait(TELEMETRY_RAW.name, stranger, key=b"18888888888", headers=headers)
            await producer.send_and_wait(
                TELEMETRY_RAW.name, frame[:-3] + b"\x00\x7e", key=phone.encode(), headers=headers
            )
        [record] = await positions.collect(lambda v: v["unit_id"] == unit, 1)
        letters = await deadletter.collect(
            lambda v: v["source"] == "kafka" and ("18888888888" in v["error"] or "checksum" in v["error"]), 2
        )
    assert (record["source"], record["lat"], record["ts"]) == ("kafka", 27.26, ts.isoformat().replace("+00:00", "Z"))
    assert PositionRecord.model_validate(record).model_dump(mode="json") == record
    assert (record["platform_id"], record["h3"]) == (terminals.platform_id, h3_cell(27.26, 111.49))
    assert {letter["reason"] for letter in letters} == {"unknown_terminal", "invalid_frame"}
