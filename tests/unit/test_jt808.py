"""The JT/T 808 decoder against every real frame of the vector file, round trips, and malformed input."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import jt808
from shared.jt808 import Jt808Error, MessageId, _decoder

VECTORS: list[dict[str, Any]] = json.loads((Path(__file__).parent.parent / "data" / "jt808_vectors.json").read_text())


def ids(vector: dict[str, Any]) -> str:
    return f"{vector['message_id']}-{vector['version']}-{vector['expected']['serial']}-{vector['hex'][-8:]}"


def wire(vector: dict[str, Any]) -> bytes:
    return bytes.fromhex(vector["hex"])


def assert_location(location: jt808.Location, expected: dict[str, Any]) -> None:
    assert location.alarm == expected["alarm"]
    assert location.status == expected["status"]
    assert location.positioned == expected["positioned"]
    assert location.latitude == pytest.approx(expected["latitude"], abs=1e-6)
    assert location.longitude == pytest.approx(expected["longitude"], abs=1e-6)
    assert location.altitude_m == expected["altitude_m"]
    assert location.speed_kmh == pytest.approx(expected["speed_kmh"])
    assert location.course == expected["course"]
    utc = location.time_utc()
    assert utc is not None
    assert utc.isoformat().replace("+00:00", "Z") == expected["time_utc"]
    assert [(f"0x{k:02x}", len(v), v.hex()) for k, v in location.extras.items()] == [
        (e["id"], e["len"], e["raw"]) for e in expected.get("extras", [])
    ]
    for extra in expected.get("extras", []):
        if "mileage_km" in extra:
            assert location.mileage_km == pytest.approx(extra["mileage_km"])
        if "gnss_satellites" in extra:
            assert location.satellites == extra["gnss_satellites"]
        if "rssi" in extra:
            assert location.signal_strength == extra["rssi"]


@pytest.mark.parametrize("vector", VECTORS, ids=ids)
def test_every_vector_decodes_to_its_expected_fields(vector: dict[str, Any]) -> None:
    expected = vector["expected"]
    frame = jt808.parse_frame(wire(vector))
    header = frame.header
    assert header.message_id == int(vector["message_id"], 16)
    assert header.phone == expected["phone_bcd"]
    assert header.serial == expected["serial"]
    assert header.body_length == len(frame.body) == expected["body_length"]
    assert header.encryption == expected["encryption"]
    assert header.protocol_version == expected.get("protocol_version")
    assert header.packet_total == expected.get("packet_total")
    assert header.packet_index == expected.get("packet_index")
    wide = header.is_2019
    match header.message_id:
        case MessageId.LOCATION:
            assert_location(jt808.decode_location(frame.body), expected)
        case MessageId.BATCH_LOCATION:
            batch = jt808.decode_batch(frame.body)
            assert (len(batch.locations), batch.location_type) == (expected["count"], expected["location_type"])
            for location, want in zip(batch.locations, expected["locations"], strict=True):
                assert_location(location, want)
        case MessageId.REGISTER:
            registration = jt808.decode_registration(frame.body, wide=wide)
            assert (registration.province, registration.city) == (expected["province"], expected["city"])
            assert registration.maker == expected["maker"]
            assert registration.model == expected["model"].rstrip()
            assert registration.terminal_model_id == expected["terminal_id"]
            assert (registration.plate_color, registration.plate) == (expected["plate_color"], expected["plate"])
        case MessageId.AUTHENTICATE:
            auth = jt808.decode_authentication(frame.body, wide=wide)
            assert auth.auth_code == expected["auth_code"]
            assert auth.imei == expected.get("imei")
            assert auth.software_version == expected.get("software_version")
        case MessageId.HEARTBEAT:
            assert frame.body == b""
        case MessageId.TERMINAL_RESPONSE | MessageId.PLATFORM_RESPONSE:
            response = jt808.decode_general_response(frame.body)
            assert (response.reply_serial, f"0x{response.reply_id:04x}", response.result) == (
                expected["reply_serial"], expected["reply_id"], expected["result"],
            )  # fmt: skip
        case MessageId.REGISTER_RESPONSE:
            assert frame.body == jt808.encode_register_response(
                expected["reply_serial"], expected["result"], expected.get("auth_code")
            )
        case MessageId.AV_ATTRIBUTES:
            attributes = jt808.decode_av_attributes(frame.body)
            assert {k: getattr(attributes, k) for k in attributes.__slots__} == {
                k: expected[k] for k in attributes.__slots__
            }
        case MessageId.RESOURCE_LIST if header.packet_index in (None, 1):
            listing = jt808.decode_resource_list(frame.body)
            assert (listing.reply_serial, listing.total) == (expected["reply_serial"], expected["total_resources"])
            assert len(listing.items) == expected["items_in_this_packet"]
            first = expected["first_items"][0]
            item = listing.items[0]
            assert (item.channel, item.av_type, item.stream, item.storage, item.size, item.alarm64) == (
                first["channel"], first["av_type"], first["stream"], first["storage"], first["size"], first["alarm64"],
            )  # fmt: skip
            assert item.start is not None
            assert item.start.replace(tzinfo=jt808.GMT8).isoformat() == first["start"]
        case MessageId.TRANSMISSION_STATUS:
            status = jt808.decode_transmission_status(frame.body)
            assert (status.channel, status.loss_rate) == (expected["channel"], expected["loss_rate"])


@pytest.mark.parametrize("vector", VECTORS, ids=ids)
def test_every_vector_re_encodes_to_the_same_bytes(vector: dict[str, Any]) -> None:
    frame = jt808.parse_frame(wire(vector))
    assert jt808.encode_frame(frame.header, frame.body) == wire(vector)


def test_a_subpackaged_resource_list_is_reassembled_from_its_packets() -> None:
    packets = [v for v in VECTORS if v["message_id"] == "0x1205" and v["expected"].get("packet_total") == 2]
    assert len(packets) == 2
    reassembler = jt808.Reassembler()
    second_first = [jt808.parse_frame(wire(v)) for v in sorted(packets, key=lambda v: -v["expected"]["packet_index"])]
    assert reassembler.add(second_first[0]) is None
    whole = reassembler.add(second_first[1])
    assert whole is not None
    listing = jt808.decode_resource_list(whole.body)
    expected = packets[1]["expected"]["reassembled_with_packet_1"]
    assert (listing.total, len(listing.items)) == (expected["total_resources"], expected["items"])
    assert listing.items[-1].size == expected["last_item"]["size"]


def test_a_2019_flagged_frame_with_a_2013_sized_header_is_accepted() -> None:
    [quirky] = [v for v in VECTORS if "2013-sized" in v.get("note", "")]
    frame = jt808.parse_frame(wire(quirky))
    assert frame.header.version_flag
    assert not frame.header.is_2019
    assert frame.header.phone == "010030000681"


def test_the_standards_escape_example() -> None:
    assert jt808.escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")
    assert jt808.unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")


def test_long_bodies_are_split_into_consecutive_packets_and_reassemble() -> None:
    body = bytes(range(256)) * 9
    frames = jt808.encode_frames(0x1205, body, phone="13800138000", serial=65534, protocol_version=1)
    assert len(frames) == 3
    parsed = [jt808.parse_frame(f) for f in frames]
    assert [p.header.serial for p in parsed] == [65534, 65535, 0]
    assert [p.header.packet_index for p in parsed] == [1, 2, 3]
    reassembler = jt808.Reassembler()
    results = [reassembler.add(p) for p in parsed]
    assert results[:2] == [None, None]
    assert results[2] is not None
    assert results[2].body == body


def test_a_location_becomes_the_contracts_ping_in_utc() -> None:
    [vector] = [v for v in VECTORS if v["message_id"] == "0x0200" and v["expected"]["serial"] == 1563]
    location = jt808.decode_location(jt808.parse_frame(wire(vector)).body)
    ping = jt808.position_ping(location, unit_id="SY-05-2095")
    assert ping["ts"] == "2024-01-10T09:26:05+00:00"
    assert ping["gnss"] == "BDS+GPS"
    assert ping["fix"] is True
    assert ping["speed_kmh"] == 45.0
    utc_clock = jt808.position_ping(location, unit_id="U", clock=UTC)
    assert datetime.fromisoformat(str(utc_clock["ts"])) - datetime.fromisoformat(str(ping["ts"])) == timedelta(hours=8)


def test_swapped_coordinates_are_refused_with_a_reason() -> None:
    [vector] = [v for v in VECTORS if v["message_id"] == "0x0200" and v["expected"]["latitude"] == 116.307629]
    location = jt808.decode_location(jt808.parse_frame(wire(vector)).body)
    with pytest.raises(Jt808Error, match="swapped"):
        jt808.position_ping(location, unit_id="U")


def test_negative_altitude_is_read_as_signed() -> None:
    body = bytearray(bytes.fromhex("00000000000000020000000100000001") + (0xFFF6).to_bytes(2, "big") + bytes(4))
    body += bytes.fromhex("240101120000")
    assert jt808.decode_location(bytes(body)).altitude_m == -10


def test_video_alarm_items_become_video_pings_per_channel() -> None:
    body = bytes.fromhex("0000000000000002000000010000000100000000000024010112000015040000000516040000000a")
    location = jt808.decode_location(body)
    pings = list(jt808.video_pings(location, unit_id="U"))
    assert [(p["channel"], p["state"]) for p in pings] == [(1, "offline"), (2, "fault"), (3, "offline"), (4, "fault")]
    assert pings[0]["ts"] == datetime(2024, 1, 1, 4, 0, tzinfo=UTC).isoformat()


def test_the_splitter_cuts_a_stream_drops_junk_and_resynchronises() -> None:
    frames = [wire(v) for v in VECTORS[:5]]
    stream = b"junk" + frames[0] + frames[1] + b"\x7e" + frames[2] + frames[3] + frames[4]
    splitter = jt808.FrameSplitter()
    out = []
    for i in range(0, len(stream), 7):
        out += splitter.feed(stream[i : i + 7])
    assert [jt808.parse_frame(f).header.serial for f in out if len(f) > 2] == [
        v["expected"]["serial"] for v in VECTORS[:5]
    ]


@pytest.mark.parametrize(
    ("hex_frame", "reason"),
    [
        ("7e0002000004304832546500b7cb7e", "checksum"),
        ("7e0002000004304832546500b77d03ca7e", "escape"),
        ("7e00020005043048325465b7ca7e", "shorter|length"),
        ("7e0002000004304832546500b7ca", "starts and ends"),
        ("7e0002000004a04832546500b7ca7e", "BCD|checksum"),
    ],
)
def test_broken_frames_raise_the_decoders_own_error(hex_frame: str, reason: str) -> None:
    with pytest.raises(Jt808Error, match=reason):
        jt808.parse_frame(bytes.fromhex(hex_frame))


BODY_DECODERS = [
    jt808.decode_location,
    jt808.decode_batch,
    lambda b: jt808.decode_registration(b, wide=False),
    lambda b: jt808.decode_registration(b, wide=True),
    lambda b: jt808.decode_authentication(b, wide=True),
    jt808.decode_general_response,
    jt808.decode_av_attributes,
    jt808.decode_resource_list,
    jt808.decode_transmission_status,
]


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_anything_but_the_decoders_error(data: bytes) -> None:
    for decode in (jt808.parse_frame, *BODY_DECODERS):
        with contextlib.suppress(Jt808Error):
            decode(data)


@settings(max_examples=1000, deadline=None)
@given(vector=st.sampled_from(VECTORS), position=st.integers(0, 10_000), value=st.integers(0, 255))
def test_mutated_real_frames_never_raise_anything_but_the_decoders_error(
    vector: dict[str, Any], position: int, value: int
) -> None:
    data = bytearray(wire(vector))
    data[position % len(data)] = value
    try:
        frame = jt808.parse_frame(bytes(data))
    except Jt808Error:
        return
    for decode in BODY_DECODERS:
        with contextlib.suppress(Jt808Error):
            decode(frame.body)


@settings(max_examples=200, deadline=None)
@given(
    message_id=st.integers(0, 0xFFFF),
    body=st.binary(max_size=3000),
    phone=st.text("0123456789", min_size=1, max_size=12),
    serial=st.integers(0, 0xFFFF),
    wide=st.booleans(),
)
def test_encode_then_parse_round_trips(message_id: int, body: bytes, phone: str, serial: int, wide: bool) -> None:
    frames = jt808.encode_frames(message_id, body, phone=phone, serial=serial, protocol_version=1 if wide else None)
    reassembler = jt808.Reassembler()
    results = [reassembler.add(jt808.parse_frame(f)) for f in frames]
    whole = results[-1]
    assert whole is not None
    assert whole.body == body
    assert whole.header.message_id == message_id
    assert whole.header.terminal_id == (phone.lstrip("0") or "0")


@settings(max_examples=300, deadline=None)
@given(
    message_id=st.sampled_from([0x0200, 0x0704, 0x7E7D, 0x7D02, 0x0002]),
    phone=st.text("0123456789", min_size=1, max_size=12),
    version=st.sampled_from([None, 0, 1, 0x7D, 0x7E]),
    answered=st.integers(0, 0xFFFF),
    serial=st.integers(0, 0xFFFF),
    result=st.integers(0, 255),
)
def test_the_general_response_encoder_writes_what_encode_frames_writes(
    message_id: int, phone: str, version: int | None, answered: int, serial: int, result: int
) -> None:
    """Flag and escape bytes are chosen often: in the serials, ids and result they must be escaped, and the
    checksum is over the unescaped bytes. The compiled encoder must take every such header itself."""
    to = jt808.Header(message_id, 0, 0, False, version is not None, version, phone, answered)
    body = jt808.encode_general_response(answered, message_id, result)
    [expected] = jt808.encode_frames(
        MessageId.PLATFORM_RESPONSE, body, phone=phone, serial=serial, protocol_version=version
    )
    assert _decoder.general_response(to, serial, result) == expected
    assert jt808.encode_general_response_frame(to, serial=serial, result=result) == expected
    assert jt808.reference_general_response_frame(to, serial=serial, result=result) == expected


@pytest.mark.parametrize(
    ("phone", "version", "result"),
    [
        ("1390000000a", None, 0),
        ("1" * 13, None, 0),
        ("1" * 21, 1, 0),
        ("", None, 0),
        ("１３９", None, 0),
        ("139", 256, 0),
        ("139", None, 256),
        ("139", None, -1),
    ],
)
def test_a_reply_the_compiled_encoder_declines_is_refused_as_the_reference_refuses_it(
    phone: str, version: int | None, result: int
) -> None:
    to = jt808.Header(0x0200, 0, 0, False, version is not None, version, phone, 7)
    assert _decoder.general_response(to, 1, result) is None
    with pytest.raises((Jt808Error, ValueError, OverflowError)) as reference:
        jt808.reference_general_response_frame(to, serial=1, result=result)
    with pytest.raises(type(reference.value)):
        jt808.encode_general_response_frame(to, serial=1, result=result)


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["message_id"] in ("0x0200", "0x0704", "0x0100", "0x0102")], ids=ids
)
def test_terminal_bodies_round_trip_through_the_encoder(vector: dict[str, Any]) -> None:
    frame = jt808.parse_frame(wire(vector))
    wide = frame.header.is_2019
    match frame.header.message_id:
        case MessageId.LOCATION:
            location = jt808.decode_location(frame.body)
            if location.local_time is not None:
                assert jt808.decode_location(jt808.encode_location(location)) == location
        case MessageId.BATCH_LOCATION:
            batch = jt808.decode_batch(frame.body)
            assert jt808.decode_batch(jt808.encode_batch(batch.locations, location_type=batch.location_type)) == batch
        case MessageId.REGISTER if len(frame.body) >= 37:
            registration = jt808.decode_registration(frame.body, wide=wide)
            assert (
                jt808.decode_registration(jt808.encode_registration(registration, wide=wide), wide=wide) == registration
            )
        case MessageId.AUTHENTICATE:
            auth = jt808.decode_authentication(frame.body, wide=wide)
            assert jt808.decode_authentication(jt808.encode_authentication(auth, wide=wide), wide=wide) == auth


@given(
    lat=st.floats(-90, 90),
    lon=st.floats(-180, 180),
    altitude=st.integers(-1000, 9000),
    speed=st.integers(0, 2000),
    course=st.integers(0, 359),
    status=st.integers(0, 2**32 - 1),
    moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31)),
)
def test_any_location_round_trips(
    lat: float, lon: float, altitude: int, speed: int, course: int, status: int, moment: datetime
) -> None:
    location = jt808.Location(
        0,
        status,
        round(lat, 6),
        round(lon, 6),
        altitude,
        speed / 10,
        course,
        moment.replace(microsecond=0),
        {0x31: b"\x0c"},
    )
    decoded = jt808.decode_location(jt808.encode_location(location))
    assert decoded.latitude == pytest.approx(location.latitude, abs=1e-6)
    assert decoded.longitude == pytest.approx(location.longitude, abs=1e-6)
    assert (decoded.altitude_m, decoded.speed_kmh, decoded.course, decoded.local_time) == (
        altitude,
        speed / 10,
        course,
        location.local_time,
    )
    assert decoded.satellites == 12
