"""JT/T 808 (2011, 2013, 2019 headers) and the JT/T 1078 signalling bodies: framing, decoding, encoding.

Pure functions over bytes, no I/O and no asyncio, so the gateway, the raw-topic consumer and the tests share them.
Every malformed input raises `Jt808Error` and nothing else. Layouts follow the brief's `jt808.md` (which cites the
standards' tables); the quirks of real terminals it lists are handled here: an additional item's own length byte
is trusted over the table, a 2019-flagged header of 2013 size is accepted when only that length adds up, altitude is
read as signed, and the terminal clock's zone is the caller's (GMT+8 unless the terminal is configured otherwise).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from enum import IntEnum
from typing import NamedTuple

FLAG = 0x7E
ESCAPE = 0x7D
MAX_BODY = 1023
MAX_FRAME = 2 * (21 + MAX_BODY + 1) + 2
"""The longest escaped frame a conforming terminal can send: every byte escaped, plus the two flags."""

GMT8 = timezone(timedelta(hours=8))


class Jt808Error(ValueError):
    """A frame or body that cannot be decoded; the message says what is wrong."""


class MessageId(IntEnum):
    TERMINAL_RESPONSE = 0x0001
    HEARTBEAT = 0x0002
    LOGOUT = 0x0003
    REGISTER = 0x0100
    AUTHENTICATE = 0x0102
    LOCATION = 0x0200
    BATCH_LOCATION = 0x0704
    AV_ATTRIBUTES = 0x1003
    RESOURCE_LIST = 0x1205
    PLATFORM_RESPONSE = 0x8001
    REGISTER_RESPONSE = 0x8100
    TRANSMISSION_STATUS = 0x9105


class Result(IntEnum):
    """0x8001 / 0x0001 result codes (S2013 tables 4, 5)."""

    SUCCESS = 0
    FAILURE = 1
    MESSAGE_ERROR = 2
    NOT_SUPPORTED = 3


class RegisterResult(IntEnum):
    """0x8100 result codes (S2013 table 8)."""

    SUCCESS = 0
    VEHICLE_REGISTERED = 1
    VEHICLE_UNKNOWN = 2
    TERMINAL_REGISTERED = 3
    TERMINAL_UNKNOWN = 4


# framing


def unescape(data: bytes) -> bytes:
    """Reverse 0x7D 0x02 -> 0x7E and 0x7D 0x01 -> 0x7D; any other byte after 0x7D is an error."""
    if ESCAPE not in data:
        return data
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        b = data[i]
        if b == ESCAPE:
            if i + 1 >= n or data[i + 1] not in (0x01, 0x02):
                raise Jt808Error(f"bad escape 7d {data[i + 1]:02x} at byte {i}" if i + 1 < n else "frame ends in 7d")
            out.append(FLAG if data[i + 1] == 0x02 else ESCAPE)
            i += 2
        else:
            out.append(b)
            i += 1
    return bytes(out)


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def checksum(data: bytes) -> int:
    """XOR of every byte, folded as one big integer: a few big-int operations instead of a loop per byte."""
    if not data:
        return 0
    size = 1 << (len(data) - 1).bit_length()
    value = int.from_bytes(data.rjust(size, b"\x00"), "big")
    while size > 1:
        size //= 2
        value = (value >> (8 * size)) ^ (value & ((1 << (8 * size)) - 1))
    return value


class FrameSplitter:
    """Cuts a TCP byte stream into frames: junk before a flag is dropped, `7e 7e` resynchronises, and a frame
    longer than any terminal can send is discarded rather than buffered without end."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while True:
            start = self._buffer.find(FLAG)
            if start < 0:
                self.discarded += len(self._buffer)
                self._buffer.clear()
                return frames
            if start:
                self.discarded += start
                del self._buffer[:start]
            end = self._buffer.find(FLAG, 1)
            if end < 0:
                if len(self._buffer) > MAX_FRAME:
                    self.discarded += len(self._buffer)
                    self._buffer.clear()
                return frames
            if end == 1:  # 7e 7e: the first flag closed something we never saw; start again at the second
                del self._buffer[:1]
                continue
            frames.append(bytes(self._buffer[: end + 1]))
            del self._buffer[: end + 1]


