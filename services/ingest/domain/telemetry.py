"""Validation and normalisation of one telemetry ping (contract section 2), independent of how it arrived.

A ping is accepted into a record for `kuaijing.positions` / `kuaijing.video`, or rejected with a stable reason
code (for metrics and alerting) and a message naming the field. Time is an input: `now` is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

from pydantic import TypeAdapter, ValidationError

from services.ingest.domain._json_ping import position_record as compiled_position_record
from services.ingest.domain.gcj02 import gcj02_to_wgs84
from shared.contract.codec import encode_obj
from shared.contract.registry import UnitDirectory, UnitRef
from shared.contract.schemas import Crs, Ping, PositionPing, RejectReason, Source, VideoPing
from shared.errors import RejectedError
from shared.geo import POSITION_H3_RESOLUTION, h3_cell
from shared.jt808 import compiled_position_value

_PING = TypeAdapter[PositionPing | VideoPing](Ping)


class TelemetryRejected(RejectedError):  # noqa: N818 - a domain outcome, named for what happened
    """A ping refused by the contract's rules; `error` names the field."""


_RANGE_ERRORS = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"})


def _rejection_from(error: ValidationError) -> TelemetryRejected:
    messages = []
    reason: RejectReason | None = None
    for detail in error.errors(include_url=False):
        kind = detail["type"]
        default_field = "kind" if kind.startswith("union_tag") else "body"
        field = ".".join(str(part) for part in detail["loc"] if part not in ("position", "video")) or default_field
        messages.append(f"{field}: {detail['msg']}")
        if reason is not None:
            continue
        if kind == "missing":
            reason = RejectReason.MISSING_FIELD
        elif kind in _RANGE_ERRORS:
            reason = RejectReason.OUT_OF_RANGE
        elif kind == "timezone_aware":
            reason = RejectReason.TIMESTAMP_WITHOUT_OFFSET
        elif kind in ("union_tag_invalid", "union_tag_not_found"):
            reason = RejectReason.UNKNOWN_KIND
    return TelemetryRejected(reason or RejectReason.INVALID_VALUE, "; ".join(messages))


@dataclass(frozen=True, slots=True)
class TelemetryRules:
    max_future_skew: timedelta = timedelta(seconds=300)


class Accepted(NamedTuple):
    """An accepted ping as the value of its topic: exactly the fields of `PositionRecord` / `VideoRecord`.

    Built as a plain mapping, not a validated model: the input was validated once just above, and validating the
    output again cost a tenth of the gateway's time (tests check every value against the record models).
    """

    kind: Literal["position", "video"]
    unit_id: str
    value: dict[str, Any]


def accept_ping(
    obj: Any,
    *,
    directory: UnitDirectory,
    source: Source,
    now: datetime,
    rules: TelemetryRules = TelemetryRules(),
) -> Accepted:
    """Validate one decoded ping; raises `TelemetryRejected` with the reason when it is not acceptable.

    A WGS-84 position ping in the plainest form the contract allows (which is what terminals send) is read by the
    compiled path (`_json_ping.c`: about 1 µs for the record where pydantic's validation alone took 3.4 µs, in
    process, 2026-12-01); anything else, and whatever it refuses, takes `reference_accept_ping`, whose models are
    the rules and whose messages say what is wrong."""
    record = compiled_position_record(obj)
    if record is not None:
        return accept_decoded_position(record, directory=directory, source=source, now=now, rules=rules)
    return reference_accept_ping(obj, directory=directory, source=source, now=now, rules=rules)


def reference_accept_ping(
    obj: Any,
    *,
    directory: UnitDirectory,
    source: Source,
    now: datetime,
    rules: TelemetryRules = TelemetryRules(),
) -> Accepted:
    """`accept_ping` by the contract's pydantic models alone: the reference the compiled paths are tested against."""
    if not isinstance(obj, dict):
        raise TelemetryRejected(RejectReason.NOT_AN_OBJECT, f"body: expected a ping object, got {_json_type(obj)}")
    if "kind" not in obj:
        raise TelemetryRejected(RejectReason.MISSING_FIELD, "kind: Field required ('position' or 'video')")
    try:
        ping = _PING.validate_python(obj)
    except ValidationError as e:
        raise _rejection_from(e) from None
    unit = _known_unit(directory, ping.unit_id)
    ts = _not_ahead(_in_utc(ping.ts), now, rules)
    if isinstance(ping, PositionPing):
        lat, lon = (ping.lat, ping.lon) if ping.crs is Crs.WGS84 else gcj02_to_wgs84(ping.lat, ping.lon)
        return Accepted(
            "position",
            ping.unit_id,
            {
                "v": 1,
                "kind": "position",
                "unit_id": ping.unit_id,
                "ts": ts,
                "lat": lat,
                "lon": lon,
                "speed_kmh": ping.speed_kmh,
                "heading_deg": ping.heading_deg,
                "altitude_m": ping.altitude_m,
                "gnss": ping.gnss,
                "satellites": ping.satellites,
                "hdop": ping.hdop,
                "seq": ping.seq,
                "crs": Crs.WGS84,
                "fix": ping.fix,
                "platform_id": unit.platform_id,
                "h3": h3_cell(lat, lon),
                "source": source,
                "received_at": now,
            },
        )
    return Accepted(
        "video",
        ping.unit_id,
        {
            "v": 1,
            "kind": "video",
            "unit_id": ping.unit_id,
            "ts": ts,
            "channel": ping.channel,
            "state": ping.state,
            "bitrate_kbps": ping.bitrate_kbps,
            "fps": ping.fps,
            "resolution": ping.resolution,
            "codec": ping.codec,
            "network": ping.network,
            "signal_dbm": ping.signal_dbm,
            "platform_id": unit.platform_id,
            "source": source,
            "received_at": now,
        },
    )


