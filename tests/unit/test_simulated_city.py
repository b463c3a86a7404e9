import random
from datetime import UTC, datetime

from services.dispatcher.domain.zones import ZoneDefinition, ZoneMap, validate_geometry
from services.simulator.city import CENTRE, Task, call_location, city_registry, vehicles_of
from shared.contract.registry import UnitKind, ZoneClass
from shared.contract.schemas import PositionPing
from shared.geo import great_circle_m


def test_the_city_has_33_platforms_of_seven_vehicles_with_distinct_terminals() -> None:
    registry = city_registry(rng=random.Random(1))
    assert len(registry.platforms) == 33
    assert len(registry.units) == 231
    kinds = [u.kind for u in registry.units if u.platform_id == "SY-01"]
    assert (kinds.count(UnitKind.COMMAND_CAR), kinds.count(UnitKind.PATROL_CAR), kinds.count(UnitKind.MOTORCYCLE)) == (
        1,
        2,
        4,
    )
    assert len({u.terminal_id for u in registry.units}) == 231


def test_the_zones_give_every_class_its_place() -> None:
    registry = city_registry(rng=random.Random(1))
    for zone in registry.zones:
        validate_geometry(zone.geometry_json())
    zones = ZoneMap(ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in registry.zones)
    assert zones.classify(lat=CENTRE[0], lon=CENTRE[1]) is ZoneClass.KEY_AREA
    assert zones.classify(lat=CENTRE[0] + 0.02, lon=CENTRE[1] + 0.02) is ZoneClass.CENTRAL_URBAN
    assert zones.classify(lat=CENTRE[0] + 0.06, lon=CENTRE[1]) is ZoneClass.OTHER_URBAN
    assert zones.classify(lat=CENTRE[0] + 0.3, lon=CENTRE[1]) is ZoneClass.RURAL


def test_a_responder_drives_to_its_call_and_arrives() -> None:
    rng = random.Random(2)
    [vehicle, *_] = vehicles_of(city_registry(rng=rng), rng)
    target = (vehicle.lat + 0.01, vehicle.lon)  # about 1.1 km north
    vehicle.task, vehicle.target = Task.RESPONDING, target
    start = great_circle_m(vehicle.lat, vehicle.lon, *target)
    vehicle.step(10.0, rng)
    assert great_circle_m(vehicle.lat, vehicle.lon, *target) < start
    assert vehicle.heading > 350 or vehicle.heading < 10  # heading north
    for _ in range(60):
        vehicle.step(2.0, rng)
    assert vehicle.arrived()


def test_patrols_stay_near_their_base() -> None:
    rng = random.Random(3)
    vehicles = vehicles_of(city_registry(rng=rng), rng)[:20]
    for _ in range(500):
        for vehicle in vehicles:
            vehicle.step(2.0, rng)
    assert all(great_circle_m(v.lat, v.lon, *v.base) < 2_500 for v in vehicles)


def test_most_calls_come_from_the_city() -> None:
    rng = random.Random(4)
    distances = [great_circle_m(*CENTRE, *call_location(rng)) for _ in range(2_000)]
    assert sum(d < 10_600 for d in distances) > 1_600
    assert max(distances) < 16_500


def test_every_ping_a_vehicle_reports_is_valid_even_heading_due_north() -> None:
    rng = random.Random(5)
    vehicles = vehicles_of(city_registry(rng=rng), rng)
    now = datetime.now(UTC)
    vehicles[0].heading = 359.97  # rounds to 360.0, which the contract's range excludes
    for _ in range(50):
        for vehicle in vehicles:
            vehicle.step(2.0, rng)
            PositionPing.model_validate(vehicle.position_ping(now, satellites=12))
        vehicles[0].heading = 359.97
    ping = vehicles[0].position_ping(now, satellites=12)
    assert ping["heading_deg"] == 0.0
    PositionPing.model_validate(ping)
