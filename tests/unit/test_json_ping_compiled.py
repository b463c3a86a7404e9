"""The compiled JSON position ping path (`services/ingest/domain/_json_ping.c`) against the pydantic reference.

`accept_ping` publishes what the compiled path writes without validating it again, so for any value it must end
exactly as `reference_accept_ping` ends: the same bytes on the topic (an int where the reference has a float fails),
or the same refusal with the same message. And it must take every position ping in the plain form terminals send,
or the speed it exists for is lost without any test noticing.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.domain._json_ping import position_record as compiled_position_record
from services.ingest.domain.telemetry import TelemetryRejected, accept_ping, reference_accept_ping
from shared.contract.registry import UnitDirectory, UnitKind, UnitRef
from shared.contract.schemas import Gnss, PositionRecord, Source
from shared.contract.topics import POSITIONS, VIDEO

DIRECTORY = UnitDirectory.of(
    1, [UnitRef("U-1", "P-1", UnitKind.PATROL_CAR, None), UnitRef("警-2", "P-2", UnitKind.MOTORCYCLE, None)]
)
NOW = datetime(2100, 1, 2, tzinfo=UTC)
FLOAT_FIELDS = ("lat", "lon", "speed_kmh", "heading_deg", "altitude_m", "hdop")
"""Integers here beyond 2**53 are left to pydantic (as floats they would not be exact)."""
PLAIN_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)")


def outcome(accept: Any, ping: Any) -> tuple[str, object]:
    try:
        accepted = accept(ping, directory=DIRECTORY, source=Source.HTTP, now=NOW)
    except TelemetryRejected as e:
        return ("refused", (e.reason, e.error))
    topic = POSITIONS if accepted.kind == "position" else VIDEO
    return ("published", topic.encode_fields(accepted.value))


def stamp(
    year: int, month: int, day: int, hour: int, minute: int, second: int, fraction: str, sep: str, zone: str
) -> str:
    return f"{year:04d}-{month:02d}-{day:02d}{sep}{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


zones = st.one_of(
    st.sampled_from(["Z", "Z", "z", "", "+08:00", "-00:00", "+0800", "+08"]),
    st.builds(
        lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 25), st.integers(0, 61)
    ),
)
fractions = st.one_of(st.just(""), st.just("."), st.text("0123456789", min_size=1, max_size=7).map(lambda d: "." + d))
timestamps = st.one_of(
    st.builds(
        stamp,
        st.one_of(st.integers(2000, 2100), st.integers(0, 9999)),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        fractions,
        st.sampled_from(["T", "T", "T", "t", " "]),
        zones,
    ),
    st.datetimes(
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5, minutes=-30))])
    ).map(datetime.isoformat),
    st.text(max_size=30),
    st.integers(),
    st.floats(),
    st.none(),
)
numbers = st.one_of(
    st.floats(-500, 500),
    st.floats(),
    st.integers(-500, 500),
    st.integers(-(2**64), 2**64),
    st.sampled_from([0, -0.0, 0.0, 90, -90, 180, 359.9999, 360, 400, 400.0000001, 2**53, 2**53 + 1, -(2**53)]),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
)
JSON_INTEGERS = st.integers(-(2**63), 2**64 - 1)
"""What orjson decodes as an int (it reads larger ones as floats), so what an integer field can hold in a ping;
orjson cannot encode a larger one in the record either."""
integers = st.one_of(
    st.integers(-5, 40), JSON_INTEGERS, st.booleans(), st.floats(0, 40), st.none(), st.text(max_size=3)
)
ping_fields = {
    "kind": st.sampled_from(["position", "position", "position", "video", "Position", 1, None]),
    "unit_id": st.one_of(st.sampled_from(["U-1", "警-2", "U-3", ""]), st.text(max_size=70), st.integers()),
    "ts": timestamps,
    "lat": numbers,
    "lon": numbers,
    "speed_kmh": numbers,
    "heading_deg": numbers,
    "altitude_m": numbers,
    "hdop": numbers,
    "gnss": st.one_of(st.sampled_from([g.value for g in Gnss]), st.sampled_from(["bds", "", "BDS ", None, 3])),
    "satellites": integers,
    "seq": integers,
    "crs": st.sampled_from(["WGS84", "GCJ02", "wgs84", None, 84]),
    "fix": st.sampled_from([True, False, 0, 1, None, "true"]),
}
pings = st.fixed_dictionaries(
    {"kind": st.just("position"), "unit_id": st.just("U-1"), "ts": timestamps, "lat": numbers, "lon": numbers},
    optional={k: v for k, v in ping_fields.items() if k not in ("kind", "unit_id", "ts", "lat", "lon")}
    | {"vendor": st.integers(), "channel": st.integers(0, 3), "state": st.just("on")},
)


def plain(ping: dict[str, Any]) -> bool:
    """The form the compiled path promises to take, when the reference accepts the ping."""
    ts = ping.get("ts")
    return (
        isinstance(ts, str)
        and PLAIN_TS.fullmatch(ts) is not None
        and ping.get("crs", "WGS84") == "WGS84"
        and not any(type(ping.get(k)) is int and abs(ping[k]) >= 2**53 for k in FLOAT_FIELDS)
    )


@pytest.mark.no_cover
@settings(max_examples=3000, deadline=None)
@given(ping=st.one_of(pings, st.fixed_dictionaries({}, optional=ping_fields)))
def test_every_value_ends_as_the_reference_ends_it(ping: dict[str, Any]) -> None:
    compiled = compiled_position_record(dict(ping))
    ended = outcome(reference_accept_ping, ping)
    assert outcome(accept_ping, ping) == ended
    if compiled is not None:
        assert ping.get("kind") == "position"
        added = {"platform_id": "P-1", "h3": "8928308280fffff", "source": Source.HTTP, "received_at": NOW}
        PositionRecord.model_validate(compiled | added)  # in the record's types and ranges before ingest adds these
    elif ping.get("kind") == "position" and ended[0] == "published":
        assert not plain(ping), "a plain position ping the reference accepts must take the compiled path"


@pytest.mark.no_cover
@settings(max_examples=500, deadline=None)
@given(ping=pings)
def test_what_json_carries_is_read_alike_after_a_round_trip_through_the_wire(ping: dict[str, Any]) -> None:
    """Pings arrive as orjson decodes them: the same check on the decoded value (floats written and read back)."""
    try:
        decoded = orjson.loads(orjson.dumps(ping))
    except orjson.JSONEncodeError:
        return  # NaN, infinities and out-of-range integers cannot be JSON
    assert outcome(accept_ping, decoded) == outcome(reference_accept_ping, decoded)


def test_what_terminals_send_takes_the_compiled_path() -> None:
    base = {"kind": "position", "unit_id": "U-1", "lat": 27.2, "lon": 111.4}
    for ts in ("2026-12-01T07:55:27Z", "2026-12-01T07:55:27.637203+00:00", "2026-12-01T15:55:27.5+08:00"):
        for extra in ({}, {"speed_kmh": 35, "heading_deg": 90.0, "gnss": "BDS+GPS", "satellites": 14, "hdop": 0.9,
                           "seq": 7, "altitude_m": -3, "crs": "WGS84", "fix": False}):  # fmt: skip
            ping = base | extra | {"ts": ts}
            record = compiled_position_record(ping)
            assert record is not None, ping
            assert record["ts"] == datetime.fromisoformat(ts).astimezone(UTC)
            assert outcome(accept_ping, ping) == outcome(reference_accept_ping, ping)


def test_anything_else_is_declined_to_the_reference() -> None:
    ping = {"kind": "position", "unit_id": "U-1", "ts": "2026-12-01T07:55:27Z", "lat": 27.2, "lon": 111.4}
    assert compiled_position_record(ping) is not None
    for changed in ({"crs": "GCJ02"}, {"kind": "video"}, {"ts": "2026-12-01 07:55:27Z"}, {"lat": "27.2"},
                    {"lat": True}, {"speed_kmh": 400.5}, {"heading_deg": 360}, {"hdop": 0}, {"satellites": -1},
                    {"satellites": 3.0}, {"fix": 1}, {"gnss": "bds"}, {"unit_id": ""}, {"unit_id": "x" * 65},
                    {"ts": "2026-02-29T00:00:00Z"}, {"ts": "2026-12-01T07:55:27.1234567Z"}):  # fmt: skip
        assert compiled_position_record(ping | changed) is None, changed
    assert compiled_position_record([ping]) is None
    assert compiled_position_record({k: v for k, v in ping.items() if k != "lon"}) is None
