"""Message models of the contract: pings in (section 2), records out (section 3), call events (section 5).

Inbound models validate what terminals send; outbound models are what other systems read from Kafka, so their
fields are exactly the contract's. Every outbound value carries `"v": 1`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

UnitId = Annotated[str, Field(min_length=1, max_length=64, strict=True)]
PlatformId = Annotated[str, Field(min_length=1, max_length=64)]
CallId = Annotated[str, Field(min_length=1, max_length=64)]
Latitude = Annotated[float, Field(ge=-90.0, le=90.0, allow_inf_nan=False, strict=True)]
Longitude = Annotated[float, Field(ge=-180.0, le=180.0, allow_inf_nan=False, strict=True)]
H3Cell = Annotated[str, Field(pattern=r"^[0-9a-f]{15}$")]


class Gnss(StrEnum):
    BDS = "BDS"
    GPS = "GPS"
    BDS_GPS = "BDS+GPS"
    GLONASS = "GLONASS"
    GALILEO = "GALILEO"
    OTHER = "OTHER"


class VideoState(StrEnum):
    STREAMING = "streaming"
    IDLE = "idle"
    OFFLINE = "offline"
    FAULT = "fault"


class Crs(StrEnum):
    WGS84 = "WGS84"
    GCJ02 = "GCJ02"


class Source(StrEnum):
    HTTP = "http"
    KAFKA = "kafka"
    JT808 = "jt808"


class UnitStatus(StrEnum):
    AVAILABLE = "available"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    OFF_DUTY = "off_duty"


class CallEventKind(StrEnum):
    CREATED = "created"
    ASSIGNED = "assigned"
    EN_ROUTE = "en_route"
    ON_SCENE = "on_scene"
    CLOSED = "closed"


class EventSource(StrEnum):
    CONSOLE = "console"
    GPS = "gps"
    AUTO = "auto"


class _Inbound(BaseModel):
    """Unknown fields are dropped, not rejected: terminals add vendor fields, the contract's output stays exact."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class PositionPing(_Inbound):
    kind: Literal["position"]
    unit_id: UnitId
    ts: AwareDatetime
    lat: Latitude
    lon: Longitude
    speed_kmh: Annotated[float, Field(ge=0.0, le=400.0, allow_inf_nan=False, strict=True)] | None = None
    heading_deg: Annotated[float, Field(ge=0.0, lt=360.0, allow_inf_nan=False, strict=True)] | None = None
    altitude_m: Annotated[float, Field(allow_inf_nan=False, strict=True)] | None = None
    gnss: Gnss | None = None
    satellites: Annotated[int, Field(ge=0, strict=True)] | None = None
    hdop: Annotated[float, Field(gt=0.0, allow_inf_nan=False, strict=True)] | None = None
    seq: Annotated[int, Field(strict=True)] | None = None
    crs: Crs = Crs.WGS84
    fix: Annotated[bool, Field(strict=True)] = True


class VideoPing(_Inbound):
    kind: Literal["video"]
    unit_id: UnitId
    ts: AwareDatetime
    channel: Annotated[int, Field(ge=0, le=255, strict=True)]
    state: VideoState
    bitrate_kbps: Annotated[float, Field(ge=0.0, allow_inf_nan=False, strict=True)] | None = None
    fps: Annotated[float, Field(ge=0.0, allow_inf_nan=False, strict=True)] | None = None
    resolution: Annotated[str, Field(max_length=32, strict=True)] | None = None
    codec: Annotated[str, Field(max_length=32, strict=True)] | None = None
    network: Annotated[str, Field(max_length=32, strict=True)] | None = None
    signal_dbm: Annotated[float, Field(allow_inf_nan=False, strict=True)] | None = None


Ping = Annotated[PositionPing | VideoPing, Field(discriminator="kind")]


