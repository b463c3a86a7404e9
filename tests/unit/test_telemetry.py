from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.ingest.domain.gcj02 import wgs84_to_gcj02
from services.ingest.domain.telemetry import TelemetryRejected, TelemetryRules, accept_ping
from shared.contract.registry import UnitDirectory, UnitKind, UnitRef
from shared.contract.schemas import Gnss, PositionRecord, RejectReason, Source, VideoRecord, VideoState
from shared.geo import great_circle_m, h3_cell

NOW = datetime(2026, 11, 23, 8, 20, tzinfo=UTC)
DIRECTORY = UnitDirectory.of(7, [UnitRef("SY-05-2095", "SY-05", UnitKind.PATROL_CAR, "13800138000")])


def position(**overrides: Any) -> dict[str, Any]:
    ping: dict[str, Any] = {
        "kind": "position", "unit_id": "SY-05-2095", "ts": "2026-11-23T08:15:30Z", "lat": 27.2418, "lon": 111.4672,
    }  # fmt: skip
    ping.update(overrides)
    return ping


def video(**overrides: Any) -> dict[str, Any]:
    ping: dict[str, Any] = {
        "kind": "video", "unit_id": "SY-05-2095", "ts": "2026-11-23T08:15:30Z", "channel": 1, "state": "streaming",
    }  # fmt: skip
    ping.update(overrides)
    return ping


def accept(obj: object) -> PositionRecord | VideoRecord:
    """The accepted value, checked against the topic's record model (what consumers validate it with)."""
    accepted = accept_ping(obj, directory=DIRECTORY, source=Source.HTTP, now=NOW)
    model = PositionRecord if accepted.kind == "position" else VideoRecord
    record = model.model_validate(accepted.value)
    assert record.unit_id == accepted.unit_id
    assert set(accepted.value) == set(model.model_fields), "the value carries exactly the record's fields"
    return record


def rejection(obj: object) -> TelemetryRejected:
    with pytest.raises(TelemetryRejected) as caught:
        accept(obj)
    return caught.value


def test_a_full_position_is_accepted_with_what_ingest_adds() -> None:
    record = accept(
        position(speed_kmh=32.5, heading_deg=270, altitude_m=240.0, gnss="BDS+GPS", satellites=14, hdop=0.8, seq=1842)
    )
    assert isinstance(record, PositionRecord)
    assert record.platform_id == "SY-05"
    assert record.h3 == h3_cell(27.2418, 111.4672)
    assert record.source is Source.HTTP
    assert record.received_at == NOW
    assert record.gnss is Gnss.BDS_GPS
    assert record.fix is True
    assert record.ts == datetime(2026, 11, 23, 8, 15, 30, tzinfo=UTC)


def test_a_timestamp_with_an_offset_is_normalised_to_utc() -> None:
    record = accept(position(ts="2026-11-23T16:15:30+08:00"))
    assert record.ts == datetime(2026, 11, 23, 8, 15, 30, tzinfo=UTC)
    assert record.ts.utcoffset() == timedelta(0)


def test_gcj02_input_is_converted_to_wgs84() -> None:
    gcj_lat, gcj_lon = wgs84_to_gcj02(27.2418, 111.4672)
    record = accept(position(lat=gcj_lat, lon=gcj_lon, crs="GCJ02"))
    assert isinstance(record, PositionRecord)
    assert great_circle_m(record.lat, record.lon, 27.2418, 111.4672) < 0.01
    assert record.crs == "WGS84"


def test_a_video_ping_is_accepted() -> None:
    record = accept(
        video(bitrate_kbps=1800, fps=25, resolution="1280x720", codec="H.264", network="4G", signal_dbm=-87)
    )
    assert isinstance(record, VideoRecord)
    assert record.state is VideoState.STREAMING
    assert record.platform_id == "SY-05"


