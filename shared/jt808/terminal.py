"""Terminal-side encoders: what a terminal sends, for simulators, benchmarks and round-trip tests."""

from __future__ import annotations

from datetime import datetime

from shared.jt808.bodies import (
    SOUTH,
    WEST,
    Authentication,
    Location,
    Registration,
)
from shared.jt808.messages import Jt808Error


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