class Header(NamedTuple):
    """Immutable; a named tuple rather than a frozen dataclass because one is built per frame on the hot path."""

    message_id: int
    body_length: int
    encryption: int
    subpackaged: bool
    version_flag: bool
    protocol_version: int | None
    phone: str
    serial: int
    packet_total: int | None = None
    packet_index: int | None = None

    @property
    def is_2019(self) -> bool:
        return self.protocol_version is not None

    @property
    def terminal_id(self) -> str:
        """Digits without leading zeros: the 2013 and 2019 forms of a number name the same terminal."""
        return self.phone.lstrip("0") or "0"


@dataclass(frozen=True, slots=True)
class Frame:
    header: Header
    body: bytes


def _bcd(data: bytes) -> str:
    digits = data.hex()
    if not digits.isdigit():
        raise Jt808Error(f"not BCD: {digits}")
    return digits


def _header(raw: bytes, *, wide: bool) -> tuple[Header, int]:
    """Parse a header of the 2019 (`wide`) or 2011/2013 layout; returns it and its length."""
    message_id = int.from_bytes(raw[0:2], "big")
    props = int.from_bytes(raw[2:4], "big")
    subpackaged = bool(props & 0x2000)
    phone_at, phone_len = (5, 10) if wide else (4, 6)
    size = phone_at + phone_len + 2 + (4 if subpackaged else 0)
    if len(raw) < size:
        raise Jt808Error(f"header needs {size} bytes, frame has {len(raw)}")
    serial_at = phone_at + phone_len
    header = Header(
        message_id=message_id,
        body_length=props & 0x03FF,
        encryption=(props >> 10) & 0x07,
        subpackaged=subpackaged,
        version_flag=bool(props & 0x4000),
        protocol_version=raw[4] if wide else None,
        phone=_bcd(raw[phone_at:serial_at]),
        serial=int.from_bytes(raw[serial_at : serial_at + 2], "big"),
        packet_total=int.from_bytes(raw[serial_at + 2 : serial_at + 4], "big") if subpackaged else None,
        packet_index=int.from_bytes(raw[serial_at + 4 : serial_at + 6], "big") if subpackaged else None,
    )
    return header, size


def parse_frame(wire: bytes) -> Frame:
    """One frame as it travels, flags included: unescape, verify the checksum and the length arithmetic."""
    if len(wire) < 2 or wire[0] != FLAG or wire[-1] != FLAG:
        raise Jt808Error("a frame starts and ends with 7e")
    raw = unescape(wire[1:-1])
    if len(raw) < 13:
        raise Jt808Error(f"frame of {len(raw)} bytes is shorter than any header")
    content, expected = raw[:-1], raw[-1]
    actual = checksum(content)
    if actual != expected:
        raise Jt808Error(f"checksum {expected:02x} does not match the content's {actual:02x}")
    props = int.from_bytes(content[2:4], "big")
    body_length = props & 0x03FF
    # bit14 marks a 2019 header, but some terminals set it on a 2013-sized header: trust the arithmetic.
    layouts = (True, False) if props & 0x4000 else (False,)
    for wide in layouts:
        try:
            header, size = _header(content, wide=wide)
        except Jt808Error:
            continue
        if size + body_length == len(content):
            if header.encryption:
                raise Jt808Error(f"encrypted bodies (method {header.encryption}) are not supported")
            return Frame(header, content[size:])
    raise Jt808Error(f"length does not add up: {len(content)} bytes for a body of {body_length}")


