"""The simulated night: the same seed plays the same night, the operator sends the nearest free vehicle, and the
night's own record of an arrival is the dispatcher's rule (the first fix within the radius after the dispatch)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.simulator.city import City, Task
from services.simulator.night import (
    ARRIVAL_RADIUS_M,
    CAMERA_FAULT_EVERY,
    Assign,
    Clear,
    NewCall,
    Night,
    Transport,
    transport_of,
)
from shared.geo import great_circle_m

pytestmark = [pytest.mark.timeout(360), pytest.mark.no_cover]
"""Simulated nights: pure Python, a dozen seconds each alone, several times that beside the integration tests'
services on two shared cores."""

START = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
"""18:00 in Shaoyang: the evening rush hour, then the night."""
CITY = City.load()


def night(seed: int = 4, hours: float = 0.5) -> Night:
    return Night(CITY, start=START, hours=hours, call_every_s=30, seed=seed)


def test_the_same_seed_plays_the_same_night() -> None:
    first = [(t.at, t.pings, t.actions) for t in night().ticks()]
    again = [(t.at, t.pings, t.actions) for t in night().ticks()]
    assert first == again
    assert first != [(t.at, t.pings, t.actions) for t in night(seed=5).ticks()]


def test_every_call_is_made_assigned_arrived_and_cleared_in_order_and_in_event_time() -> None:
    played = night()
    actions = [(t.at, a) for t in played.ticks() for a in t.actions]
    made = {a.call_id: at for at, a in actions if isinstance(a, NewCall)}
    assert len(made) > 30
    busy: dict[str, str] = {}
    for at, action in actions:
        assert action.ts == at if not isinstance(action, NewCall) else action.received_at == at
        if isinstance(action, Assign):
            assert action.unit_id not in busy, "a vehicle already on a call was sent again"
            busy[action.unit_id] = action.call_id
            assert made[action.call_id] <= at
        elif isinstance(action, Clear):
            assert busy.pop(action.unit_id) == action.call_id
    for record in played.calls.values():
        if record.arrived_at is not None:
            assert record.assigned_at is not None
            assert record.received_at <= record.assigned_at < record.arrived_at
            assert record.cleared_at is None or record.arrived_at < record.cleared_at


def test_an_arrival_is_the_first_reported_fix_within_the_radius_after_the_dispatch() -> None:
    played = night()
    fixes: dict[str, list[tuple[datetime, float, float]]] = {}
    for tick in played.ticks():
        for ping in tick.pings:
            if ping["kind"] == "position":
                fixes.setdefault(str(ping["unit_id"]), []).append((tick.at, float(ping["lat"]), float(ping["lon"])))  # type: ignore[arg-type]
    checked = 0
    for record in played.calls.values():
        if record.unit_id is None or record.assigned_at is None:
            continue
        assigned_at = record.assigned_at
        inside = [
            at
            for at, lat, lon in fixes[record.unit_id]
            if at > assigned_at and great_circle_m(lat, lon, record.lat, record.lon) <= ARRIVAL_RADIUS_M
        ]
        assert record.arrived_at == (inside[0] if inside else None), record.call_id
        checked += record.arrived_at is not None
    assert checked > 10


def test_a_third_of_the_fleet_speaks_jt808_a_sixth_comes_through_the_raw_topic() -> None:
    kinds = [transport_of(i) for i in range(231)]
    assert kinds.count(Transport.JT808) == 78
    assert kinds.count(Transport.KAFKA) == 39
    assert kinds.count(Transport.HTTP) == 114


def test_fixes_taken_in_a_dead_spot_are_uploaded_late_oldest_first_and_responders_keep_coverage() -> None:
    played = night(hours=2.0)
    uploads = 0
    on_calls: set[str] = set()
    responding: set[str] = set()
    for tick in played.ticks():
        fixes = {r.unit_id for r in tick.reports if r.pings}
        assert responding <= fixes, "a vehicle on its way to a call reports every tick"
        for report in tick.reports:
            if report.heartbeat:
                continue
            times = [datetime.fromisoformat(str(p["ts"])) for p in report.late]
            assert times == sorted(times)
            assert all(t < tick.at for t in times)
            uploads += bool(report.late)
            [fix] = [p for p in report.pings if p["kind"] == "position"]
            inside = CITY.in_dead_spot(float(fix["lat"]), float(fix["lon"]))  # type: ignore[arg-type]
            assert not inside or report.unit_id in on_calls, "a patrol reported from inside a dead spot"
        on_calls = {v.unit_id for v in played.vehicles.values() if v.task is not Task.PATROL}
        responding = {v.unit_id for v in played.vehicles.values() if v.task is Task.RESPONDING}
    assert uploads > 0, "no vehicle crossed a dead spot in two hours: the test proves nothing"


def test_jt808_terminals_standing_at_a_scene_send_heartbeats_and_some_flag_a_lost_camera() -> None:
    played = night(hours=1.0)
    index = {unit: i for i, unit in enumerate(played.vehicles)}
    last_heard: dict[str, datetime] = {}
    heartbeats, flagged = 0, set()
    for tick in played.ticks():
        for report in tick.reports:
            last_heard[report.unit_id] = tick.at
            if report.heartbeat:
                heartbeats += 1
                assert report.transport is Transport.JT808
                assert report.pings == ()
                assert report.late == ()
            if report.video_lost:
                assert report.transport is Transport.JT808
                assert index[report.unit_id] % CAMERA_FAULT_EVERY == 0
                flagged.add(report.unit_id)
        for unit, vehicle in played.vehicles.items():
            if vehicle.task is Task.ON_SCENE and transport_of(index[unit]) is Transport.JT808:
                assert (tick.at - last_heard[unit]).total_seconds() <= 10, "a standing terminal fell silent"
    assert heartbeats > 0
    assert len(flagged) > 3
