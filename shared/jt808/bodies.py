"""Message bodies: registration, authentication, replies, locations with their additional items, batch
uploads and the JT/T 1078 signalling bodies."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from typing import NamedTuple

from shared.jt808 import _decoder
from shared.jt808.header import Header, bcd_digits, encode_frames
from shared.jt808.messages import GMT8, Jt808Error, MessageId, RegisterResult


class _Reader:
    """Big-endian reads that raise `Jt808Error` instead of running off the end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.at + n > len(self.data):
            raise Jt808Error(f"body too short: needs {n} bytes at {self.at}, has {len(self.data) - self.at}")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int.from_bytes(self.take(2), "big")

    def u32(self) -> int:
        return int.from_bytes(self.take(4), "big")

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.at)

    @property
    def remaining(self) -> int:
        return len(self.data) - self.at


def _text(data: bytes) -> str:
    """GBK text, padding (NUL, space) stripped at the end."""
    try:
        return data.rstrip(b"\x00 ").decode("gbk")
    except UnicodeDecodeError as e:
        raise Jt808Error(f"text is not GBK: {data.hex()}") from e


def bcd_time(data: bytes) -> datetime | None:
    """BCD YYMMDDhhmmss as a naive local time of the terminal's clock; all zeros means no time."""
    digits = bcd_digits(data)
    if digits == "000000000000":
        return None
    try:
        return datetime(  # YY is always 20YY, never strptime's 1969 pivot
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
        )
    except ValueError as e:
        raise Jt808Error(f"not a time: {digits}") from e


@dataclass(frozen=True, slots=True)
class Registration:
    province: int
    city: int
    maker: str
    model: str
    terminal_model_id: str
    plate_color: int
    plate: str


def decode_registration(body: bytes, *, wide: bool) -> Registration:
    r = _Reader(body)
    province, city = r.u16(), r.u16()
    if wide:
        maker, model, terminal = r.take(11), r.take(30), r.take(30)
    elif len(body) >= 37:  # 2013: model BYTE[20]; 2011 bodies are shorter (model BYTE[8])
        maker, model, terminal = r.take(5), r.take(20), r.take(7)
    else:
        maker, model, terminal = r.take(5), r.take(8), r.take(7)
    color = r.u8()
    return Registration(
        province, city, _text(maker), _text(model).rstrip("\x00"), _text(terminal), color, _text(r.rest())
    )


@dataclass(frozen=True, slots=True)
class Authentication:
    auth_code: str
    imei: str | None = None
    software_version: str | None = None


def decode_authentication(body: bytes, *, wide: bool) -> Authentication:
    if not wide:
        return Authentication(_text(body))
    r = _Reader(body)
    code = _text(r.take(r.u8()))
    return Authentication(code, _text(r.take(15)), _text(r.take(20)))


@dataclass(frozen=True, slots=True)
class GeneralResponse:
    reply_serial: int
    reply_id: int
    result: int


def decode_general_response(body: bytes) -> GeneralResponse:
    r = _Reader(body)
    return GeneralResponse(r.u16(), r.u16(), r.u8())


def encode_general_response(reply_serial: int, reply_id: int, result: int) -> bytes:
    return reply_serial.to_bytes(2, "big") + reply_id.to_bytes(2, "big") + bytes([result])


def encode_general_response_frame(to: Header, *, serial: int, result: int) -> bytes:
    """The platform's general response (0x8001) to the frame with header `to`, mirroring its number and version:
    the reply to every location a terminal sends, so it is compiled (`_decoder.c`); whatever the compiled
    function declines, `reference_general_response_frame` encodes or says what is wrong with."""
    return _decoder.general_response(to, serial, result) or reference_general_response_frame(
        to, serial=serial, result=result
    )


def reference_general_response_frame(to: Header, *, serial: int, result: int) -> bytes:
    """`encode_general_response_frame` in Python: the reference."""
    body = encode_general_response(to.serial, to.message_id, result)
    [frame] = encode_frames(
        MessageId.PLATFORM_RESPONSE, body, phone=to.phone, serial=serial, protocol_version=to.protocol_version
    )
    return frame


def encode_register_response(reply_serial: int, result: int, auth_code: str | None) -> bytes:
    code = auth_code.encode("gbk") if result == RegisterResult.SUCCESS and auth_code else b""
    return reply_serial.to_bytes(2, "big") + bytes([result]) + code


# status bits (S2013 table 25)
ACC_ON, POSITIONED, SOUTH, WEST = 1 << 0, 1 << 1, 1 << 2, 1 << 3
GPS_USED, BEIDOU_USED, GLONASS_USED, GALILEO_USED = 1 << 18, 1 << 19, 1 << 20, 1 << 21


