"""The 110 call lifecycle (contract sections 4 and 5) as pure rules.

Each rule takes the current call and unit state and returns a `Decision`: the call events and unit-status changes
that follow. The dispatcher service persists a decision, publishes it, then applies it to memory; the rules never
touch I/O or the clock (event time is an argument).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from services.dispatcher.domain.live_map import Position, UnitState
from shared.contract.registry import ZoneClass
from shared.contract.schemas import CallEventKind, EventSource, UnitStatus
from shared.errors import ConflictError, InvalidError
from shared.geo import great_circle_m


class CallStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class CallEvent:
    call_id: str
    event: CallEventKind
    ts: datetime
    unit_id: str | None = None
    source: EventSource | None = None
    platform_id: str | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    unit_id: str
    status: UnitStatus
    call_id: str | None
    ts: datetime


@dataclass
class Call:
    call_id: str
    received_at: datetime
    lat: float
    lon: float
    category: str
    priority: int
    zone_class: ZoneClass
    target_s: int
    address: str | None = None
    note: str | None = None
    status: CallStatus = CallStatus.OPEN
    assigned: dict[str, datetime] = field(default_factory=dict)
    """Units currently on this call, with when they were assigned."""
    timeline: list[CallEvent] = field(default_factory=list)

    @property
    def arrived(self) -> frozenset[str]:
        """Units that reached the call. Read from the timeline rather than kept beside it: an open call is held for
        as long as it is open, and every container it holds is one more object each collection of the garbage
        collector's older generations walks (README, "The calls path, session 21")."""
        return frozenset(e.unit_id for e in self.timeline if e.event is CallEventKind.ON_SCENE and e.unit_id)

    def apply(self, event: CallEvent) -> bool:
        """Fold one event into the call (new decisions, rebuilding from storage, another replica's events from the
        topic); an event the call already holds changes nothing. True when it was new."""
        if event in self.timeline:
            return False
        self.timeline.append(event)
        self.timeline.sort(key=lambda e: e.ts)
        if event.event is CallEventKind.ASSIGNED and event.unit_id:
            self.assigned[event.unit_id] = event.ts
        elif event.event is CallEventKind.CLOSED:
            self.status = CallStatus.CLOSED
            self.assigned.clear()
        return True

    def release(self, unit_id: str) -> None:
        self.assigned.pop(unit_id, None)


@dataclass(frozen=True, slots=True)
class Decision:
    events: tuple[CallEvent, ...] = ()
    statuses: tuple[StatusChange, ...] = ()

    def then(self, other: Decision) -> Decision:
        return Decision(self.events + other.events, self.statuses + other.statuses)


def created(call: Call) -> Decision:
    return Decision(events=(CallEvent(call.call_id, CallEventKind.CREATED, call.received_at),))


def _not_before(unit: UnitState, ts: datetime) -> None:
    """Event time: a change cannot precede the unit's current status."""
    if unit.status_since is not None and ts < unit.status_since:
        raise ConflictError(
            field="ts",
            error=f"{ts.isoformat()} is before unit {unit.unit_id}'s current status ({unit.status_since.isoformat()})",
        )


def _after_received(call: Call, ts: datetime) -> None:
    if ts < call.received_at:
        raise InvalidError(
            field="ts", error=f"{ts.isoformat()} is before the call was received ({call.received_at.isoformat()})"
        )


def assign(call: Call, unit: UnitState, *, ts: datetime, source: EventSource) -> Decision:
    _after_received(call, ts)
    _not_before(unit, ts)
    if call.status is CallStatus.CLOSED:
        raise ConflictError(f"call {call.call_id} is closed")
    if unit.status is not UnitStatus.AVAILABLE:
        raise ConflictError(f"unit {unit.unit_id} is {unit.status.value}, not available")
    return Decision(
        events=(CallEvent(call.call_id, CallEventKind.ASSIGNED, ts, unit.unit_id, source, unit.platform_id),),
        statuses=(StatusChange(unit.unit_id, UnitStatus.DISPATCHED, call.call_id, ts),),
    )


def close(call: Call, *, ts: datetime, source: EventSource) -> Decision:
    """Close a call no unit is on: one handled without sending anyone (advice given on the phone, a second report of
    an incident already being handled). Without this such a call stayed open for good, in every replica's memory and
    on every console. A call with units on it closes when the last of them clears, as the contract says."""
    _after_received(call, ts)
    if call.status is CallStatus.CLOSED:
        raise ConflictError(f"call {call.call_id} is closed")
    if call.assigned:
        units = ", ".join(sorted(call.assigned))
        raise ConflictError(
            f"units on call {call.call_id}: {units}; it closes when the last of them clears "
            "(POST /v1/units/{id}/status available)"
        )
    return Decision(events=(CallEvent(call.call_id, CallEventKind.CLOSED, ts, None, source),))


def change_status(
    unit: UnitState, status: UnitStatus, *, call: Call | None, ts: datetime, source: EventSource
) -> Decision:
    """A status reported by a console (or derived from GPS): the call events it implies come with it."""
    _not_before(unit, ts)
    if status is UnitStatus.DISPATCHED:
        if call is None:
            raise InvalidError(field="status", error="dispatched needs a call_id (or use POST /v1/calls/{id}/assign)")
        return assign(call, unit, ts=ts, source=source)
    change = StatusChange(unit.unit_id, status, call.call_id if call and status in _ON_CALL else None, ts)
    if call is None:
        return Decision(statuses=(change,))
    if status in _ON_CALL and unit.unit_id not in call.assigned:
        raise ConflictError(f"unit {unit.unit_id} is not assigned to call {call.call_id}")
    events: list[CallEvent] = []
    if status is UnitStatus.EN_ROUTE:
        events.append(CallEvent(call.call_id, CallEventKind.EN_ROUTE, ts, unit.unit_id, source, unit.platform_id))
    elif status is UnitStatus.ON_SCENE and unit.unit_id not in call.arrived:
        events.append(CallEvent(call.call_id, CallEventKind.ON_SCENE, ts, unit.unit_id, source, unit.platform_id))
    elif (
        status in (UnitStatus.AVAILABLE, UnitStatus.OFF_DUTY)
        and set(call.assigned) == {unit.unit_id}
        and call.status is CallStatus.OPEN
    ):
        # The last unit on the call clears: the loop is closed.
        events.append(CallEvent(call.call_id, CallEventKind.CLOSED, ts, unit.unit_id, source, unit.platform_id))
    return Decision(events=tuple(events), statuses=(change,))


_ON_CALL = frozenset({UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE})


def gps_arrival(call: Call, unit: UnitState, position: Position, *, radius_m: float) -> Decision | None:
    """The first fixed position of an assigned unit within `radius_m` of the call, taken after its dispatch: a fix
    stamped with the dispatch's own time was taken as the order went out, before the crew could act on it (and may
    reach the dispatcher after the order when terminals report while a console dispatches)."""
    assigned_at = call.assigned.get(unit.unit_id)
    if (
        assigned_at is None
        or unit.unit_id in call.arrived
        or unit.status not in (UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE)
        or position.ts <= assigned_at
        or (unit.status_since is not None and position.ts < unit.status_since)
        or great_circle_m(call.lat, call.lon, position.lat, position.lon) > radius_m
    ):
        return None
    return change_status(unit, UnitStatus.ON_SCENE, call=call, ts=position.ts, source=EventSource.GPS)
