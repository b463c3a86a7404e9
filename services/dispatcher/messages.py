"""The dispatcher's domain as the contract's messages: one mapping, used by the outbox (Kafka), the live feed
(SSE) and the REST call timeline alike."""

from __future__ import annotations

from typing import Any

from services.dispatcher.domain.calls import Call, CallEvent, StatusChange
from shared.contract.schemas import CallEventMessage, PositionRecord, UnitStatusEvent


def call_event_message(call: Call, event: CallEvent) -> CallEventMessage:
    return CallEventMessage(
        call_id=call.call_id,
        event=event.event,
        ts=event.ts,
        unit_id=event.unit_id,
        source=event.source,
        lat=call.lat,
        lon=call.lon,
        zone_class=call.zone_class.value,
        target_s=call.target_s,
        platform_id=event.platform_id,
        category=call.category,
        priority=call.priority,
    )


def call_event_of(message: CallEventMessage) -> CallEvent:
    """A call event heard on the topic, as the domain holds it."""
    return CallEvent(
        call_id=message.call_id,
        event=message.event,
        ts=message.ts,
        unit_id=message.unit_id,
        source=message.source,
        platform_id=message.platform_id,
    )


def unit_status_message(change: StatusChange) -> UnitStatusEvent:
    return UnitStatusEvent(unit_id=change.unit_id, status=change.status, call_id=change.call_id, ts=change.ts)


def live_position(record: PositionRecord) -> dict[str, Any]:
    """The SSE `position` event: what a console map needs, nothing more."""
    return {
        "unit_id": record.unit_id,
        "ts": record.ts.isoformat(),
        "lat": record.lat,
        "lon": record.lon,
        "speed_kmh": record.speed_kmh,
        "heading_deg": record.heading_deg,
    }
