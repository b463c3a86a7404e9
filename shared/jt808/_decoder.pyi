"""The compiled JT/T 808 hot path (`_decoder.c`); each function returns None for input the Python path must take."""

from shared.jt808.header import Frame, Header

def parse_frame(wire: bytes, /) -> Frame | None: ...
def position_record(body: bytes, unit_id: str, utc_offset_min: int, /) -> dict[str, object] | None: ...
def general_response(to: Header, serial: int, result: int, /) -> bytes | None: ...
def position_value(
    body: bytes,
    unit_json: bytes,
    platform_json: bytes,
    tail: bytes,
    utc_offset_min: int,
    latest_us: int,
    resolution: int,
    /,
) -> bytes | None: ...