def accept_decoded_position(
    record: dict[str, Any],
    *,
    directory: UnitDirectory,
    source: Source,
    now: datetime,
    rules: TelemetryRules = TelemetryRules(),
) -> Accepted:
    """`accept_ping` for a position a compiled path took (the JSON ping's, or the JT/T 808 decoder's for a
    location): it wrote the record's fields from `v` to `fix` itself, in the contract's types and ranges (it
    declines anything else, which then reaches `reference_accept_ping` as a ping to validate or refuse with its
    reason), so nothing is validated twice; the registry and clock rules are the same, and so is what ingest adds.
    tests/unit/test_json_ping_compiled.py and test_jt808_compiled.py check that the paths publish the same bytes."""
    unit = _known_unit(directory, record["unit_id"])
    _not_ahead(record["ts"], now, rules)
    record["platform_id"] = unit.platform_id
    record["h3"] = h3_cell(record["lat"], record["lon"])
    record["source"] = source
    record["received_at"] = now
    return Accepted("position", unit.unit_id, record)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class PositionWriter:
    """`accept_decoded_position` and the topic's encoding in one compiled step, for the plain JT/T 808 location.

    The compiled decoder writes the `kuaijing.positions` value of a 0x0200 body straight from its bytes: no record
    dict, no second pass to encode it, nothing left for the collector. That was most of what a location cost the
    gateway besides Kafka. One writer serves one submission: the clock's allowance and the record's end (its source
    and received_at, encoded here by the project's codec) are worked out once, and each unit's ids are encoded once.
    It takes only what `accept_decoded_position` accepts, with the same registry and clock rules; anything else
    (a body the decoder declines, an unknown unit, a report ahead of the clock) gets None, and the Python path
    judges it and says why. tests/unit/test_jt808_compiled.py checks that both publish the same bytes."""

    def __init__(self, *, directory: UnitDirectory, source: Source, now: datetime, rules: TelemetryRules) -> None:
        self._directory = directory
        self._latest_us = (now + rules.max_future_skew - _EPOCH) // _MICROSECOND
        self._tail = b"," + encode_obj({"source": source, "received_at": now})[1:]
        self._ids: dict[str, tuple[bytes, bytes]] = {}

    def write(self, body: bytes, unit_id: str, utc_offset_min: int) -> bytes | None:
        """The value `accept_decoded_position` would publish for this 0x0200 body, or None."""
        ids = self._ids.get(unit_id)
        if ids is None:
            unit = self._directory.by_unit.get(unit_id)
            if unit is None:
                return None
            ids = self._ids[unit_id] = (encode_obj(unit.unit_id), encode_obj(unit.platform_id))
        unit_json, platform_json = ids
        return compiled_position_value(
            body, unit_json, platform_json, self._tail, utc_offset_min, self._latest_us, POSITION_H3_RESOLUTION
        )


def _known_unit(directory: UnitDirectory, unit_id: str) -> UnitRef:
    unit = directory.by_unit.get(unit_id)
    if unit is None:
        raise TelemetryRejected(RejectReason.UNKNOWN_UNIT, f"unit_id: unknown unit {unit_id!r}")
    return unit


def _in_utc(ts: datetime) -> datetime:
    """Year 1 east of Greenwich or 9999 west of it has no UTC instant Python can hold: refused, not a crash."""
    try:
        return ts.astimezone(UTC)
    except OverflowError:
        raise TelemetryRejected(
            RejectReason.OUT_OF_RANGE, f"ts: {ts.isoformat()} is not within years 1-9999 in UTC"
        ) from None


def _not_ahead(ts: datetime, now: datetime, rules: TelemetryRules) -> datetime:
    if ts - now > rules.max_future_skew:
        ahead = (ts - now).total_seconds()
        raise TelemetryRejected(
            RejectReason.FUTURE_TIMESTAMP,
            f"ts: {ahead:.0f} s in the future (at most {rules.max_future_skew.total_seconds():.0f} s allowed)",
        )
    return ts


def _json_type(obj: Any) -> str:
    match obj:
        case list():
            return "an array"
        case str():
            return "a string"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case None:
            return "null"
        case _:
            return type(obj).__name__
