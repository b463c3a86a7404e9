"""The simulated vehicles' terminals that do not speak HTTP: JT/T 808 over TCP to ingest's gateway, and a relaying
system that writes pings to `kuaijing.telemetry.raw`. Each sends what it was given in order and resends what was
not acknowledged, as real ones do; `submit` returns a future that is done when the platform acknowledged."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared import jt808
from shared.contract.topics import TELEMETRY_RAW
from shared.infra.kafka import KafkaClient, client_options
from shared.jt808 import MessageId, RegisterResult, Result

log = logging.getLogger(__name__)

BATCH_ITEMS = 25
"""Locations per 0x0704 frame: 25 keep the body under the 1,023 bytes a frame carries unsplit."""
_RETRY_S = 0.2


def location(ping: dict[str, Any], video_lost: int = 0) -> jt808.Location:
    """A contract position ping as the terminal's 0x0200 body: Beijing time, microdegrees, km/h, degrees; with
    `video_lost`, the channels whose video signal is lost (JT/T 1078 item 0x15)."""
    status = jt808.ACC_ON | jt808.POSITIONED | jt808.GPS_USED | jt808.BEIDOU_USED
    local = datetime.fromisoformat(ping["ts"]).astimezone(jt808.GMT8).replace(tzinfo=None)
    extras = {0x31: bytes([int(ping.get("satellites") or 12)])}
    if video_lost:
        extras[0x15] = video_lost.to_bytes(4, "big")
    return jt808.Location(
        0, status, ping["lat"], ping["lon"], 50, ping.get("speed_kmh") or 0.0, int(ping.get("heading_deg") or 0),
        local, extras,
    )  # fmt: skip


class Jt808Terminal:
    """Registers once, authenticates on every connection, and sends its frames one at a time, each answered by a
    0x8001 for its serial before the next; a lost connection or a failure answer means: reconnect, send again."""

    def __init__(self, port: int, phone: str) -> None:
        self._port, self._phone = port, phone.zfill(12)
        self._queue: asyncio.Queue[tuple[int, bytes, asyncio.Future[None]]] = asyncio.Queue()
        self._code: str | None = None
        self._serial = 0
        self._reader: asyncio.StreamReader
        self._writer: asyncio.StreamWriter
        self._splitter: jt808.FrameSplitter
        self._task = asyncio.create_task(self._run())

    def submit(self, message_id: int, body: bytes) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((message_id, body, done))
        return done

    def report(
        self, ping: dict[str, Any], late: tuple[dict[str, Any], ...], *, video_lost: int = 0
    ) -> list[asyncio.Future[None]]:
        """Blind-area fixes first (0x0704, type 1), then the current one (0x0200)."""
        futures = [
            self.submit(MessageId.BATCH_LOCATION, jt808.encode_batch([location(p) for p in chunk], location_type=1))
            for chunk in (late[i : i + BATCH_ITEMS] for i in range(0, len(late), BATCH_ITEMS))
        ]
        futures.append(self.submit(MessageId.LOCATION, jt808.encode_location(location(ping, video_lost))))
        return futures

    def heartbeat(self) -> asyncio.Future[None]:
        return self.submit(MessageId.HEARTBEAT, b"")

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        pending: tuple[int, bytes, asyncio.Future[None]] | None = None
        while True:
            try:
                self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self._port)
                self._splitter = jt808.FrameSplitter()
                try:
                    await self._log_in()
                    while True:
                        pending = pending or await self._queue.get()
                        message_id, body, done = pending
                        if await self._ask(message_id, body) != Result.SUCCESS:
                            raise ConnectionError(f"0x{message_id:04x} not accepted")
                        done.set_result(None)
                        pending = None
                finally:
                    self._writer.close()
            except (OSError, TimeoutError, asyncio.IncompleteReadError, jt808.Jt808Error) as e:
                log.debug("terminal %s: %s; reconnecting", self._phone, e)
                await asyncio.sleep(_RETRY_S)

    async def _log_in(self) -> None:
        if self._code is None:
            registration = jt808.Registration(43, 501, "KJ", "KJ-SIM", "S0001", 1, "湘E00000")
            reply = await self._exchange(MessageId.REGISTER, jt808.encode_registration(registration, wide=False))
            if reply.body[2] != RegisterResult.SUCCESS:
                raise ConnectionError(f"registration refused ({reply.body[2]})")
            self._code = reply.body[3:].decode()
        auth = jt808.encode_authentication(jt808.Authentication(self._code), wide=False)
        if await self._ask(MessageId.AUTHENTICATE, auth) != Result.SUCCESS:
            self._code = None
            raise ConnectionError("authentication refused")

    async def _ask(self, message_id: int, body: bytes) -> int:
        return jt808.decode_general_response((await self._exchange(message_id, body)).body).result

    async def _exchange(self, message_id: int, body: bytes) -> jt808.Frame:
        """One frame out on the current connection, the platform's answer back."""
        self._serial = (self._serial + 1) & 0xFFFF
        for frame in jt808.encode_frames(message_id, body, phone=self._phone, serial=self._serial):
            self._writer.write(frame)
        await self._writer.drain()
        while True:
            data = await asyncio.wait_for(self._reader.read(4096), 30)
            if not data:
                raise asyncio.IncompleteReadError(b"", None)
            if frames := self._splitter.feed(data):
                return jt808.parse_frame(frames[-1])


class RawTopicRelay:
    """Another system relaying pings onto `kuaijing.telemetry.raw` (acks=all, idempotent), keyed by unit."""

    def __init__(self, kafka: KafkaClient) -> None:
        self._producer = AIOKafkaProducer(
            **client_options(kafka), acks="all", enable_idempotence=True, linger_ms=5, client_id="kuaijing-sim"
        )

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def relay(self, pings: list[dict[str, Any]]) -> list[asyncio.Future[Any]]:
        """Handed to the producer in order now; each future is done when the broker acknowledged."""
        futures = []
        for ping in pings:
            value = orjson.dumps(ping)
            while True:
                try:
                    futures.append(
                        await self._producer.send(TELEMETRY_RAW.name, value, key=str(ping["unit_id"]).encode())
                    )
                    break
                except KafkaError as e:
                    log.warning("raw topic: %s; sending again", e)
                    await asyncio.sleep(_RETRY_S)
        return futures