class _Outbound(BaseModel):
    """Values Kuaijing publishes: exactly these fields (the published JSON Schemas say so to other consumers)."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"additionalProperties": False})

    v: Literal[1] = 1


class PositionRecord(_Outbound):
    """`kuaijing.positions` value: the accepted ping in WGS-84 plus what ingest adds."""

    kind: Literal["position"] = "position"
    unit_id: UnitId
    ts: datetime
    lat: Latitude
    lon: Longitude
    speed_kmh: float | None = None
    heading_deg: float | None = None
    altitude_m: float | None = None
    gnss: Gnss | None = None
    satellites: int | None = None
    hdop: float | None = None
    seq: Annotated[int, Field(strict=True)] | None = None
    crs: Literal[Crs.WGS84] = Crs.WGS84
    fix: bool = True
    platform_id: PlatformId
    h3: H3Cell
    source: Source
    received_at: datetime


class VideoRecord(_Outbound):
    """`kuaijing.video` value."""

    kind: Literal["video"] = "video"
    unit_id: UnitId
    ts: datetime
    channel: int
    state: VideoState
    bitrate_kbps: float | None = None
    fps: float | None = None
    resolution: str | None = None
    codec: str | None = None
    network: str | None = None
    signal_dbm: float | None = None
    platform_id: PlatformId
    source: Source
    received_at: datetime


class RejectReason(StrEnum):
    """Why input was refused: the `reason` of a dead letter and the label of the rejection metrics."""

    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    UNKNOWN_KIND = "unknown_kind"
    MISSING_FIELD = "missing_field"
    OUT_OF_RANGE = "out_of_range"
    INVALID_VALUE = "invalid_value"
    TIMESTAMP_WITHOUT_OFFSET = "timestamp_without_offset"
    FUTURE_TIMESTAMP = "future_timestamp"
    UNKNOWN_UNIT = "unknown_unit"
    UNSUPPORTED_FORMAT = "unsupported_format"
    INVALID_FRAME = "invalid_frame"
    UNKNOWN_TERMINAL = "unknown_terminal"
    UNAUTHENTICATED = "unauthenticated"


class DeadLetter(_Outbound):
    """`kuaijing.deadletter` value. `reason` (a stable code for alerting) and `origin` are extensions."""

    error: str
    reason: str
    source: Source
    received_at: datetime
    payload: str
    payload_encoding: Literal["base64"] | None = None
    payload_truncated: bool = False
    origin: str | None = Field(default=None, description="where it came from, e.g. topic/partition/offset")


class UnitStatusEvent(_Outbound):
    """`kuaijing.unit-status` value."""

    unit_id: UnitId
    status: UnitStatus
    call_id: CallId | None
    ts: datetime


class CallEventMessage(_Outbound):
    """`kuaijing.calls` value (contract section 5); `zone_class` is one of the registry's zone classes. A `closed`
    event carries the unit that cleared last, or no `unit_id` and `source` `console` when a dispatcher closed a call
    no unit was on (`POST /v1/calls/{id}/close`, an extension)."""

    call_id: CallId
    event: CallEventKind
    ts: datetime
    unit_id: UnitId | None = None
    source: EventSource | None = None
    lat: float
    lon: float
    zone_class: str
    target_s: int
    platform_id: PlatformId | None = None
    category: str
    priority: int


class AdviceMessage(_Outbound):
    """`kuaijing.advice` value (extension, issue 14): the dispatcher advises an idle unit to move up to a post so
    that more of the key areas and the central city is reachable within the promise. Advice, never an order: the
    dispatcher moves no unit by itself."""

    advice_id: str = Field(description="unique; repeated deliveries of one advice carry the same id")
    kind: Literal["move_up"] = "move_up"
    ts: datetime = Field(description="when it was advised, on the dispatcher's clock")
    unit_id: UnitId
    platform_id: PlatformId
    from_lat: float
    from_lon: float
    to_lat: float = Field(description="the post: the centre of an H3 cell (resolution 8) not covered in time")
    to_lon: float
    to_cell: H3Cell
    zone_class: str = Field(description="the class of the post's zone")
    gain_cells: int = Field(description="cells within their target after the move that were not before, net")
    travel_s: float = Field(description="the ETA from where the unit is to the post")
    call_id: CallId | None = Field(default=None, description="the dispatch after which coverage fell")
    coverage: dict[str, float] = Field(description="each watched class's share of cells covered before the move")


class CoverageSample(_Outbound):
    """`kuaijing.coverage` value (extension, issue 14): one class's coverage of the promise at a sampling instant,
    as the dispatcher measured it (key `zone_class`); replicas measuring the same instant publish it once."""

    ts: datetime = Field(description="the sampling instant, on the dispatcher's clock")
    zone_class: str
    target_s: int
    cells: int = Field(description="H3 cells (resolution 8) of the class's zones")
    covered: int = Field(description="cells an available unit reached within target_s by the ETA model in force")