def encode_frame(header: Header, body: bytes) -> bytes:
    """The wire form of one frame with exactly this header (`body_length` is taken from `body`)."""
    if len(body) > MAX_BODY:
        raise Jt808Error(f"a body of {len(body)} bytes needs subpackets")
    wide = header.protocol_version is not None
    phone_len = 10 if wide else 6
    if not header.phone.isdigit() or len(header.phone) > 2 * phone_len:
        raise Jt808Error(f"phone {header.phone!r} does not fit {2 * phone_len} BCD digits")
    props = len(body) | (header.encryption << 10)
    props |= (0x4000 if header.version_flag else 0) | (0x2000 if header.subpackaged else 0)
    head = header.message_id.to_bytes(2, "big") + props.to_bytes(2, "big")
    if wide:
        head += bytes([header.protocol_version or 0])
    head += bytes.fromhex(header.phone.rjust(2 * phone_len, "0")) + header.serial.to_bytes(2, "big")
    if header.subpackaged:
        head += (header.packet_total or 0).to_bytes(2, "big") + (header.packet_index or 0).to_bytes(2, "big")
    content = head + body
    return b"\x7e" + escape(content + bytes([checksum(content)])) + b"\x7e"


def encode_frames(
    message_id: int, body: bytes, *, phone: str, serial: int, protocol_version: int | None = None
) -> list[bytes]:
    """Wire frames for one message; bodies over 1023 bytes are split into packets with consecutive serials.
    `protocol_version` set means a 2019 header (the reply mirrors the terminal's version)."""
    chunks = [body[i : i + MAX_BODY] for i in range(0, len(body), MAX_BODY)] or [b""]
    total = len(chunks)
    return [
        encode_frame(
            Header(
                message_id=message_id,
                body_length=len(chunk),
                encryption=0,
                subpackaged=total > 1,
                version_flag=protocol_version is not None,
                protocol_version=protocol_version,
                phone=phone,
                serial=(serial + index - 1) & 0xFFFF,
                packet_total=total if total > 1 else None,
                packet_index=index if total > 1 else None,
            ),
            chunk,
        )
        for index, chunk in enumerate(chunks, start=1)
    ]


@dataclass
class Reassembler:
    """Joins subpackets (same terminal and message id, consecutive serials) into one body."""

    max_pending: int = 64
    _pending: dict[tuple[str, int, int], dict[int, bytes]] = field(default_factory=dict)

    def add(self, frame: Frame) -> Frame | None:
        header = frame.header
        if not header.subpackaged:
            return frame
        total, index = header.packet_total or 0, header.packet_index or 0
        if not 1 <= index <= total:
            raise Jt808Error(f"packet {index} of {total}")
        first_serial = (header.serial - index + 1) & 0xFFFF
        key = (header.phone, header.message_id, first_serial)
        if key not in self._pending and len(self._pending) >= self.max_pending:
            self._pending.pop(next(iter(self._pending)))
        parts = self._pending.setdefault(key, {})
        parts[index] = frame.body
        if len(parts) < total:
            return None
        del self._pending[key]
        body = b"".join(parts[i] for i in range(1, total + 1))
        whole = Header(
            message_id=header.message_id,
            body_length=len(body),
            encryption=0,
            subpackaged=False,
            version_flag=header.version_flag,
            protocol_version=header.protocol_version,
            phone=header.phone,
            serial=first_serial,
        )
        return Frame(whole, body)


# bodies


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
    digits = _bcd(data)
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


# pings


def gnss_of(status: int) -> str | None:
    gps, bds = bool(status & GPS_USED), bool(status & BEIDOU_USED)
    if gps and bds:
        return "BDS+GPS"
    if bds:
        return "BDS"
    if gps:
        return "GPS"
    if status & GLONASS_USED:
        return "GLONASS"
    if status & GALILEO_USED:
        return "GALILEO"
    return None


