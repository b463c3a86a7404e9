"""The call lifecycle rules, without I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dispatcher.domain.calls import (
    Call,
    assign,
    change_status,
    close,
    created,
    gps_arrival,
)
from services.dispatcher.domain.live_map import Position, UnitState
from shared.contract.registry import UnitKind, ZoneClass
from shared.contract.schemas import CallEventKind, EventSource, UnitStatus
from shared.errors import ConflictError, InvalidError

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def new_call() -> Call:
    return Call("C1", T0, 27.2418, 111.4672, "theft", 1, ZoneClass.KEY_AREA, 60)


def unit(unit_id: str = "U1", status: UnitStatus = UnitStatus.AVAILABLE) -> UnitState:
    return UnitState(unit_id, "P1", UnitKind.MOTORCYCLE, "2095", status=status)


def apply(call: Call, u: UnitState, decision_events: object) -> None:
    for event in decision_events.events:  # type: ignore[attr-defined]
        call.apply(event)
    for change in decision_events.statuses:  # type: ignore[attr-defined]
        u.status, u.call_id, u.status_since = change.status, change.call_id, change.ts


def test_a_new_call_starts_its_timeline_at_the_time_it_was_received() -> None:
    [event] = created(new_call()).events
    assert (event.event, event.ts) == (CallEventKind.CREATED, T0)


def test_assigning_an_available_unit_dispatches_it_and_names_its_platform() -> None:
    call, u = new_call(), unit()
    decision = assign(call, u, ts=T0 + timedelta(seconds=20), source=EventSource.CONSOLE)
    [event] = decision.events
    [change] = decision.statuses
    assert (event.event, event.unit_id, event.platform_id) == (CallEventKind.ASSIGNED, "U1", "P1")
    assert (change.status, change.call_id) == (UnitStatus.DISPATCHED, "C1")


@pytest.mark.parametrize(
    "status", [UnitStatus.DISPATCHED, UnitStatus.EN_ROUTE, UnitStatus.ON_SCENE, UnitStatus.OFF_DUTY]
)
def test_a_unit_that_is_not_available_cannot_be_assigned(status: UnitStatus) -> None:
    with pytest.raises(ConflictError, match="not available"):
        assign(new_call(), unit(status=status), ts=T0, source=EventSource.CONSOLE)


def test_the_full_loop_assigned_en_route_on_scene_cleared_closes_the_call() -> None:
    call, u = new_call(), unit()
    apply(call, u, assign(call, u, ts=T0 + timedelta(seconds=10), source=EventSource.CONSOLE))
    apply(
        call,
        u,
        change_status(u, UnitStatus.EN_ROUTE, call=call, ts=T0 + timedelta(seconds=15), source=EventSource.CONSOLE),
    )
    apply(
        call,
        u,
        change_status(u, UnitStatus.ON_SCENE, call=call, ts=T0 + timedelta(seconds=50), source=EventSource.CONSOLE),
    )
    closing = change_status(
        u, UnitStatus.AVAILABLE, call=call, ts=T0 + timedelta(minutes=20), source=EventSource.CONSOLE
    )
    apply(call, u, closing)
    assert [e.event for e in call.timeline] == ["assigned", "en_route", "on_scene", "closed"]
    assert call.status == "closed"
    assert (u.status, u.call_id) == (UnitStatus.AVAILABLE, None)


def test_a_call_stays_open_while_another_unit_is_still_on_it() -> None:
    call, first, second = new_call(), unit("U1"), unit("U2")
    apply(call, first, assign(call, first, ts=T0, source=EventSource.CONSOLE))
    apply(call, second, assign(call, second, ts=T0, source=EventSource.CONSOLE))
    decision = change_status(
        first, UnitStatus.AVAILABLE, call=call, ts=T0 + timedelta(minutes=1), source=EventSource.CONSOLE
    )
    assert decision.events == ()
    call.release("U1")
    decision = change_status(
        second, UnitStatus.AVAILABLE, call=call, ts=T0 + timedelta(minutes=2), source=EventSource.CONSOLE
    )
    assert [e.event for e in decision.events] == ["closed"]


def test_dispatched_without_a_call_is_meaningless() -> None:
    with pytest.raises(InvalidError):
        change_status(unit(), UnitStatus.DISPATCHED, call=None, ts=T0, source=EventSource.CONSOLE)


def test_a_closed_call_takes_no_more_units() -> None:
    call = new_call()
    call.status = call.status.CLOSED
    with pytest.raises(ConflictError, match="closed"):
        assign(call, unit(), ts=T0, source=EventSource.CONSOLE)


def test_gps_arrival_inside_the_radius_after_dispatch_sets_the_unit_on_scene() -> None:
    call, u = new_call(), unit()
    apply(call, u, assign(call, u, ts=T0 + timedelta(seconds=10), source=EventSource.CONSOLE))
    before_dispatch = Position(T0 + timedelta(seconds=5), call.lat, call.lon)
    far = Position(T0 + timedelta(seconds=30), call.lat + 0.01, call.lon)
    near = Position(T0 + timedelta(seconds=40), call.lat + 0.0005, call.lon)
    at_dispatch = Position(T0 + timedelta(seconds=10), call.lat, call.lon)
    assert gps_arrival(call, u, before_dispatch, radius_m=100) is None
    assert gps_arrival(call, u, at_dispatch, radius_m=100) is None, "taken as the order went out (demo-night race)"
    assert gps_arrival(call, u, far, radius_m=100) is None
    decision = gps_arrival(call, u, near, radius_m=100)
    assert decision is not None
    [event] = decision.events
    assert (event.event, event.source, event.ts) == (CallEventKind.ON_SCENE, EventSource.GPS, near.ts)
    assert decision.statuses[0].status is UnitStatus.ON_SCENE


def test_gps_arrival_is_ignored_when_the_unit_already_reported_it() -> None:
    call, u = new_call(), unit()
    apply(call, u, assign(call, u, ts=T0, source=EventSource.CONSOLE))
    apply(
        call,
        u,
        change_status(u, UnitStatus.ON_SCENE, call=call, ts=T0 + timedelta(seconds=30), source=EventSource.CONSOLE),
    )
    assert gps_arrival(call, u, Position(T0 + timedelta(seconds=40), call.lat, call.lon), radius_m=100) is None


def test_gps_arrival_of_a_unit_not_on_the_call_is_ignored() -> None:
    call, u = new_call(), unit()
    assert gps_arrival(call, u, Position(T0, call.lat, call.lon), radius_m=100) is None


def test_changes_are_judged_in_event_time() -> None:
    call, u = new_call(), unit()
    with pytest.raises(InvalidError, match="before the call was received"):
        assign(call, u, ts=T0 - timedelta(seconds=1), source=EventSource.CONSOLE)
    apply(call, u, assign(call, u, ts=T0 + timedelta(seconds=30), source=EventSource.CONSOLE))
    with pytest.raises(ConflictError, match="before unit U1's current status"):
        change_status(u, UnitStatus.EN_ROUTE, call=call, ts=T0 + timedelta(seconds=29), source=EventSource.CONSOLE)
    stale_fix = Position(T0 + timedelta(seconds=20), call.lat, call.lon)
    assert gps_arrival(call, u, stale_fix, radius_m=100) is None


def test_a_call_no_unit_is_on_closes_at_the_console_s_word() -> None:
    call = new_call()
    [event] = close(call, ts=T0 + timedelta(minutes=2), source=EventSource.CONSOLE).events
    assert (event.event, event.unit_id, event.source) == (CallEventKind.CLOSED, None, EventSource.CONSOLE)
    call.apply(event)
    with pytest.raises(ConflictError, match="is closed"):
        close(call, ts=T0 + timedelta(minutes=3), source=EventSource.CONSOLE)


def test_a_call_with_a_unit_on_it_closes_only_when_the_unit_clears() -> None:
    call, u = new_call(), unit()
    apply(call, u, assign(call, u, ts=T0 + timedelta(seconds=20), source=EventSource.CONSOLE))
    with pytest.raises(ConflictError, match="units on call C1: U1"):
        close(call, ts=T0 + timedelta(minutes=1), source=EventSource.CONSOLE)


def test_a_call_cannot_close_before_it_was_received() -> None:
    with pytest.raises(InvalidError, match="before the call was received"):
        close(new_call(), ts=T0 - timedelta(seconds=1), source=EventSource.CONSOLE)
