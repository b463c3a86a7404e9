"""The default city file and the rules vehicles move by in it: 33 platforms of seven vehicles and rural stations,
zones of every class, travel along the streets that differs from the straight line (the river, the rush hours),
patrols that keep to their area, calls by area and hour; and a city file that is wrong says where."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from services.dispatcher.domain.zones import ZoneDefinition, ZoneMap, validate_geometry
from services.simulator.city import DEFAULT_CITY, City, Task
from services.simulator.shaoyang import CENTRE, GRID_M, RIVER_ROW, render
from shared.contract.registry import PlatformKind, UnitKind, ZoneClass
from shared.contract.schemas import PositionPing
from shared.errors import KuaijingError
from shared.geo import great_circle_m

CITY = City.load()
NOON = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
"""12:00 in Shaoyang (UTC+8)."""


def test_the_default_city_file_is_what_its_layout_writes() -> None:
    assert DEFAULT_CITY.read_bytes() == render(), "run `python -m services.simulator.shaoyang`"


def test_33_platforms_of_seven_vehicles_and_rural_stations_with_distinct_terminals() -> None:
    registry = CITY.registry()
    fast = [p for p in registry.platforms if p.kind is PlatformKind.FAST_RESPONSE]
    rural = [p for p in registry.platforms if p.kind is PlatformKind.RURAL_STATION]
    assert len(fast) == 33
    assert len(rural) >= 4
    for platform in fast:
        kinds = [u.kind for u in registry.units if u.platform_id == platform.id]
        assert [kinds.count(k) for k in (UnitKind.COMMAND_CAR, UnitKind.PATROL_CAR, UnitKind.MOTORCYCLE)] == [1, 2, 4]
    assert len({u.terminal_id for u in registry.units}) == len(registry.units)
    zones = ZoneMap(ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in registry.zones)
    assert all(zones.classify(lat=p.lat, lon=p.lon) is ZoneClass.RURAL for p in rural)


def test_the_zones_give_every_class_its_place() -> None:
    registry = CITY.registry()
    for zone in registry.zones:
        validate_geometry(zone.geometry_json())
    zones = ZoneMap(ZoneDefinition(z.id, z.class_, z.geometry_json()) for z in registry.zones)
    assert zones.classify(lat=CENTRE[0], lon=CENTRE[1]) is ZoneClass.KEY_AREA
    assert zones.classify(lat=CENTRE[0] + 0.02, lon=CENTRE[1] + 0.02) is ZoneClass.CENTRAL_URBAN
    assert zones.classify(lat=CENTRE[0] + 0.06, lon=CENTRE[1]) is ZoneClass.OTHER_URBAN
    assert zones.classify(lat=CENTRE[0] + 0.3, lon=CENTRE[1]) is ZoneClass.RURAL


def test_across_the_river_the_street_route_is_much_longer_than_the_straight_line() -> None:
    south = (CENTRE[0] + (RIVER_ROW * GRID_M + 100) / 111_195, CENTRE[1] + 0.02)
    north = (CENTRE[0] + (RIVER_ROW * GRID_M + 700) / 111_195, CENTRE[1] + 0.02)
    legs = CITY.roads.route(south, north, hour=12)
    driven = sum(great_circle_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(legs))
    assert driven > 2.5 * great_circle_m(*south, *north), "no detour to a bridge"


def test_the_evening_rush_hour_slows_the_city_but_not_the_country_roads() -> None:
    east, west = (CENTRE[0], CENTRE[1] + 0.06), (CENTRE[0], CENTRE[1] - 0.06)
    noon = CITY.roads.travel_s(CITY.roads.route(east, west, 12), east, 12)
    rush = CITY.roads.travel_s(CITY.roads.route(east, west, 18), east, 18)
    assert rush > 1.5 * noon
    assert CITY.roads.speed_kmh("rural", 18) == CITY.roads.speed_kmh("rural", 12)


def test_a_responder_drives_the_streets_and_arrives() -> None:
    rng = random.Random(2)
    vehicle = CITY.vehicles(rng)[0]
    goal = (vehicle.lat + 0.015, vehicle.lon + 0.01)
    vehicle.task, vehicle.target = Task.RESPONDING, goal
    vehicle.route = CITY.response_route(vehicle, goal, NOON)
    expected_s = CITY.roads.travel_s(vehicle.route, (vehicle.lat, vehicle.lon), 12) / vehicle.speeds.respond
    steps = 0
    while vehicle.route:
        vehicle.step(2.0, lambda road_class: CITY.roads.speed_kmh(road_class, 12))
        steps += 1
    assert (vehicle.lat, vehicle.lon) == pytest.approx(goal, abs=1e-6)
    assert abs(steps * 2.0 - expected_s) <= 2.0, "the drive takes what the route's legs say"


def test_patrols_keep_to_their_platforms_area() -> None:
    rng = random.Random(3)
    platforms = {p.id: p for p in CITY.document.platforms}
    vehicles = CITY.vehicles(rng)[:40]
    for i in range(600):
        for vehicle in vehicles:
            if not vehicle.route:
                vehicle.route = CITY.patrol_route(vehicle, NOON + timedelta(seconds=2 * i), rng)
            vehicle.step(2.0, lambda road_class: CITY.roads.speed_kmh(road_class, 12))
    for vehicle in vehicles:
        home = platforms[vehicle.platform_id]
        assert great_circle_m(vehicle.lat, vehicle.lon, home.lat, home.lon) < home.patrol_radius_m + 1_000


def test_calls_follow_the_hour_and_come_mostly_from_the_city() -> None:
    evening, small_hours = NOON + timedelta(hours=9), NOON + timedelta(hours=16)
    assert CITY.call_rate_factor(evening) > 2 * CITY.call_rate_factor(small_hours)
    rng = random.Random(4)
    distances = [great_circle_m(*CENTRE, *CITY.call_location(evening, rng)) for _ in range(2_000)]
    assert sum(d < 11_000 for d in distances) > 1_600
    assert sum(d > 13_000 for d in distances) > 40, "the countryside calls too"


def test_every_ping_a_vehicle_reports_is_valid_even_heading_due_north() -> None:
    rng = random.Random(5)
    vehicles = CITY.vehicles(rng)
    now = datetime.now(UTC)
    for i in range(50):
        for vehicle in vehicles:
            if not vehicle.route:
                vehicle.route = CITY.patrol_route(vehicle, NOON + timedelta(seconds=2 * i), rng)
            vehicle.step(2.0, lambda road_class: CITY.roads.speed_kmh(road_class, 12))
            PositionPing.model_validate(vehicle.position_ping(now, satellites=12))
    vehicles[0].heading = 359.97  # rounds to 360.0, which the contract's range excludes
    ping = vehicles[0].position_ping(now, satellites=12)
    assert ping["heading_deg"] == 0.0
    PositionPing.model_validate(ping)


def test_a_night_starts_at_the_asked_time_of_day_on_the_last_day_it_has_ended() -> None:
    now = datetime(2026, 11, 30, 11, 30, tzinfo=UTC)  # 19:30 in Shaoyang
    assert CITY.latest_start("18:00", 1, now) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert CITY.latest_start("18:00", 2, now) == datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
    assert CITY.latest_start("23:00", 0.5, now) == datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def broken(tmp_path: Path, change: dict[str, object]) -> Path:
    document = orjson.loads(DEFAULT_CITY.read_bytes())
    for dotted, value in change.items():
        *parents, last = dotted.split(".")
        target = document
        for key in parents:
            target = target[int(key)] if isinstance(target, list) else target[key]
        target[last] = value
    path = tmp_path / "city.json"
    path.write_bytes(orjson.dumps(document))
    return path


AREA = {"name": "x", "lat": 27, "lon": 111, "radius_m": 5, "weight": 1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": "other"}, "format"),
        ({"roads.speeds_kmh": {"street": 30, "rural": 60}}, "rush hours name road classes with no speed: arterial"),
        ({"roads.speeds_kmh": {"street": 30, "rural": 60}, "roads.rush_hours": []}, "class 'arterial' has no speed"),
        ({"roads.nodes": [[27.0, 111.0], *orjson.loads(DEFAULT_CITY.read_bytes())["roads"]["nodes"]]}, "not connected"),
        (
            {"calls.areas": [{"name": "x", "lat": 27, "lon": 111, "radius_m": 5, "weight": 1, "profile": "?"}]},
            "unknown profiles: ?",
        ),
        ({"kinds": {}}, "no speeds for"),
        ({"platforms.0.crew": {"boat": 1}}, "platforms.0.crew.boat"),
    ],
)
def test_a_wrong_city_file_says_what_is_wrong_and_where(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(KuaijingError, match=r"city\.json") as refused:
        City.load(broken(tmp_path, change))
    assert message in str(refused.value)


def test_a_missing_or_unparsable_city_file(tmp_path: Path) -> None:
    with pytest.raises(KuaijingError, match="cannot read the city file"):
        City.load(tmp_path / "nowhere.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(KuaijingError, match="is not JSON"):
        City.load(tmp_path / "bad.json")