def position_ping(location: Location, *, unit_id: str, clock: timezone = GMT8) -> dict[str, object]:
    """The contract's position ping for one location; raises `Jt808Error` when it cannot be one."""
    if abs(location.latitude) > 90:
        swapped = abs(location.longitude) <= 90
        hint = ": latitude and longitude look swapped" if swapped else ""
        raise Jt808Error(f"latitude {location.latitude} is out of range{hint}")
    ts = location.time_utc(clock)
    if ts is None:
        raise Jt808Error("location has no time (all-zero BCD)")
    ping: dict[str, object] = {
        "kind": "position",
        "unit_id": unit_id,
        "ts": ts.isoformat(),
        "lat": location.latitude,
        "lon": location.longitude,
        "speed_kmh": location.speed_kmh,
        "heading_deg": location.course if 0 <= location.course < 360 else None,
        "altitude_m": float(location.altitude_m),
        "fix": location.positioned,
    }
    if (gnss := gnss_of(location.status)) is not None:
        ping["gnss"] = gnss
    if (satellites := location.satellites) is not None:
        ping["satellites"] = satellites
    return ping


def video_pings(location: Location, *, unit_id: str, clock: timezone = GMT8) -> Iterator[dict[str, object]]:
    """Video pings for channels the JT/T 1078 items flag: signal lost -> `offline`, occluded -> `fault`."""
    if 0x15 not in location.extras and 0x16 not in location.extras:
        return
    ts = location.time_utc(clock)
    if ts is None:
        return
    lost = location.video_alarm_word(0x15) or 0
    occluded = location.video_alarm_word(0x16) or 0
    for bit in range(32):
        mask = 1 << bit
        if lost & mask or occluded & mask:
            yield {
                "kind": "video",
                "unit_id": unit_id,
                "ts": ts.isoformat(),
                "channel": bit + 1,
                "state": "offline" if lost & mask else "fault",
            }


# terminal-side encoders: what a terminal sends, for simulators, benchmarks and round-trip tests


def _bcd_time(moment: datetime) -> bytes:
    return bytes.fromhex(moment.strftime("%y%m%d%H%M%S"))


def _padded(text: str, size: int) -> bytes:
    data = text.encode("gbk")
    if len(data) > size:
        raise Jt808Error(f"{text!r} does not fit {size} bytes")
    return data.ljust(size, b"\x00")


def encode_location(location: Location) -> bytes:
    """The 0x0200 body of a location (the inverse of `decode_location`)."""
    if location.local_time is None:
        raise Jt808Error("a location needs a time")
    status = location.status & ~(SOUTH | WEST)
    status |= (SOUTH if location.latitude < 0 else 0) | (WEST if location.longitude < 0 else 0)
    body = bytearray()
    body += location.alarm.to_bytes(4, "big") + status.to_bytes(4, "big")
    body += round(abs(location.latitude) * 1e6).to_bytes(4, "big")
    body += round(abs(location.longitude) * 1e6).to_bytes(4, "big")
    body += (location.altitude_m & 0xFFFF).to_bytes(2, "big")
    body += round(location.speed_kmh * 10).to_bytes(2, "big") + location.course.to_bytes(2, "big")
    body += _bcd_time(location.local_time)
    for item, value in location.extras.items():
        body += bytes([item, len(value)]) + value
    return bytes(body)


def encode_batch(locations: list[Location], *, location_type: int) -> bytes:
    body = bytearray(len(locations).to_bytes(2, "big") + bytes([location_type]))
    for location in locations:
        item = encode_location(location)
        body += len(item).to_bytes(2, "big") + item
    return bytes(body)


def encode_registration(registration: Registration, *, wide: bool) -> bytes:
    maker, model, terminal = (11, 30, 30) if wide else (5, 20, 7)
    return (
        registration.province.to_bytes(2, "big")
        + registration.city.to_bytes(2, "big")
        + _padded(registration.maker, maker)
        + _padded(registration.model, model)
        + _padded(registration.terminal_model_id, terminal)
        + bytes([registration.plate_color])
        + registration.plate.encode("gbk")
    )


def encode_authentication(auth: Authentication, *, wide: bool) -> bytes:
    code = auth.auth_code.encode("gbk")
    if not wide:
        return code
    return bytes([len(code)]) + code + _padded(auth.imei or "", 15) + _padded(auth.software_version or "", 20)
