"""The single declaration of every Kafka topic: name, key, value model, partitions and retention.

Nobody else writes a topic string. Keys are unit ids (or call ids) so one unit's records stay ordered in one
partition (DESIGN.md, "Data flow").
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from shared.contract.schemas import CallEventMessage, DeadLetter, PositionRecord, UnitStatusEvent, VideoRecord

_DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Topic:
    name: str
    key: str
    value: type[BaseModel] | None
    partitions: int
    retention_ms: int | None = None

    def config(self) -> dict[str, str]:
        return {} if self.retention_ms is None else {"retention.ms": str(self.retention_ms)}


TELEMETRY_RAW = Topic("kuaijing.telemetry.raw", key="unit id or terminal id, may be empty", value=None, partitions=6)
POSITIONS = Topic("kuaijing.positions", key="unit_id", value=PositionRecord, partitions=12)
VIDEO = Topic("kuaijing.video", key="unit_id", value=VideoRecord, partitions=6)
DEADLETTER = Topic("kuaijing.deadletter", key="as received", value=DeadLetter, partitions=3, retention_ms=14 * _DAY_MS)
CALLS = Topic("kuaijing.calls", key="call_id", value=CallEventMessage, partitions=6)
UNIT_STATUS = Topic("kuaijing.unit-status", key="unit_id", value=UnitStatusEvent, partitions=6)

ALL_TOPICS: tuple[Topic, ...] = (TELEMETRY_RAW, POSITIONS, VIDEO, DEADLETTER, CALLS, UNIT_STATUS)

JT808_CONTENT_TYPE = b"application/jt808"
"""Record header value marking a raw JT/T 808 frame on `kuaijing.telemetry.raw` (contract section 2)."""
