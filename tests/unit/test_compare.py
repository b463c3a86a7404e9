"""`kuaijing compare` on short nights: the same calls under every policy, each policy's choice, move-up posts, and
the side-by-side figures."""

from __future__ import annotations

import httpx
import pytest

from services.compare import NearestByEta, compare, outcome, render, trips_of
from services.dispatcher.domain.coverage import coverage_areas
from services.dispatcher.domain.eta import CircuityEta
from services.dispatcher.domain.move_up import demand_of
from services.dispatcher.domain.zones import ZoneDefinition, ZoneMap
from services.simulator.city import Task, Vehicle
from services.simulator.night import POST_HOLD_S, TICK_S, CallRecord, NearestByStraightLine, Night
from services.simulator.runner import Simulation, Urls
from shared.contract.registry import UnitKind, ZoneClass
from shared.geo import great_circle_m
from shared.settings import CommonSettings
from tests.unit.test_night import CITY, START

pytestmark = pytest.mark.timeout(360)
"""Simulated nights: pure Python, a dozen seconds each alone, several times that beside the integration tests'
services on two shared cores."""

DEFINITIONS = [ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in CITY.document.zones]
ZONES = ZoneMap(DEFINITIONS)


def played(operator: NearestByStraightLine | NearestByEta, hours: float = 0.25) -> Night:
    night = Night(CITY, start=START, hours=hours, call_every_s=30, seed=2, operator=operator)
    for _ in night.ticks():
        pass
    return night


@pytest.mark.no_cover
def test_every_policy_gets_the_same_calls_and_their_drives_are_recorded() -> None:
    straight = played(NearestByStraightLine())
    by_eta = played(NearestByEta(CircuityEta(), ZONES))
    assert len(straight.calls) > 5
    assert [(c.call_id, c.lat, c.lon, c.received_at) for c in straight.calls.values()] == [
        (c.call_id, c.lat, c.lon, c.received_at) for c in by_eta.calls.values()
    ]
    trips = trips_of(straight)
    reached = [c for c in straight.calls.values() if c.arrived_at is not None]
    assert len(trips) == len(reached)
    for trip in trips:
        call = straight.calls[trip.call_id]
        assert (trip.unit_id, trip.arrived_at, trip.fixes[0].ts) == (call.unit_id, call.arrived_at, call.assigned_at)
        assert trip.destination == (call.lat, call.lon)


@pytest.mark.no_cover
def test_the_eta_operator_sends_the_fastest_not_the_nearest() -> None:
    call = CallRecord("C1", 27.24, 111.47, START)
    speeds = {(k, z): 90.0 if k is UnitKind.MOTORCYCLE else 10.0 for k in UnitKind for z in ZoneClass}
    car = Vehicle("car", UnitKind.PATROL_CAR, "P", 27.241, 111.47, speeds=CITY.document.kinds[UnitKind.PATROL_CAR])
    moto = Vehicle("moto", UnitKind.MOTORCYCLE, "P", 27.245, 111.47, speeds=CITY.document.kinds[UnitKind.MOTORCYCLE])
    assert NearestByStraightLine().choose(call, [car, moto], START) is car
    assert NearestByEta(CircuityEta(speeds_kmh=speeds), ZONES).choose(call, [car, moto], START) is moto


@pytest.mark.no_cover
def test_moving_up_posts_idle_vehicles_where_the_advice_says() -> None:
    night = played(NearestByEta(CircuityEta(), ZONES, demand_of(coverage_areas(DEFINITIONS)), level=1.0))
    posted = [v for v in night.vehicles.values() if v.posted_until is not None]
    assert posted, "after dispatches, idle vehicles were moved up"
    assert all(v.task is Task.PATROL for v in posted)
    assert {d.zone_class for d in demand_of(coverage_areas(DEFINITIONS))} == {
        ZoneClass.KEY_AREA,
        ZoneClass.CENTRAL_URBAN,
    }


@pytest.mark.no_cover
def test_compare_prints_every_policy_on_the_same_calls() -> None:
    lines: list[str] = []
    result = compare(CITY, start=START, hours=0.25, call_every_s=30, seed=2, training_weeks=1, progress=lines.append)
    assert result.training_drives > 0
    assert result.profile_cells > 0
    assert [o.policy[:3] for o in result.outcomes] == ["(a)", "(b)", "(c)", "(d)"]
    for policy in result.outcomes:
        assert sum(c.calls for c in policy.classes.values()) == result.calls
    assert result.outcomes[0] == outcome(result.outcomes[0].policy, played(NearestByStraightLine()), ZONES)
    assert lines[0].startswith("history: the same evening 1 week(s) before")
    text = render(result)
    assert "(c) - (a):" in text
    assert "key_area (60 s)" in text


def test_a_vehicle_moved_up_waits_at_its_post_then_patrols_again() -> None:
    night = Night(CITY, start=START, hours=1, call_every_s=3600, seed=2)
    vehicle = next(iter(night.vehicles.values()))
    post = (vehicle.lat + 0.01, vehicle.lon)
    assert night.post(vehicle.unit_id, post, START)
    assert not night.post("no-such-unit", post, START)
    ticks = night.ticks()
    for _ in range(int(POST_HOLD_S / TICK_S) - 1):
        next(ticks)
    assert vehicle.posted_until is not None
    assert not vehicle.route, "arrived and waiting"
    assert great_circle_m(vehicle.lat, vehicle.lon, *post) < 1
    for _ in range(5):
        next(ticks)
    assert vehicle.posted_until is None
    assert vehicle.route, "patrolling again"


async def test_the_simulation_follows_each_advice_once() -> None:
    night = Night(CITY, start=START, hours=1, call_every_s=3600, seed=2)
    unit_id = next(iter(night.vehicles))
    advice = [
        {"advice_id": "A-1", "unit_id": unit_id, "to_lat": 27.25, "to_lon": 111.47, "to_cell": "x"},
        {"advice_id": "A-2", "unit_id": "elsewhere", "to_lat": 27.25, "to_lon": 111.47, "to_cell": "y"},
    ]
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=advice))
    simulation = Simulation(
        urls=Urls("http://i", "http://d", "http://a", jt808_port=0, kafka=CommonSettings().kafka_client),
        tokens={}, city=CITY, start=START, speedup=1, hours=1, call_every_s=30, seed=2, follow_advice=True,
    )  # fmt: skip
    async with httpx.AsyncClient(transport=transport, base_url="http://d") as dispatcher:
        assert await simulation.follow_advice(dispatcher, night, START) == 1
        assert await simulation.follow_advice(dispatcher, night, START) == 0
    assert night.vehicles[unit_id].posted_until is not None
    assert simulation.advice_followed == {"A-1", "A-2"}