def test_a_ping_without_fix_is_accepted_and_marked() -> None:
    record = accept(position(fix=False))
    assert isinstance(record, PositionRecord)
    assert record.fix is False


def test_vendor_fields_are_dropped_not_rejected() -> None:
    record = accept(position(vendor_temperature=41))
    assert "vendor_temperature" not in record.model_dump()
    assert isinstance(record, PositionRecord)
    assert record.crs == "WGS84"


def test_a_late_ping_is_accepted() -> None:
    record = accept(position(ts="2026-11-20T08:15:30Z"))
    assert record.ts.day == 20


def test_a_ping_up_to_the_allowed_skew_ahead_is_accepted() -> None:
    record = accept(position(ts=(NOW + timedelta(seconds=300)).isoformat()))
    assert record.ts == NOW + timedelta(seconds=300)


@pytest.mark.parametrize(
    ("ping", "reason", "field"),
    [
        (position(ts=(NOW + timedelta(seconds=301)).isoformat()), RejectReason.FUTURE_TIMESTAMP, "ts"),
        (position(unit_id="nobody"), RejectReason.UNKNOWN_UNIT, "unit_id"),
        (position(lat=90.5), RejectReason.OUT_OF_RANGE, "lat"),
        (position(lon=-180.01), RejectReason.OUT_OF_RANGE, "lon"),
        (position(speed_kmh=401), RejectReason.OUT_OF_RANGE, "speed_kmh"),
        (position(heading_deg=360), RejectReason.OUT_OF_RANGE, "heading_deg"),
        (position(satellites=-1), RejectReason.OUT_OF_RANGE, "satellites"),
        (position(hdop=0), RejectReason.OUT_OF_RANGE, "hdop"),
        (position(gnss="COMPASS"), RejectReason.INVALID_VALUE, "gnss"),
        (position(crs="BD09"), RejectReason.INVALID_VALUE, "crs"),
        (position(lat="27.2418"), RejectReason.INVALID_VALUE, "lat"),
        (position(lat=True), RejectReason.INVALID_VALUE, "lat"),
        (position(ts="2026-11-23T08:15:30"), RejectReason.TIMESTAMP_WITHOUT_OFFSET, "ts"),
        (position(ts="yesterday"), RejectReason.INVALID_VALUE, "ts"),
        (position(ts="0001-01-01T00:00:00+08:00"), RejectReason.OUT_OF_RANGE, "ts"),  # before UTC's year 1
        (position(ts="9999-12-31T23:59:59-01:00"), RejectReason.OUT_OF_RANGE, "ts"),
        ({k: v for k, v in position().items() if k != "lat"}, RejectReason.MISSING_FIELD, "lat"),
        ({k: v for k, v in position().items() if k != "kind"}, RejectReason.MISSING_FIELD, "kind"),
        (video(state="recording"), RejectReason.INVALID_VALUE, "state"),
        ({k: v for k, v in video().items() if k != "channel"}, RejectReason.MISSING_FIELD, "channel"),
        (position(kind="temperature"), RejectReason.UNKNOWN_KIND, "kind"),
        ([position()], RejectReason.NOT_AN_OBJECT, "body"),
        ("position", RejectReason.NOT_AN_OBJECT, "body"),
        (None, RejectReason.NOT_AN_OBJECT, "body"),
    ],
)
def test_bad_pings_are_rejected_with_a_reason_naming_the_field(ping: object, reason: RejectReason, field: str) -> None:
    rejected = rejection(ping)
    assert rejected.reason is reason
    assert rejected.error.startswith(f"{field}:"), rejected.error


def test_the_future_skew_is_a_rule_not_a_constant() -> None:
    ping = position(ts=(NOW + timedelta(seconds=30)).isoformat())
    with pytest.raises(TelemetryRejected):
        accept_ping(
            ping, directory=DIRECTORY, source=Source.KAFKA, now=NOW, rules=TelemetryRules(timedelta(seconds=10))
        )
