"""Message headers (2011/2013 and 2019 layouts), whole frames, and subpacket reassembly."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from shared.jt808 import _decoder
from shared.jt808.framing import (
    FLAG,
    MAX_BODY,
    checksum,
    escape,
    unescape,
)
from shared.jt808.messages import Jt808Error


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


class Frame(NamedTuple):
    """A named tuple like `Header`: the compiled decoder builds both without calling into Python."""

    header: Header
    body: bytes


def bcd_digits(data: bytes) -> str:
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
        phone=bcd_digits(raw[phone_at:serial_at]),
        serial=int.from_bytes(raw[serial_at : serial_at + 2], "big"),
        packet_total=int.from_bytes(raw[serial_at + 2 : serial_at + 4], "big") if subpackaged else None,
        packet_index=int.from_bytes(raw[serial_at + 4 : serial_at + 6], "big") if subpackaged else None,
    )
    return header, size


def parse_frame(wire: bytes) -> Frame:
    """One frame as it travels, flags included: unescape, verify the checksum and the length arithmetic.

    The compiled decoder (`_decoder.c`) parses a well-formed frame; whatever it declines, `reference_parse_frame`
    parses or says what is wrong with."""
    return _decoder.parse_frame(wire) or reference_parse_frame(wire)


def reference_parse_frame(wire: bytes) -> Frame:
    """`parse_frame` in Python: the rules' reference, and the error messages."""
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


def _head_to_serial(header: Header, body_length: int) -> bytes:
    """A header's bytes before its serial: message id, properties, version (2019) and phone."""
    wide = header.protocol_version is not None
    phone_len = 10 if wide else 6
    if not header.phone.isdigit() or len(header.phone) > 2 * phone_len:
        raise Jt808Error(f"phone {header.phone!r} does not fit {2 * phone_len} BCD digits")
    props = body_length | (header.encryption << 10)
    props |= (0x4000 if header.version_flag else 0) | (0x2000 if header.subpackaged else 0)
    head = header.message_id.to_bytes(2, "big") + props.to_bytes(2, "big")
    if wide:
        head += bytes([header.protocol_version or 0])
    return head + bytes.fromhex(header.phone.rjust(2 * phone_len, "0"))


def encode_frame(header: Header, body: bytes) -> bytes:
    """The wire form of one frame with exactly this header (`body_length` is taken from `body`)."""
    if len(body) > MAX_BODY:
        raise Jt808Error(f"a body of {len(body)} bytes needs subpackets")
    head = _head_to_serial(header, len(body)) + header.serial.to_bytes(2, "big")
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
