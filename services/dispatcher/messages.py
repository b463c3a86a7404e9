"""The dispatcher's domain as the contract's messages: one mapping, used by the outbox (Kafka), the live feed
(SSE) and the REST call timeline alike."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import h3

from services.dispatcher.domain.calls import Call, CallEvent, StatusChange
from services.dispatcher.domain.move_up import Advice, Move
from shared.contract.schemas import AdviceMessage, CallEventMessage, PositionRecord, UnitStatusEvent


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


def advice_message(
    advice_id: str, move: Move, advice: Advice, *, platform_id: str, at: datetime, call_id: str | None
) -> AdviceMessage:
    return AdviceMessage(
        advice_id=advice_id,
        ts=at,
        unit_id=move.unit_id,
        platform_id=platform_id,
        from_lat=move.origin[0],
        from_lon=move.origin[1],
        to_lat=move.post[0],
        to_lon=move.post[1],
        to_cell=h3.int_to_str(move.post_cell),
        zone_class=move.zone_class.value,
        gain_cells=move.gain_cells,
        travel_s=round(move.travel_s, 1),
        call_id=call_id,
        coverage={zone_class.value: round(share, 4) for zone_class, share in advice.coverage.items()},
    )