class Location(NamedTuple):
    """Immutable; a named tuple for the same reason as `Header`."""

    alarm: int
    status: int
    latitude: float
    longitude: float
    altitude_m: int
    speed_kmh: float
    course: int
    local_time: datetime | None
    extras: dict[int, bytes]

    @property
    def positioned(self) -> bool:
        return bool(self.status & POSITIONED)

    def time_utc(self, clock: timezone = GMT8) -> datetime | None:
        return None if self.local_time is None else self.local_time.replace(tzinfo=clock).astimezone(UTC)

    @property
    def mileage_km(self) -> float | None:
        raw = self.extras.get(0x01)
        return None if raw is None or len(raw) != 4 else int.from_bytes(raw, "big") / 10

    @property
    def signal_strength(self) -> int | None:
        raw = self.extras.get(0x30)
        return None if not raw else raw[0]

    @property
    def satellites(self) -> int | None:
        raw = self.extras.get(0x31)
        return None if not raw else raw[0]

    def video_alarm_word(self, item: int) -> int | None:
        """The JT/T 1078 items: 0x14 video alarms, 0x15 signal lost and 0x16 occluded per channel bit."""
        raw = self.extras.get(item)
        return None if raw is None else int.from_bytes(raw, "big")


_BASIC = struct.Struct(">IIIIHHH6s")
"""The 28 bytes every location starts with (S2013 table 23)."""


def decode_location(body: bytes) -> Location:
    # struct and plain index arithmetic rather than the reader: this runs once per position report.
    if len(body) < _BASIC.size:
        raise Jt808Error(f"location body of {len(body)} bytes is shorter than its 28-byte basic block")
    alarm, status, lat_raw, lon_raw, altitude, speed, course, when = _BASIC.unpack_from(body)
    if altitude > 0x7FFF:  # the standard says unsigned; terminals below sea level send two's complement
        altitude -= 0x10000
    extras: dict[int, bytes] = {}
    at, end = _BASIC.size, len(body)
    while at < end:
        if at + 2 > end:
            raise Jt808Error("additional item cut short")
        item, length = body[at], body[at + 1]
        if at + 2 + length > end:
            raise Jt808Error(f"additional item 0x{item:02x} claims {length} bytes, {end - at - 2} remain")
        extras[item] = body[at + 2 : at + 2 + length]  # trust the item's own length, whatever the table says
        at += 2 + length
    return Location(
        alarm=alarm,
        status=status,
        latitude=(-lat_raw if status & SOUTH else lat_raw) / 1e6,
        longitude=(-lon_raw if status & WEST else lon_raw) / 1e6,
        altitude_m=altitude,
        speed_kmh=speed / 10,
        course=course,
        local_time=bcd_time(when),
        extras=extras,
    )


@dataclass(frozen=True, slots=True)
class Batch:
    location_type: int
    """0 normal batch, 1 blind-area re-upload (补报): late pings."""
    locations: list[Location]


def decode_batch(body: bytes) -> Batch:
    r = _Reader(body)
    count, location_type = r.u16(), r.u8()
    locations = [decode_location(r.take(r.u16())) for _ in range(count)]
    if r.remaining:
        raise Jt808Error(f"{r.remaining} bytes after {count} locations")
    return Batch(location_type, locations)


@dataclass(frozen=True, slots=True)
class AvAttributes:
    audio_encoding: int
    audio_channels: int
    sample_rate: int
    sample_bits: int
    audio_frame_length: int
    audio_output: int
    video_encoding: int
    max_audio_channels: int
    max_video_channels: int


def decode_av_attributes(body: bytes) -> AvAttributes:
    r = _Reader(body)
    return AvAttributes(r.u8(), r.u8(), r.u8(), r.u8(), r.u16(), r.u8(), r.u8(), r.u8(), r.u8())


@dataclass(frozen=True, slots=True)
class Resource:
    channel: int
    start: datetime | None
    end: datetime | None
    alarm64: int
    av_type: int
    stream: int
    storage: int
    size: int


@dataclass(frozen=True, slots=True)
class ResourceList:
    reply_serial: int
    total: int
    items: list[Resource]


def decode_resource_list(body: bytes) -> ResourceList:
    r = _Reader(body)
    reply_serial, total = r.u16(), r.u32()
    items = []
    while r.remaining:
        items.append(
            Resource(
                r.u8(),
                bcd_time(r.take(6)),
                bcd_time(r.take(6)),
                int.from_bytes(r.take(8), "big"),
                r.u8(),
                r.u8(),
                r.u8(),
                r.u32(),
            )
        )
    return ResourceList(reply_serial, total, items)


@dataclass(frozen=True, slots=True)
class TransmissionStatus:
    channel: int
    loss_rate: int


def decode_transmission_status(body: bytes) -> TransmissionStatus:
    r = _Reader(body)
    return TransmissionStatus(r.u8(), r.u8())
