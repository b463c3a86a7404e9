"""0x7e framing: escapes, the XOR check code, and cutting a TCP stream into frames."""

from __future__ import annotations

from shared.jt808.messages import Jt808Error

FLAG = 0x7E
ESCAPE = 0x7D
MAX_BODY = 1023
MAX_FRAME = 2 * (21 + MAX_BODY + 1) + 2
"""The longest escaped frame a conforming terminal can send: every byte escaped, plus the two flags."""


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

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not yet ended."""
        return len(self._buffer)

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
