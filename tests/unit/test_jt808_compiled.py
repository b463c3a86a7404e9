"""The compiled JT/T 808 hot path (`shared/jt808/_decoder.c`) against the Python reference beside it.

Whatever the compiled functions answer must be exactly what the reference answers: the frame as repr, the location
as the record ingest publishes, compared as JSON bytes (so an int where the reference has a float, or a bool where it
has an int, fails). They must decline exactly the input the reference refuses, would turn into more than one ping,
or whose ping is outside the contract's ranges: the intake publishes a compiled record without validating it.
"""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.ingest.domain.telemetry import (
    PositionWriter,
    TelemetryRejected,
    TelemetryRules,
    accept_decoded_position,
    reference_accept_ping,
)
from services.ingest.terminal_frames import location_candidates
from shared import jt808
from shared.contract.registry import UnitDirectory, UnitKind, UnitRef
from shared.contract.schemas import PositionPing, PositionRecord, Source
from shared.contract.topics import POSITIONS
from shared.jt808 import Jt808Error, _decoder
from shared.jt808.header import Header, reference_parse_frame

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent.parent / "data" / "jt808_vectors.json").read_text())


def reference_frame(wire: bytes) -> jt808.Frame | None:
    try:
        return reference_parse_frame(wire)
    except Jt808Error:
        return None


def assert_same_frame(wire: bytes) -> None:
    compiled, reference = _decoder.parse_frame(wire), reference_frame(wire)
    assert repr(compiled) == repr(reference)
    assert jt808.parse_frame(wire) == reference if reference is not None else compiled is None


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300), flagged=st.booleans())
def test_arbitrary_bytes_are_declined_or_parsed_as_the_reference_parses_them(data: bytes, flagged: bool) -> None:
    assert_same_frame(b"\x7e" + data + b"\x7e" if flagged else data)


@pytest.mark.no_cover
@settings(max_examples=1000, deadline=None)
@given(vector=st.sampled_from(VECTORS), position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_mutated_real_frames_are_declined_or_parsed_as_the_reference_parses_them(
    vector: dict[str, Any], position: int, value: int
) -> None:
    data = bytearray(bytes.fromhex(vector["hex"]))
    assert_same_frame(bytes(data))
    data[position % len(data)] = value
    assert_same_frame(bytes(data))


@settings(max_examples=500, deadline=None)
@given(
    message_id=st.integers(0, 0xFFFF),
    body=st.binary(max_size=1023),
    phone=st.text("0123456789", min_size=1, max_size=12),
    serial=st.integers(0, 0xFFFF),
    layout=st.sampled_from(["2013", "2019", "2019 flag on a 2013 header"]),
    packet=st.one_of(st.none(), st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))),
    encryption=st.sampled_from([0, 0, 1]),
)
def test_every_header_layout_parses_as_the_reference_parses_it(
    message_id: int,
    body: bytes,
    phone: str,
    serial: int,
    layout: str,
    packet: tuple[int, int] | None,
    encryption: int,
) -> None:
    header = Header(
        message_id=message_id,
        body_length=len(body),
        encryption=encryption,
        subpackaged=packet is not None,
        version_flag=layout != "2013",
        protocol_version=1 if layout == "2019" else None,
        phone=phone,
        serial=serial,
        packet_total=None if packet is None else packet[0],
        packet_index=None if packet is None else packet[1],
    )
    wire = jt808.encode_frame(header, body)
    assert_same_frame(wire)
    if not encryption:
        assert _decoder.parse_frame(wire) is not None


def bcd(*fields: int) -> bytes:
    return bytes(16 * (f // 10) + f % 10 for f in fields)


times = st.one_of(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31, 23, 59, 59)).map(
        lambda t: bcd(t.year - 2000, t.month, t.day, t.hour, t.minute, t.second)
    ),
    st.lists(st.integers(0, 99), min_size=6, max_size=6).map(lambda f: bcd(*f)),  # Feb 30, hour 24, month 0
    st.binary(min_size=6, max_size=6),  # not BCD
    st.just(bytes(6)),  # no time
)
items = st.lists(
    st.tuples(st.sampled_from([0x01, 0x14, 0x15, 0x16, 0x25, 0x30, 0x31, 0xE1]), st.binary(max_size=6)), max_size=5
)


@pytest.mark.no_cover
@settings(max_examples=2000, deadline=None)
@given(
    alarm=st.integers(0, 2**32 - 1),
    status=st.integers(0, 2**32 - 1),
    lat=st.one_of(st.integers(0, 90_000_000), st.integers(0, 2**32 - 1), st.integers(0, 200)),
    lon=st.one_of(st.integers(0, 180_000_000), st.integers(0, 2**32 - 1), st.integers(0, 200)),
    altitude=st.integers(0, 0xFFFF),
    speed=st.one_of(st.integers(0, 4_000), st.integers(0, 0xFFFF)),
    course=st.one_of(st.integers(0, 359), st.integers(0, 0xFFFF)),
    when=times,
    extras=items,
    cut=st.one_of(st.none(), st.integers(0, 60)),
    offset_min=st.sampled_from([480, 0, -300, 345, 840, -720]),
)
def test_a_location_body_gives_the_references_ping_or_is_declined(
    alarm: int,
    status: int,
    lat: int,
    lon: int,
    altitude: int,
    speed: int,
    course: int,
    when: bytes,
    extras: list[tuple[int, bytes]],
    cut: int | None,
    offset_min: int,
) -> None:
    body = struct.pack(">IIIIHHH", alarm, status, lat, lon, altitude, speed, course) + when
    body += b"".join(bytes([item, len(value)]) + value for item, value in extras)
    body = body if cut is None else body[:cut]
    compiled = jt808.compiled_position_record(body, "U-1", offset_min)
    clock = timezone(timedelta(minutes=offset_min))
    try:
        location = jt808.decode_location(body)
        reference: dict[str, object] | None = jt808.position_ping(location, unit_id="U-1", clock=clock)
        videos = list(jt808.video_pings(location, unit_id="U-1", clock=clock))
    except Jt808Error:
        reference, videos = None, []
    if reference is None or 0x15 in location.extras or 0x16 in location.extras or not in_contract(reference):
        assert compiled is None
    else:
        assert compiled is not None
        assert not videos
        assert_published_alike(compiled, reference, body, offset_min)


def in_contract(ping: dict[str, object]) -> bool:
    try:
        PositionPing.model_validate(ping)
    except ValidationError:
        return False
    return True


DIRECTORY = UnitDirectory.of(1, [UnitRef("U-1", "P-1", UnitKind.PATROL_CAR, "1")])


def assert_published_alike(
    compiled: dict[str, Any], reference: dict[str, object], body: bytes, offset_min: int = 480
) -> None:
    """The intake takes a compiled record without validating it: it must publish, byte for byte, what the reference
    ping publishes once validated (types included: a heading of 90 where the reference has 90.0 fails). The writer
    must write those bytes too, declining only a coordinate under 1e-4 degrees (which JSON writes with an exponent)."""
    now = datetime(2100, 1, 2, tzinfo=UTC)  # no generated time is ahead of it: both paths accept
    fast = accept_decoded_position(compiled, directory=DIRECTORY, source=Source.JT808, now=now)
    checked = reference_accept_ping(reference, directory=DIRECTORY, source=Source.JT808, now=now)
    published = POSITIONS.encode_fields(checked.value)
    assert POSITIONS.encode_fields(fast.value) == published
    PositionRecord.model_validate(fast.value)
    written = PositionWriter(directory=DIRECTORY, source=Source.JT808, now=now, rules=TelemetryRules()).write(
        body, "U-1", offset_min
    )
    if any(0 < abs(float(compiled[axis])) < 1e-4 for axis in ("lat", "lon")):
        assert written is None
    else:
        assert written == published


def test_real_location_frames_take_the_compiled_path_unless_the_reference_refuses_or_adds_video_pings() -> None:
    taken = 0
    for vector in VECTORS:
        frame = jt808.parse_frame(bytes.fromhex(vector["hex"]))
        if frame.header.message_id != jt808.MessageId.LOCATION:
            continue
        location = jt808.decode_location(frame.body)
        compiled = jt808.compiled_position_record(frame.body, "U-1", 480)
        try:
            reference = jt808.position_ping(location, unit_id="U-1")
        except Jt808Error:
            assert compiled is None
            continue
        videos = list(jt808.video_pings(location, unit_id="U-1"))
        if videos or {0x15, 0x16} & location.extras.keys() or not in_contract(reference):
            assert compiled is None
        else:
            assert compiled is not None
            assert_published_alike(compiled, reference, frame.body)
            taken += 1
    assert taken >= 3


def location_body(ts: datetime, *, lat: int = 27_200_000, lon: int = 111_400_000) -> bytes:
    """A plain 0x0200 body reporting at `ts` (UTC), its time written as a terminal on GMT+8 writes it."""
    local = ts.astimezone(jt808.GMT8)
    when = bcd(local.year - 2000, local.month, local.day, local.hour, local.minute, local.second)
    return struct.pack(">IIIIHHH", 0, jt808.POSITIONED | jt808.GPS_USED, lat, lon, 60, 425, 90) + when


@given(ahead_us=st.integers(-2_000_000, 2_000_000), skew_s=st.integers(0, 600))
def test_the_writer_takes_a_report_ahead_of_the_clock_exactly_when_accept_does(ahead_us: int, skew_s: int) -> None:
    """Microseconds either side of the allowance: the writer compares in whole microseconds as `_not_ahead`
    compares datetimes, and leaves what it refuses to the Python path, which says by how much."""
    ts = datetime(2026, 12, 2, 8, 30, 15, tzinfo=UTC)
    rules = TelemetryRules(max_future_skew=timedelta(seconds=skew_s))
    now = ts - timedelta(seconds=skew_s, microseconds=ahead_us)
    body = location_body(ts)
    written = PositionWriter(directory=DIRECTORY, source=Source.JT808, now=now, rules=rules).write(body, "U-1", 480)
    record = jt808.compiled_position_record(body, "U-1", 480)
    assert record is not None
    if ahead_us > 0:
        with pytest.raises(TelemetryRejected) as refused:
            accept_decoded_position(record, directory=DIRECTORY, source=Source.JT808, now=now, rules=rules)
        assert refused.value.reason == "future_timestamp"
        assert written is None
    else:
        accepted = accept_decoded_position(record, directory=DIRECTORY, source=Source.JT808, now=now, rules=rules)
        assert written == POSITIONS.encode_fields(accepted.value)


@pytest.mark.parametrize("unit_id", ["U-1", 'U-"1"', "U-\\1", "巡逻-1", "U-\n1", "U-\u20281"])
def test_the_writer_writes_the_units_and_platforms_ids_as_the_codec_does(unit_id: str) -> None:
    directory = UnitDirectory.of(1, [UnitRef(unit_id, f"P/{unit_id}", UnitKind.PATROL_CAR, "1")])
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    body = location_body(now - timedelta(minutes=1))
    record = jt808.compiled_position_record(body, unit_id, 480)
    assert record is not None
    accepted = accept_decoded_position(record, directory=directory, source=Source.JT808, now=now)
    writer = PositionWriter(directory=directory, source=Source.JT808, now=now, rules=TelemetryRules())
    assert writer.write(body, unit_id, 480) == POSITIONS.encode_fields(accepted.value)
    assert writer.write(body, unit_id, 480) == POSITIONS.encode_fields(accepted.value)  # the ids encoded once, kept


def test_the_writer_leaves_an_unknown_unit_to_the_python_path() -> None:
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    writer = PositionWriter(directory=DIRECTORY, source=Source.JT808, now=now, rules=TelemetryRules())
    assert writer.write(location_body(now), "U-2", 480) is None
    assert writer.write(location_body(now), "U-1", 480) is not None


@pytest.mark.parametrize("micro", [0, 1, 99, 100, 101, 1_000, 99_999, 100_000, 1_000_000, 89_999_999, 90_000_000])
def test_the_writer_writes_small_and_round_coordinates_as_orjson_does_or_declines(micro: int) -> None:
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    writer = PositionWriter(directory=DIRECTORY, source=Source.JT808, now=now, rules=TelemetryRules())
    for lat, lon in ((micro, 111_400_000), (27_200_000, micro), (micro, micro)):
        body = location_body(now, lat=lat, lon=lon)
        record = jt808.compiled_position_record(body, "U-1", 480)
        assert record is not None
        accepted = accept_decoded_position(record, directory=DIRECTORY, source=Source.JT808, now=now)
        written = writer.write(body, "U-1", 480)
        assert written is None if 0 < micro < 100 else written == POSITIONS.encode_fields(accepted.value)


def test_location_candidates_take_the_writer_for_a_plain_report_and_the_record_path_otherwise() -> None:
    now = datetime(2026, 12, 2, 9, tzinfo=UTC)
    unit = DIRECTORY.by_unit["U-1"]
    writer = PositionWriter(directory=DIRECTORY, source=Source.JT808, now=now, rules=TelemetryRules())
    plain = location_body(now - timedelta(seconds=5))
    with_video = plain + bytes([0x15, 4]) + (1).to_bytes(4, "big")
    for body, written in ((plain, True), (with_video, False)):
        [wire] = jt808.encode_frames(jt808.MessageId.LOCATION, body, phone="1", serial=1)
        frame = jt808.parse_frame(wire)
        candidates = location_candidates(frame, wire, unit=unit, origin="o", writer=writer)
        assert [c.written for c in candidates[:1]] == [written]
        assert (candidates[0].key, candidates[0].payload) == (b"U-1", wire)
    assert location_candidates(frame, wire, unit=unit)[0].decoded is False  # with video items: the Python path
    [wire] = jt808.encode_frames(jt808.MessageId.LOCATION, plain, phone="1", serial=1)
    assert location_candidates(jt808.parse_frame(wire), wire, unit=unit)[0].decoded is True  # no writer: the record
